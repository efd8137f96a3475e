"""How `clientswarm run` and `submit --wait` end: exit codes, verdict, results directories and
the run's metadata in summary.json, with real runs against the simulator (under a second)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from clientswarm.timestamps import epoch_s
from clientswarm.verdict import exit_code
from service_process import CLI, ServiceProcess, simulator

pytestmark = pytest.mark.slow

HELLO = """\
name: outcome
seed: 11
target: {url: 'http://user:secret@127.0.0.1:1', model: mock-model}
spawner: {kind: local, workers: 1}
groups:
  - {name: hello, clients: 2, interaction: {kind: hello}, stop: {duration_s: 0.5}}
"""


def clientswarm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def one_line_error(done: subprocess.CompletedProcess[str], start: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr that starts with ``start``."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(start), line


def test_a_run_ends_with_where_and_the_verdict_and_describes_itself(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(HELLO)
    out = tmp_path / "out"
    done = clientswarm("run", str(config), "--mock", "-o", str(out), "--samples-format", "jsonl")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        f"results: {out}/summary.json, {out}/samples.jsonl",
        "verdict: completed",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert exit_code(summary) == 0
    cluster, run = summary["cluster"], summary["run"]
    assert cluster["started_at"].endswith("Z") and cluster["ended_at"].endswith("Z")
    measured_s = epoch_s(cluster["ended_at"]) - epoch_s(cluster["started_at"])
    assert run["measured_duration_s"] == pytest.approx(measured_s, abs=0.002)
    assert 0.5 <= run["measured_duration_s"] < 30
    assert run["planned_duration_s"] == 0.5
    assert run["seed"] == 11
    assert run["hosts"] == [socket.gethostname()]
    assert run["python_version"].count(".") == 2 and run["clientswarm_version"]
    # the simulator replaced the target; its URL and model, never credentials
    (target,) = run["targets"].values()
    assert target["url"].startswith("http://127.0.0.1:") and target["model"] == "mock-model"
    assert "secret" not in json.dumps(run)
    # as the reading-results guide says to recompute it
    ran = json.loads((out / "config.json").read_text())
    canonical = json.dumps(ran, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert run["config_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    # the exit code of the same run with thresholds, one of which failed
    summary["thresholds"] = [
        {"scope": "total", "expr": "error_rate < 0.01", "value": 0.0, "passed": True},
        {"scope": "groups.hello", "expr": "e2e_s.p99 < 0", "value": 0.002, "passed": False},
    ]
    assert exit_code(summary) == 3

    # The same directory again is refused, and the earlier run is left as it was.
    before = (out / "summary.json").read_bytes()
    again = clientswarm("run", str(config), "--mock", "-o", str(out))
    one_line_error(again, f"error: --output {out} holds an earlier run (summary.json, ")
    assert (out / "summary.json").read_bytes() == before
    # --overwrite replaces that run's files (the jsonl samples too), not the user's.
    (out / "my-notes.txt").write_text("keep me")
    replaced = clientswarm(
        "run", str(config), "--mock", "-o", str(out), "--overwrite", "--samples-format", "csv"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [
        "config.json",
        "my-notes.txt",
        "report.html",
        "samples.csv",
        "summary.json",
        "timeseries.json",
    ]
    (log_dir,) = (out / "logs").iterdir()  # the earlier run's worker logs went with it
    assert log_dir.name == json.loads((out / "summary.json").read_text())["cluster"]["id"]


def test_unusable_output_paths_exit_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(HELLO)
    file = tmp_path / "file"
    file.write_text("x")
    one_line_error(
        clientswarm("run", str(config), "--mock", "-o", str(file)),
        f"error: --output {file}: is a file, not a directory",
    )
    one_line_error(
        clientswarm("run", str(config), "--mock", "-o", "/proc/x"),
        "error: --output /proc/x: cannot create it: ",
    )
    one_line_error(
        clientswarm("samples", "abc", "--service", "http://127.0.0.1:9", "-o", "/missing/dir/x"),
        "error: --output /missing/dir/x: no such directory: /missing/dir",
    )
    # without -o: results/<name>-<timestamp>, or outputs.dir of the config, checked alike
    (tmp_path / "results").write_text("not a directory")
    one_line_error(
        clientswarm("run", str(config), "--mock", cwd=tmp_path),
        "error: results directory results: is a file, not a directory",
    )
    config.write_text(HELLO + f"outputs: {{dir: {file}}}\n")
    one_line_error(
        clientswarm("run", str(config), "--mock"),
        f"error: outputs.dir {file}: is a file, not a directory",
    )


def cluster_config(url: str, duration_s: float) -> dict[str, Any]:
    return {
        "name": "waited",
        "target": {"url": url, "model": "mock-model"},
        "groups": [
            {
                "name": "hello",
                "clients": 1,
                "interaction": {"kind": "hello"},
                "load": {"kind": "open", "rate": 20, "arrival": "constant"},
                "stop": {"duration_s": duration_s},
            }
        ],
    }


def test_submit_wait_exits_with_the_runs_code(tmp_path: Path) -> None:
    with simulator() as url, ServiceProcess(tmp_path / "svc") as service:
        short = tmp_path / "short.yaml"
        short.write_text(yaml.safe_dump(cluster_config(url, 0.5)))
        done = clientswarm("submit", str(short), "--service", service.url, "--wait")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "verdict: completed"
        # the cluster view says when, as the summary does
        cluster_id = done.stdout.splitlines()[0]
        # While it waits: the status as it changes, and plain progress lines (not a terminal)
        # from the service's progress stream.
        waited = done.stderr.splitlines()
        assert f"{cluster_id}: completed" in waited
        progress = [line for line in waited if "  workers " in line]
        assert progress and all(len(line) < 120 and "━" not in line for line in progress)
        assert any(line.startswith(("starting  ", "running  ")) for line in progress), waited
        _, view = service.api("GET", f"/clusters/{cluster_id}")
        _, results = service.api("GET", f"/clusters/{cluster_id}/results")
        for key in ("started_at", "ended_at"):
            assert view[key] == results["cluster"][key]
            assert view[key].endswith("Z")
        assert view["created_at"] <= view["started_at"] < view["ended_at"]
        listed = clientswarm("status", "--service", service.url)  # reads created_at
        assert listed.returncode == 0, listed.stderr
        assert cluster_id in listed.stdout
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listed.stdout)  # local time

        # A cluster stopped while submit waits: cancelled, exit 1.
        long = tmp_path / "long.yaml"
        long.write_text(yaml.safe_dump(cluster_config(url, 60)))
        waiting = subprocess.Popen(
            [CLI, "submit", str(long), "--service", service.url, "--wait"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert waiting.stdout is not None
            cluster_id = waiting.stdout.readline().strip()
            service.wait_status(cluster_id, ("running",), timeout_s=30)
            time.sleep(0.3)
            assert service.api("POST", f"/clusters/{cluster_id}/stop")[0] == 202
            out, err = waiting.communicate(timeout=60)
        finally:
            waiting.kill()
        assert waiting.returncode == 1, err
        assert out.splitlines()[-1].startswith("verdict: cancelled")
