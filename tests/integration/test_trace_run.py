"""Trace replay end to end: what a real server receives, and when, from two worker processes;
and a trace sent to a service by ``clientswarm submit`` (the service may not read the file)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scripted_server import Script, ScriptedServer, chat_stream

from service_process import CLI, ServiceProcess, run_cli_async, samples_jsonl, simulator

pytestmark = pytest.mark.timeout(120)

BLOCK = 16
SPEEDUP = 2.0


def bursty_trace(n: int = 48) -> list[dict[str, Any]]:
    """Bursts of four requests 5 ms apart, every 250 ms; the first two of a burst share a
    conversation's blocks (the second one block longer), each request's length is its own."""
    rows = []
    for i in range(n):
        burst, within = divmod(i, 4)
        shared = [1000 + burst, 2000 + burst] if within < 2 else [3000 + i]
        blocks = shared + ([4000 + i] if within == 1 else [])
        rows.append(
            {
                "timestamp": 250 * burst + 5 * within,
                "input_length": len(blocks) * BLOCK - 3 + (i % 3),
                "output_length": 2 + i % 5,
                "hash_ids": blocks,
            }
        )
    return rows


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


async def test_two_workers_replay_the_trace_at_its_times(tmp_path: Path) -> None:
    rows = bursty_trace()
    write(tmp_path / "trace.jsonl", rows)
    server = ScriptedServer()
    await server.start()
    server.script("/v1/chat/completions", Script(chat_stream([" a", " b"], first_delay_s=0.02)))
    (tmp_path / "c.yaml").write_text(
        "name: replay\n"
        f"target: {{url: '{server.url}', model: m}}\n"
        "spawner: {kind: local, workers: 2}\n"
        "groups:\n"
        "  - name: trace\n"
        "    clients: 6\n"
        "    interaction: {kind: chat, stream: true}\n"
        f"    load: {{kind: trace, path: trace.jsonl, block_tokens: {BLOCK},"
        f" speedup: {SPEEDUP}}}\n"
    )
    out = tmp_path / "out"
    code, _, stderr = await run_cli_async(tmp_path / "c.yaml", out)
    await server.close()
    assert code == 0, stderr[-2000:]

    chats = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert len(chats) == len(rows)
    # Which trace row each request is: its length and max_tokens, and its words.
    by_row: dict[int, Any] = {}
    for request in chats:
        words = request.body["messages"][-1]["content"].split()
        row = next(
            i
            for i, r in enumerate(rows)
            if len(words) == r["input_length"]
            and request.body["max_tokens"] == r["output_length"]
            and i not in by_row
            and (i % 4 != 1 or len(words) > 2 * BLOCK)
        )
        by_row[row] = (request, words)
    assert sorted(by_row) == list(range(len(rows)))

    # Equal leading hash_ids: the same prefix, byte for byte (two whole blocks here).
    for burst in range(len(rows) // 4):
        first, second = (by_row[4 * burst + k][1] for k in (0, 1))
        assert first[: 2 * BLOCK - 3] == second[: 2 * BLOCK - 3]
        assert first[:BLOCK] != by_row[4 * burst + 2][1][:BLOCK]  # other ids: other text
    if len(rows) > 4:
        assert by_row[0][1][:BLOCK] != by_row[4][1][:BLOCK]  # each burst its own blocks

    # The schedule is the trace's timeline, both workers keep it, and the target saw it.
    samples = samples_jsonl(out)
    assert {s["worker"] for s in samples} == {0, 1}
    assert all(s["status"] == "ok" for s in samples)
    start_ns = min(s["scheduled_ns"] for s in samples)
    offsets = sorted(s["scheduled_ns"] - start_ns for s in samples)
    wanted = sorted(round(r["timestamp"] * 1e6 / SPEEDUP) for r in rows)
    assert all(abs(got - want) <= 2_000 for got, want in zip(offsets, wanted, strict=True))
    lags = [s["sent_ns"] - s["scheduled_ns"] for s in samples]
    assert min(lags) >= 0
    received = {row: request.received_ns for row, (request, _) in by_row.items()}
    base = min(received[i] - round(rows[i]["timestamp"] * 1e6 / SPEEDUP) for i in received)
    late = [received[i] - round(rows[i]["timestamp"] * 1e6 / SPEEDUP) - base for i in received]
    # Each request reaches the target within the run's worst schedule lag (plus the loopback
    # trip) of its place on the trace's timeline.
    assert max(late) <= max(lags) + 30_000_000, (max(late), max(lags))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["requests"] == len(rows)


def test_submit_sends_the_trace_along(tmp_path: Path) -> None:
    rows = bursty_trace(12)
    (tmp_path / "mine").mkdir()
    write(tmp_path / "mine" / "trace.jsonl", rows)
    allowed = tmp_path / "shared"
    allowed.mkdir()
    with (
        simulator("--ttft-ms", "5", "--itl-ms", "1") as url,
        ServiceProcess(tmp_path / "svc", extra=("--allow-path", str(allowed))) as svc,
    ):
        config = {
            "name": "sent-trace",
            "target": {"url": url, "model": "mock-model"},
            "groups": [
                {
                    "name": "trace",
                    "clients": 3,
                    "interaction": {"kind": "completion"},
                    "load": {"kind": "trace", "path": "trace.jsonl", "block_tokens": BLOCK},
                }
            ],
        }
        # Posted with the file's path, it is a file this service may not read.
        mine = str(tmp_path / "mine" / "trace.jsonl")
        posted = json.loads(json.dumps(config))
        posted["groups"][0]["load"]["path"] = mine
        status, body = svc.api("POST", "/clusters", posted)
        assert status == 422
        refusal = f"groups[0].load.path: {mine!r} resolves outside the folders"
        assert refusal in body["error"]["message"]
        path = tmp_path / "mine" / "c.json"
        path.write_text(json.dumps(config))
        env = {**os.environ, "CLIENTSWARM_SERVICE": svc.url}
        done = subprocess.run(
            [CLI, "submit", str(path), "--wait"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        cluster_id = done.stdout.splitlines()[0]
        _, results = svc.api("GET", f"/clusters/{cluster_id}/results")
        assert results["total"]["requests"] == len(rows)
        assert results["total"]["succeeded"] == len(rows)
        # The simulator counts the words it got and answers max_tokens words.
        tokens_in = sum(r["input_length"] for r in rows)
        tokens_out = sum(r["output_length"] for r in rows)
        assert results["total"]["input_tokens"] == tokens_in
        assert results["total"]["output_tokens"] == tokens_out
