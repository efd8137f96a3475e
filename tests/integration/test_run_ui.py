"""``clientswarm run --ui``: the run's in-process service serves the web UI at the printed
address (behind the printed token), and keeps serving it, with the results, after the run
until Ctrl-C; then the run prints its tables and exits as usual."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "clientswarm")

pytestmark = pytest.mark.timeout(90)


def _line(proc: subprocess.Popen[str], pattern: str, timeout_s: float = 40.0) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


def test_run_ui_serves_the_ui_during_and_after_the_run(tmp_path: Path) -> None:
    config = tmp_path / "ui.yaml"
    config.write_text(
        "name: run-ui\n"
        "target: {url: 'http://127.0.0.1:1', model: mock-model}\n"
        "groups:\n"
        "  - name: chat\n"
        "    clients: 2\n"
        "    interaction: {kind: chat, max_tokens: 4}\n"
        "    stop: {duration_s: 1.5}\n"
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [CLI, "run", str(config), "--mock", "--ui", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    try:
        found = _line(proc, r"web UI: (http://127\.0\.0\.1:\d+)/ \(token: (\S+)\)")
        url, token = found[1], found[2]
        with urllib.request.urlopen(url + "/", timeout=10) as page:
            assert "<title>clientswarm</title>" in page.read().decode()
        _line(proc, r"the run has ended; its results are in .* until Ctrl-C")
        assert (out / "summary.json").is_file()  # written before the UI lingers
        request = urllib.request.Request(
            url + "/api/v1/clusters", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            (cluster,) = json.loads(answer.read())
        assert cluster["status"] == "completed"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    assert "verdict: completed" in rest
    assert "Traceback" not in rest
