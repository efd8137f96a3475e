"""A run tells the truth about itself: thresholds in summary.json and the report, and runs that
cannot give a result (a closed port, a target that answers 500 to everything) aborted in
seconds with the reason, unless ``abort: false``. Real ``clientswarm run`` processes, real
workers, the real simulator or a closed loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "clientswarm")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def run(
    tmp_path: Path, config: dict[str, Any], *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], float]:
    """``clientswarm run`` of ``config``: the process, its summary.json and its seconds."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    file = tmp_path / "c.json"
    file.write_text(json.dumps(config))
    out = tmp_path / "out"
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "run", str(file), "-o", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed_s = time.monotonic() - started
    assert "Traceback" not in done.stderr, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    return done, summary, elapsed_s


def cluster(url: str, *, duration_s: float, clients: int = 4, **extra: Any) -> dict[str, Any]:
    group = {
        "name": "chat",
        "clients": clients,
        "interaction": {"kind": "chat", "max_tokens": 4},
        "stop": {"duration_s": duration_s},
    }
    group.update(extra.pop("group", {}))
    return {
        "name": "verdicts",
        "target": {"url": url, "model": "mock-model", "timeout_s": 5},
        "groups": [group],
        **extra,
    }


MOCK = "http://127.0.0.1:1"  # replaced by --mock


def test_thresholds_are_judged_in_summary_json_and_the_report(tmp_path: Path) -> None:
    config = cluster(
        MOCK,
        duration_s=0.6,
        thresholds=["e2e_s.p50 < 0.001", "error_rate == 0"],
        group={"thresholds": ["requests > 5", "errors.http_500 == 0"]},
    )
    done, summary, _ = run(tmp_path, config, "--mock", "--mock-args", "--ttft-ms 5 --itl-ms 2")
    assert done.returncode == 3, done.stderr
    assert summary["cluster"]["status"] == "completed"
    results = summary["thresholds"]
    assert [(r["scope"], r["expr"], r["passed"]) for r in results] == [
        ("total", "e2e_s.p50 < 0.001", False),
        ("total", "error_rate == 0", True),
        ("groups.chat", "requests > 5", True),
        ("groups.chat", "errors.http_500 == 0", True),
    ]
    assert results[0]["value"] == summary["total"]["e2e_s"]["p50"] > 0.001
    assert results[2]["value"] == summary["groups"]["chat"]["requests"]
    assert "Thresholds: 1 of 4 failed" in done.stdout
    assert "e2e_s.p50 < 0.001" in done.stdout and "FAIL" in done.stdout


def test_a_closed_port_aborts_the_run_in_seconds_with_few_samples(
    tmp_path: Path, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    config = cluster(url, duration_s=60, preflight=False)  # the abort rule, not the preflight
    done, summary, elapsed_s = run(tmp_path, config)
    assert done.returncode == 1
    cluster_info = summary["cluster"]
    assert cluster_info["status"] == "failed"
    reason = cluster_info["reason"]
    assert reason.startswith("aborted: ") and "most with connection" in reason, reason
    assert "refused" in reason.lower()  # one example message
    assert elapsed_s < 20
    total = summary["total"]
    assert total["requests"] + total["cancelled_excluded"] < 300
    assert set(total["errors"]) == {"connection"}
    assert "aborted" in done.stdout.splitlines()[-1]  # the verdict, last


OPEN = {"load": {"kind": "open", "rate": 200, "arrival": "constant"}}
"""200 requests a second, however fast the target fails them."""


def test_injected_500s_abort_the_run_unless_abort_is_off(tmp_path: Path) -> None:
    mock = ("--mock", "--mock-args", "--ttft-ms 1 --itl-ms 1 --error-rate-500 1.0")
    config = cluster(MOCK, duration_s=60, group=OPEN)
    done, summary, elapsed_s = run(tmp_path / "on", config, *mock)
    assert done.returncode == 1
    reason = summary["cluster"]["reason"]
    assert summary["cluster"]["status"] == "failed"
    assert "most with http_500" in reason and "--error-rate-500" in reason, reason
    assert elapsed_s < 20
    config = cluster(MOCK, duration_s=1, group=OPEN, abort=False)
    done, summary, _ = run(tmp_path / "off", config, *mock)
    assert done.returncode == 0, done.stderr
    assert summary["cluster"]["status"] == "completed"
    total = summary["total"]
    assert total["requests"] == total["errors"]["http_500"] == 200  # kept going, all failed


def test_a_threshold_with_abort_stops_the_run_naming_it(tmp_path: Path) -> None:
    # 60 % errors: not "nearly all", so only the threshold can stop it.
    threshold = {"expr": "error_rate < 0.2", "abort": True, "min_requests": 50}
    config = cluster(MOCK, duration_s=60, group=OPEN, thresholds=[threshold])
    mock = ("--mock", "--mock-args", "--ttft-ms 1 --itl-ms 1 --error-rate-500 0.6 --seed 5")
    done, summary, elapsed_s = run(tmp_path, config, *mock)
    assert done.returncode == 1
    assert summary["cluster"]["status"] == "failed"
    reason = summary["cluster"]["reason"]
    assert reason.startswith("aborted: threshold 'error_rate < 0.2' (total) failed"), reason
    assert elapsed_s < 20
    (result,) = summary["thresholds"]
    assert result["passed"] is False and 0.5 < result["value"] < 0.7
