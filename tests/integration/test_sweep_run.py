"""A ``sweep`` load run end to end by ``clientswarm run --mock``: each set point is a stage
with its own results, at the rate or number of clients the sweep asked for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "clientswarm")


def test_an_explicit_sweep_runs_one_stage_per_set_point(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "name: sweep\n"
        "seed: 7\n"
        "target: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "spawner: {kind: local, workers: 2}\n"
        "groups:\n"
        "  - name: rates\n"
        "    clients: 2\n"
        "    interaction: {kind: hello}\n"
        "    load: {kind: sweep, rates: [10, 30], stage_s: 1.5}\n"
        "  - name: conc\n"
        "    interaction: {kind: chat, max_tokens: 4}\n"
        "    load: {kind: sweep, concurrencies: [1, 2], stage_s: 1.5}\n"
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [
            *(CLI, "run", str(config), "-o", str(out), "--samples-format", "jsonl"),
            *("--mock", "--mock-args", "--ttft-ms 20 --itl-ms 5"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rates · stage 1 (30 req/s)" in done.stdout
    assert "conc · stage 1 (2 clients)" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    rates = summary["groups"]["rates"]
    # Constant arrivals by default: 1.5 s at 10/s, then 1.5 s at 30/s, over both workers.
    assert [st["set_point"] for st in rates["stages"]] == [10.0, 30.0]
    assert [st["set_point_unit"] for st in rates["stages"]] == ["req/s", "req/s"]
    assert [st["requests"] for st in rates["stages"]] == [15, 45]
    assert [st["start_offset_s"] for st in rates["stages"]] == [0.0, 1.5]
    assert [st["planned_s"] for st in rates["stages"]] == [1.5, 1.5]
    conc = summary["groups"]["conc"]["stages"]
    assert [st["set_point"] for st in conc] == [1.0, 2.0]
    assert [st["set_point_unit"] for st in conc] == ["clients", "clients"]
    # The group's clients default to the largest concurrency; two send about twice as much.
    assert conc[1]["requests"] > 1.5 * conc[0]["requests"] > 0
