"""Requests cancelled on purpose (``cancel: {fraction, after_s}``): the seeded choice, the cut
at ``after_s`` as the target sees it, the ``client_cancel`` kind in the results, and the other
requests measured in full."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripted_server import Script, ScriptedServer, chat_stream

from clientswarm.config.load import CancelConfig
from clientswarm.worker.cancel import Canceller
from service_process import run_cli_async, samples_jsonl

pytestmark = pytest.mark.timeout(120)

CLIENTS = 4
ARRIVALS = 60  # 30/s for 2 s, constant: client j % 4 sends arrival j
CUT = CancelConfig(fraction=0.3, after_s=0.15)


def expected_cuts(seed: int) -> int:
    """How many requests the clients' seeded choices cut: each client draws once per request,
    in the order of its arrivals."""
    choosers = [Canceller(CUT, seed, client) for client in range(CLIENTS)]
    return sum(choosers[j % CLIENTS].chosen() for j in range(ARRIVALS))


async def test_a_share_of_requests_is_cut_at_the_configured_time(tmp_path: Path) -> None:
    server = ScriptedServer()
    await server.start()
    words = [f" w{i}" for i in range(20)]  # 20 tokens, 25 ms apart: an answer takes ~0.5 s
    server.script("/v1/chat/completions", Script(chat_stream(words, gap_s=0.025, usage=(5, 20))))
    (tmp_path / "c.yaml").write_text(
        "name: cancels\n"
        f"target: {{url: '{server.url}', model: m}}\n"
        "seed: 5\n"
        "warmup_s: 0\n"
        "groups:\n"
        "  - name: chat\n"
        f"    clients: {CLIENTS}\n"
        "    interaction: {kind: chat, stream: true, max_tokens: 20}\n"
        "    load: {kind: open, rate: 30, arrival: constant}\n"
        "    stop: {duration_s: 2}\n"
        f"    cancel: {{fraction: {CUT.fraction}, after_s: {CUT.after_s}}}\n"
    )
    out = tmp_path / "out"
    code, stdout, stderr = await run_cli_async(tmp_path / "c.yaml", out)
    await server.close()
    samples = samples_jsonl(out)
    assert len(samples) == ARRIVALS, stderr[-2000:]
    assert len([r for r in server.requests if r.path == "/v1/chat/completions"]) == ARRIVALS

    cut = [s for s in samples if s["error_kind"] == "client_cancel"]
    whole = [s for s in samples if s["status"] == "ok"]
    assert len(cut) == expected_cuts(seed=5) and 0 < len(cut) < ARRIVALS
    assert len(cut) + len(whole) == ARRIVALS  # nothing else failed, nothing left out
    for s in cut:
        held_s = (s["end_ns"] - s["sent_ns"]) / 1e9
        assert CUT.after_s - 0.002 <= held_s <= CUT.after_s + 0.05, held_s
        assert s["error_message"].startswith("cancelled by the client 0.1")
        assert s["first_token_ns"] is not None  # it had started answering: a real abort
    assert all(s["output_tokens"] == 20 for s in whole)  # the others are measured in full
    summary = json.loads((out / "summary.json").read_text())
    total = summary["total"]
    assert total["failed"] == len(cut) and total["errors"] == {"client_cancel": len(cut)}
    assert total["cancelled_excluded"] == 0
    assert total["ttft_s"]["count"] == len(whole)
    assert code == 0  # cuts asked for are no reason to fail the run
    assert "client_cancel" in stdout  # the tables list the kind
