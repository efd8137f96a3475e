"""A target with replicas (``urls``): each replica receives its share, by ``round_robin`` or
``least_in_flight``, every sample names its replica, and the summary has each replica's
statistics beside the target's. Two targets under one load, compared side by side
(``compare DIR@a DIR@b``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from scripted_server import Script, ScriptedServer, chat_stream

from service_process import CLI, run_cli_async, samples_jsonl

pytestmark = pytest.mark.timeout(120)


def chats(server: ScriptedServer) -> int:
    """The chat requests a replica received (its preflight asked /v1/models besides)."""
    return sum(1 for r in server.requests if r.path == "/v1/chat/completions")


async def replicas(*first_delays_s: float) -> list[ScriptedServer]:
    servers = []
    for delay_s in first_delays_s:
        server = ScriptedServer()
        await server.start()
        stream = chat_stream([" a", " b"], first_delay_s=delay_s, usage=(3, 2))
        server.script("/v1/chat/completions", Script(stream))
        servers.append(server)
    return servers


def config(urls: list[str], balance: str, load: str, stop: str) -> str:
    return (
        "name: replicas\n"
        f"target: {{urls: {json.dumps(urls)}, balance: {balance}, model: m, metrics: false}}\n"
        "warmup_s: 0\n"
        "spawner: {kind: local, workers: 2}\n"
        "groups:\n"
        "  - name: chat\n"
        "    clients: 4\n"
        "    interaction: {kind: chat, stream: true, max_tokens: 2}\n"
        f"    load: {load}\n"
        f"    stop: {stop}\n"
    )


async def run(
    tmp_path: Path, servers: list[ScriptedServer], balance: str, load: str, stop: str
) -> Path:
    urls = [s.url for s in servers]
    (tmp_path / "c.yaml").write_text(config(urls, balance, load, stop))
    out = tmp_path / "out"
    code, _, stderr = await run_cli_async(tmp_path / "c.yaml", out)
    for server in servers:
        await server.close()
    assert code == 0, stderr[-2000:]
    return out


async def test_round_robin_gives_each_replica_its_share(tmp_path: Path) -> None:
    servers = await replicas(0.01, 0.01, 0.01)
    load = "{kind: open, rate: 80, arrival: constant}"
    out = await run(tmp_path, servers, "round_robin", load, "{requests: 40}")
    received = [chats(s) for s in servers]
    assert all(any(r.path == "/v1/models" for r in s.requests) for s in servers)  # preflight
    samples = samples_jsonl(out)
    assert sum(received) == len(samples) == 40
    assert max(received) - min(received) <= 2  # each worker sends its 20 in turn: 7/7/6 each
    by_replica = [sum(1 for s in samples if s["replica"] == i) for i in range(3)]
    assert by_replica == received  # every sample names the replica that served it
    summary = json.loads((out / "summary.json").read_text())
    replicas_stats = summary["replicas"]["default"]
    assert list(replicas_stats) == [s.url for s in servers]
    assert [r["requests"] for r in replicas_stats.values()] == received
    assert summary["targets"]["default"]["requests"] == 40
    report = (out / "report.html").read_text()
    assert all(f"replica {s.url}" in report for s in servers)  # a row each, beside the target


async def test_least_in_flight_sends_more_to_the_faster_replica(tmp_path: Path) -> None:
    fast, slow = await replicas(0.01, 0.4)
    out = await run(tmp_path, [fast, slow], "least_in_flight", "{kind: closed}", "{duration_s: 2}")
    assert chats(fast) + chats(slow) == len(samples_jsonl(out))
    # Closed loop, 2 clients per worker: while one client waits on the slow replica, the
    # other's requests find the fast one with fewer in flight and go there, many times over.
    assert chats(fast) > 3 * chats(slow) > 0
    summary = json.loads((out / "summary.json").read_text())
    stats = summary["replicas"]["default"]
    assert stats[slow.url]["ttft_s"]["p50"] > stats[fast.url]["ttft_s"]["p50"] + 0.3


def compare(*args: str) -> subprocess.CompletedProcess[str]:
    """``clientswarm compare ARGS`` (a blocking call: run it in a thread from a test)."""
    return subprocess.run([CLI, "compare", *args], capture_output=True, text=True, timeout=60)


async def test_two_targets_under_one_load_compare_side_by_side(tmp_path: Path) -> None:
    a, b = await replicas(0.01, 0.08)
    group = (
        "  - name: chat-{t}\n"
        "    target: {t}\n"
        "    clients: 2\n"
        "    interaction: {{kind: chat, stream: true, max_tokens: 2}}\n"
        "    load: {{kind: open, rate: 20, arrival: constant}}\n"
        "    stop: {{duration_s: 1.5}}\n"
    )
    (tmp_path / "c.yaml").write_text(
        "name: a-b\n"
        f"targets: {{a: {{url: '{a.url}', model: m}}, b: {{url: '{b.url}', model: m}}}}\n"
        "warmup_s: 0\n"
        "groups:\n" + group.format(t="a") + group.format(t="b")
    )
    out = tmp_path / "out"
    code, _, stderr = await run_cli_async(tmp_path / "c.yaml", out)
    for server in (a, b):
        await server.close()
    assert code == 0, stderr[-2000:]
    assert chats(a) == chats(b) == 30  # the same load on both, at the same time
    done = await asyncio.to_thread(compare, f"{out}@a", f"{out}@b", "--json")
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)
    (part,) = comparison["parts"]
    assert part["group"] == "target"
    ttft = next(row for row in part["latency"] if row["metric"] == "ttft_s.p50")
    assert ttft["changes"][0]["verdict"].startswith("B slower")
    rates = next(row for row in part["rates"] if row["metric"] == "request_rate")
    assert rates["values"][0] == pytest.approx(rates["values"][1], rel=0.1)
    wrong = await asyncio.to_thread(compare, f"{out}@a", f"{out}@c")
    assert wrong.returncode == 2 and "no target 'c'; its targets: a, b" in wrong.stderr
