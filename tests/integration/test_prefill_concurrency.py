"""``prefill_concurrency``: at most that many of a group's requests wait for their first token
at once; the others wait to be sent (schedule lag), and streams past their first token do not
count."""

from __future__ import annotations

from pathlib import Path

import pytest
from scripted_server import Script, ScriptedServer, chat_stream

from service_process import run_cli_async, samples_jsonl

pytestmark = pytest.mark.timeout(120)


def most_at_once(spans: list[tuple[int, int]]) -> int:
    """The largest number of ``[start, end)`` spans open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


async def test_at_most_the_cap_wait_for_a_first_token(tmp_path: Path) -> None:
    server = ScriptedServer()
    await server.start()
    # A slow prefill (0.25 s to the first token), then a quick decode of 0.1 s.
    stream = chat_stream([" a", " b", " c", " d", " e"], first_delay_s=0.25, gap_s=0.025)
    server.script("/v1/chat/completions", Script(stream))
    (tmp_path / "c.yaml").write_text(
        "name: prefill\n"
        f"target: {{url: '{server.url}', model: m}}\n"
        "warmup_s: 0\n"
        "groups:\n"
        "  - name: long-prompts\n"
        "    clients: 4\n"
        "    interaction: {kind: chat, stream: true, max_tokens: 5}\n"
        "    load: {kind: open, rate: 20, arrival: constant}\n"
        "    stop: {duration_s: 1}\n"
        "    prefill_concurrency: 2\n"
    )
    out = tmp_path / "out"
    code, _, stderr = await run_cli_async(tmp_path / "c.yaml", out)
    await server.close()
    assert code == 0, stderr[-2000:]
    samples = samples_jsonl(out)
    assert len(samples) == 20 and all(s["status"] == "ok" for s in samples)
    prefilling = [(s["sent_ns"], s["first_token_ns"]) for s in samples]
    streaming = [(s["sent_ns"], s["end_ns"]) for s in samples]
    assert most_at_once(prefilling) == 2  # never more than the cap before a first token
    assert most_at_once(streaming) > 2  # decoding streams do not hold a slot
    lags = sorted((s["sent_ns"] - s["scheduled_ns"]) / 1e9 for s in samples)
    assert lags[-1] > 0.5  # 20 req/s against 2 prefills of 0.25 s: the queue grows
    # The target saw the same: its requests arrive no faster than prefills end.
    received = sorted(r.received_ns for r in server.requests)
    assert (received[-1] - received[0]) / 1e9 > 2.0  # ~20 requests / (2 per 0.25 s)
