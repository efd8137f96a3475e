"""Start the built-in simulator as a child process, for ``run --mock`` and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
import tempfile
from collections.abc import AsyncIterator

from clientswarm.errors import ClientswarmError

LISTENING = "mock-server listening on "


@contextlib.asynccontextmanager
async def mock_target(args: str = "", timeout_s: float = 30.0) -> AsyncIterator[str]:
    """Run ``clientswarm mock-server --port 0 ARGS`` on loopback; yield its base URL."""
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clientswarm.mock.cli",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            *shlex.split(args),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # Ctrl-C stops the clients first; the target goes last
        )
        drain: asyncio.Task[bytes] | None = None
        try:
            try:
                url = await asyncio.wait_for(_listening_url(proc), timeout_s)
            except (TimeoutError, ClientswarmError) as exc:
                stderr.seek(0)
                err = stderr.read().decode(errors="replace").strip()[-2000:]
                raise ClientswarmError(
                    f"the mock server did not start ({type(exc).__name__}): {err or 'no output'}"
                ) from exc
            assert proc.stdout is not None
            drain = asyncio.create_task(proc.stdout.read())  # never let its stdout pipe fill
            yield url
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            if drain is not None:
                await drain


async def _listening_url(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode().strip()
        if line.startswith(LISTENING):
            return line.removeprefix(LISTENING)
    raise ClientswarmError("it exited")
