"""Bursty arrivals at the target: ``arrival: gamma`` from two worker processes gives the gaps'
coefficient of variation that ``burstiness`` asks for (1/sqrt(burstiness)), as the target
sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scripted_server import Script, ScriptedServer

from service_process import run_cli_async, samples_jsonl

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
async def test_the_target_sees_the_configured_burstiness(tmp_path: Path, burstiness: float) -> None:
    server = ScriptedServer()
    await server.start()
    server.script("/hello", Script([(0.0, b"hi")], content_type="text/plain"))
    (tmp_path / "c.yaml").write_text(
        "name: bursty\n"
        f"target: {{url: '{server.url}'}}\n"
        "seed: 11\n"
        "warmup_s: 0\n"
        "spawner: {kind: local, workers: 2}\n"
        "groups:\n"
        "  - name: arrivals\n"
        "    clients: 8\n"
        "    interaction: {kind: hello, path: /hello}\n"
        f"    load: {{kind: open, rate: 60, arrival: gamma, burstiness: {burstiness}}}\n"
        "    stop: {duration_s: 6}\n"
    )
    out = tmp_path / "out"
    code, _, stderr = await run_cli_async(tmp_path / "c.yaml", out)
    await server.close()
    assert code == 0, stderr[-2000:]
    samples = samples_jsonl(out)
    assert {s["worker"] for s in samples} == {0, 1}
    received = np.sort([r.received_ns for r in server.requests if r.path == "/hello"]) / 1e9
    scheduled = np.sort([s["scheduled_ns"] for s in samples]) / 1e9
    assert len(received) == len(scheduled) > 250

    def cv(times: np.ndarray) -> float:
        gaps = np.diff(times)
        return float(gaps.std() / gaps.mean())

    # The seeded schedule has the shape asked for, and the target sees the same gaps (up to
    # the loopback trip's jitter: gaps of 17 ms on average here).
    assert cv(scheduled) == pytest.approx(1 / np.sqrt(burstiness), rel=0.2)
    assert cv(received) == pytest.approx(cv(scheduled), rel=0.15)
    assert len(received) / (received[-1] - received[0]) == pytest.approx(60, rel=0.2)
