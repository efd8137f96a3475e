"""The fleet benchmark (``bench/fleet.py``) in small: 5 simulated workers for 3 s against a real
``clientswarm serve``. Every acknowledged sample is in the store, every heartbeat is answered,
and the simulated workers' batches are byte for byte what a real worker sends."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from clientswarm.metrics.wire import ColumnarBatch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from fleet_workers import Done, SampleTemplates  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def test_simulated_batches_are_what_a_worker_sends() -> None:
    templates = SampleTemplates(random.Random(3))
    done = [Done(n, 1_800_000_000_000_000_000 + n * 997, 0) for n in range(450)]
    for d in done[::9]:
        d.warmup, d.stage = True, 2
    clients = [4, 9, 14]
    real = ColumnarBatch()
    real.add(templates.samples(done, 7, clients))
    assert templates.batch(done, 7, clients).encode(12) == real.encode(12)


def test_five_workers_against_a_real_service(tmp_path: Path) -> None:
    argv = [
        sys.executable,
        str(BENCH / "fleet.py"),
        "--workers=5",
        "--samples-per-s=500",
        "--duration-s=3",
        "--processes=1",
        "--start-spread-s=0.2",
        f"--out={tmp_path}",
        "--tag=-smoke",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "results-fleet-smoke.json").read_text())
    (run,) = doc["runs"]
    m = run["metrics"]
    assert m["cluster_status"] == "completed"
    assert m["worker_states"] == {"completed": 5}
    assert m["generated"] == 5 * 100 * 3  # 100 samples/s a worker for 3 s
    assert m["stored"] == m["acknowledged"] == m["generated"]
    assert m["summary_requests"] == m["stored"]
    assert m["heartbeat_failures"] == 0 and m["heartbeat_rtt_ms"]["n"] >= 5
    assert m["attempt_errors"] == {}
    assert (tmp_path / "RESULTS-fleet-smoke.md").read_text().startswith("# clientswarm")


def test_five_workers_on_the_high_rate_path(tmp_path: Path) -> None:
    """``--sample-path files``: the workers write their ticks to files and post tallies; every
    acknowledged sample is in the files, and the summary read from them counts each once."""
    argv = [
        sys.executable,
        str(BENCH / "fleet.py"),
        "--workers=5",
        "--samples-per-s=500",
        "--duration-s=3",
        "--processes=1",
        "--start-spread-s=0.2",
        "--sample-path=files",
        f"--out={tmp_path}",
        "--tag=-files-smoke",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((tmp_path / "results-fleet-files-smoke.json").read_text())
    (run,) = doc["runs"]
    m = run["metrics"]
    assert m["sample_path"] == "files" and m["cluster_status"] == "completed"
    assert m["generated"] == 5 * 100 * 3
    assert m["stored"] == m["acknowledged"] == m["generated"]  # stored: counted in the files
    assert m["summary_requests"] == m["stored"]
    assert m["files_bytes"] > 0
    assert (
        m["attempts_by_action"]["ticks"].get("200", 0) >= 5
        and "samples" not in m["attempts_by_action"]
    )
    assert m["attempt_errors"] == {}
    assert "| sqlite | files | 5 |" in (tmp_path / "RESULTS-fleet-files-smoke.md").read_text()
