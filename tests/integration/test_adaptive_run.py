"""Adaptive loads run end to end by ``clientswarm run --mock`` on two real worker processes: an
automatic sweep measures its end points and runs the rates it chose from them, and a capacity
search brackets the capacity of a simulator whose capacity can be computed (a concurrency cap
over fixed-length answers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clientswarm.service.adaptive import LEAD_S

CLI = str(Path(sys.executable).parent / "clientswarm")

# Simulator: 4 sequences at once, each answer 20 ms to the first token then 9 gaps of 10 ms.
SLOTS = 4
ANSWER_S = 0.020 + 9 * 0.010
MOCK_ARGS = f"--max-concurrency {SLOTS} --ttft-ms 20 --itl-ms 10 --output-tokens 10"
CAPACITY = SLOTS / ANSWER_S
"""Requests per second the simulator completes at most (about 36)."""


def _run(tmp_path: Path, load: str, clients: int = 8) -> tuple[dict[str, Any], str]:
    config = tmp_path / "adaptive.yaml"
    config.write_text(
        "name: adaptive\n"
        "seed: 3\n"
        "target: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "spawner: {kind: local, workers: 2}\n"
        "groups:\n"
        "  - name: chat\n"
        f"    clients: {clients}\n"
        "    interaction: {kind: chat, max_tokens: 10}\n"
        f"    load: {load}\n"
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *(CLI, "run", str(config), "-o", str(out), "--samples-format", "jsonl"),
            *("--mock", "--mock-args", MOCK_ARGS),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "summary.json").read_text()), done.stdout


def _decided_after_a_pause(stages: list[dict[str, Any]], decided: list[int]) -> None:
    """Each stage decided from the one before starts at least LEAD_S after that one ended
    (every worker learns it at least 1 s ahead)."""
    for k in decided:
        before, after = stages[k - 1], stages[k]
        ended = before["start_offset_s"] + before["planned_s"]
        assert after["start_offset_s"] >= ended + LEAD_S - 1e-6


def test_an_automatic_sweep_runs_rates_between_its_measured_end_points(tmp_path: Path) -> None:
    summary, stdout = _run(tmp_path, "{kind: sweep, points: 2, stage_s: 1.5, stage_warmup_s: 0.3}")
    group = summary["groups"]["chat"]
    sweep, stages = group["sweep"], group["stages"]
    assert [st["role"] for st in stages] == ["synchronous", "throughput", "rate", "rate"]
    assert [st["set_point_unit"] for st in stages] == ["clients", "clients", "req/s", "req/s"]
    assert [st["set_point"] for st in stages[:2]] == [1.0, 8.0]
    # One client alone completes about one answer per ANSWER_S; eight at once are capped by
    # the simulator's slots.
    assert 0.5 / ANSWER_S < sweep["synchronous_rate"] < 1.2 / ANSWER_S
    assert 0.6 * CAPACITY < sweep["throughput_rate"] < 1.15 * CAPACITY
    low, high = sweep["synchronous_rate"], sweep["throughput_rate"]
    assert sweep["rates"] == pytest.approx([low + (high - low) / 2, high])
    assert [st["set_point"] for st in stages[2:]] == pytest.approx(sweep["rates"])
    # Each rate stage sent its rate over its measured time (constant arrivals, two workers).
    for st in stages[2:]:
        measured_s = st["planned_s"] - st["stage_warmup_s"]
        assert st["requests"] == pytest.approx(st["set_point"] * measured_s, abs=2)
        assert st["failed"] == 0
    _decided_after_a_pause(stages, [2])
    assert "chat: automatic sweep: synchronous" in stdout
    assert "chat · stage 2 rate (" in stdout


def test_a_capacity_search_brackets_the_computed_capacity(tmp_path: Path) -> None:
    summary, stdout = _run(
        tmp_path,
        "{kind: capacity, stage_s: 1.5, stage_warmup_s: 0.3, start_rate: 10, "
        "arrival: constant, slo: {ttft_s: 0.1}, max_probes: 6, resolution: 0.1}",
    )
    group = summary["groups"]["chat"]
    capacity, stages = group["capacity"], group["stages"]
    probes = capacity["probes"]
    assert [p["stage"] for p in probes] == [st["stage"] for st in stages]
    assert all(st["role"] == "probe" for st in stages)
    # Below the capacity every request meets the SLO; well above it the queue makes them late.
    for probe in probes:
        if probe["rate"] < 0.85 * CAPACITY:
            assert probe["passed"], probe
        if probe["rate"] > 1.3 * CAPACITY:
            assert not probe["passed"], probe
        assert 0.0 <= probe["confidence"] <= 1.0
    low, high = capacity["bracket"]
    assert capacity["capacity_rate"] == low
    assert high is not None
    assert low <= 1.1 * CAPACITY and high >= 0.9 * CAPACITY
    assert capacity["slo"] == {"ttft_s": 0.1}
    assert capacity["target_goodput"] == 0.95
    _decided_after_a_pause(stages, list(range(1, len(stages))))
    assert "chat: capacity at SLO (ttft_s ≤ 0.1 s; 95% of requests)" in stdout
    assert "Capacity search: chat" in stdout
