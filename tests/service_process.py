"""The service as a real process for the tests: ``clientswarm serve`` on a free loopback port.

with ServiceProcess(tmp_path) as svc:
    status, body = svc.api("POST", "/clusters", yaml_text, content_type="application/yaml")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

CLI = str(Path(sys.executable).parent / "clientswarm")
LISTENING = "clientswarm service listening on "
FINAL = ("completed", "failed", "cancelled")


@contextlib.contextmanager
def simulator(*args: str) -> Iterator[str]:
    """``clientswarm mock-server`` on a free port with ``args``; yields its URL."""
    proc = subprocess.Popen(
        [CLI, "mock-server", "--port", "0", *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    try:
        yield proc.stdout.readline().split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)


class ServiceProcess:
    """``clientswarm serve`` in a child process, with a tiny HTTP client for its API."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        token: str | None = None,
        extra: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.token = token
        self.extra = extra
        self.env = env or {}
        self.url = ""
        self.process: subprocess.Popen[str] | None = None
        self.log = data_dir / "service.log"

    def start(self, timeout_s: float = 30.0) -> Self:
        """Start the service and wait for its listening line."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            CLI,
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "warning",
            *self.extra,
        ]
        env = {**os.environ, **self.env}
        if self.token is not None:
            token_file = self.data_dir / "token"
            token_file.write_text(self.token + "\n")
            args += ["--token-file", str(token_file)]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith(LISTENING):
                self.url = line[len(LISTENING) :].split()[0]
                self.port = int(self.url.rsplit(":", 1)[1])
                return self
            if not line and self.process.poll() is not None:
                break
        raise AssertionError(f"the service did not start: {self.log.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the service (SIGTERM by default); return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        *,
        content_type: str = "application/json",
        token: str | None = None,
        prefix: str = "/api/v1",
    ) -> tuple[int, bytes, dict[str, str]]:
        """Send one request; return status, raw body and headers (errors included)."""
        data = body.encode() if isinstance(body, str) else body
        headers = {"Content-Type": content_type}
        bearer = token if token is not None else self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        req = urllib.request.Request(
            self.url + prefix + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return (
                    response.status,
                    response.read(),
                    {k.lower(): v for k, v in response.headers.items()},
                )
        except urllib.error.HTTPError as err:
            return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}

    def api(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        """Send JSON (or a str/bytes body as is); return status and decoded JSON."""
        if body is not None and not isinstance(body, str | bytes):
            body = json.dumps(body)
        status, raw, _ = self.request(method, path, body, **kwargs)
        return status, json.loads(raw) if raw else None

    def wait_status(
        self, cluster_id: str, statuses: tuple[str, ...] = FINAL, timeout_s: float = 90
    ) -> dict[str, Any]:
        """Poll the cluster until its status is one of ``statuses``."""
        deadline = time.monotonic() + timeout_s
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, view = self.api("GET", f"/clusters/{cluster_id}")
            assert status == 200, view
            if view["status"] in statuses:
                return view
            time.sleep(0.2)
        raise AssertionError(f"cluster {cluster_id} still {view.get('status')} after {timeout_s} s")


async def run_cli_async(config: Path, out: Path, timeout_s: float = 90) -> tuple[int, str, str]:
    """``clientswarm run CONFIG -o OUT --samples-format jsonl`` without blocking the event loop
    (a target served by the test itself keeps answering): exit code, stdout, stderr."""
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        *(CLI, "run", str(config), "-o", str(out), "--samples-format", "jsonl"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


def samples_jsonl(out: Path) -> list[dict[str, Any]]:
    """The samples a run wrote to ``OUT/samples.jsonl``."""
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
