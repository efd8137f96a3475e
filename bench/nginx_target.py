"""The fast target: nginx serving one fixed 128-token chat-completion SSE stream.

nginx answers in a few microseconds and never parses what it is sent, so against it the load
generator is the only thing that can be slow: this is the throughput ceiling of the issue
("wrk: ~39,000 req/s here"). Every request, whatever its method and body, gets the same
stream: a role chunk, one chunk per token, a finish chunk, a usage chunk, ``[DONE]``. The
access log counts what nginx served, from outside the load generator.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]


def sse_body(tokens: int = 128, model: str = "mock-model") -> bytes:
    """An OpenAI chat-completion stream of ``tokens`` one-token chunks, with usage."""

    def event(delta: dict[str, object], finish: str | None = None) -> str:
        chunk = {
            "id": "chatcmpl-fixed",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"

    parts = [event({"role": "assistant", "content": ""})]
    parts += [event({"content": " " + WORDS[i % len(WORDS)]}) for i in range(tokens)]
    parts.append(event({}, "length"))
    usage = {
        "id": "chatcmpl-fixed",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": 8, "completion_tokens": tokens, "total_tokens": tokens + 8},
    }
    parts.append("data: " + json.dumps(usage, separators=(",", ":")) + "\n\n")
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONF = """\
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    tcp_nodelay on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root}/www;
        location / {{
            default_type text/event-stream;
            # POST to a static file is a 405: serve the stream for it (and for GET) all the same.
            error_page 405 =200 /stream.txt;
            try_files /stream.txt =404;
        }}
    }}
}}
"""


@dataclass
class NginxTarget:
    """A running nginx target: its URL and its access log."""

    url: str
    root: Path
    process: subprocess.Popen[bytes]

    def served(self) -> int:
        """Requests nginx has logged so far."""
        log = self.root / "access.log"
        if not log.exists():
            return 0
        with log.open("rb") as f:
            return sum(1 for _ in f)

    def cpu_pids(self) -> list[int]:
        """The pids of nginx's processes (master and workers), for CPU accounting."""
        done = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True
        )
        return [self.process.pid, *(int(p) for p in done.stdout.split())]


@contextlib.contextmanager
def nginx_target(root: Path, *, tokens: int = 128, workers: int = 1) -> Iterator[NginxTarget]:
    """Start nginx on a free loopback port serving the stream; stop it afterwards."""
    root.mkdir(parents=True, exist_ok=True)
    # nginx's workers drop to an unprivileged user: they must be able to read the stream file
    # (every folder above ``root`` too: a TemporaryDirectory is 0700).
    root.chmod(0o755)
    (root / "www").mkdir(exist_ok=True)
    (root / "www" / "stream.txt").write_bytes(sse_body(tokens))
    port = free_port()
    (root / "nginx.conf").write_text(CONF.format(root=root, port=port, workers=workers))
    process = subprocess.Popen([NGINX, "-c", str(root / "nginx.conf"), "-p", str(root)])
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(root / 'error.log').read_text()}")
            time.sleep(0.05)
        yield NginxTarget(f"http://127.0.0.1:{port}", root, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
