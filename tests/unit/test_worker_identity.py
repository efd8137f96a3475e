"""The local spawner signals only the processes it started as workers, even once their pids
have been reused: real processes, every one started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clientswarm.config.spawners import LocalSpawnerConfig
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.spawners.identity import WorkerProcess, boot_id, start_ticks
from clientswarm.spawners.local import LocalHandle, LocalSpawner

pytestmark = pytest.mark.skipif(boot_id() is None, reason="needs /proc (Linux)")


def fake_python(tmp_path: Path) -> str:
    """A stand-in interpreter: worker 0 exits at once, the others wait to be stopped."""
    fake = tmp_path / "fake-python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "if sys.argv[sys.argv.index('--index') + 1] == '0':\n"
        "    sys.exit(0)\n"
        "time.sleep(60)\n"
    )
    fake.chmod(0o755)
    return str(fake)


def launch(tmp_path: Path, workers: int) -> ClusterLaunch:
    return ClusterLaunch(
        cluster_id="reuse1",
        service_url="http://127.0.0.1:9",
        token="t",
        log_dir=str(tmp_path / "logs"),
        python=fake_python(tmp_path),
        options=LocalSpawnerConfig(workers=workers),
    )


@contextlib.contextmanager
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is no worker of anyone: it must never be signalled."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def test_after_a_restart_a_reused_pid_is_neither_followed_nor_signalled(
    tmp_path: Path,
) -> None:
    spec = launch(tmp_path, workers=2)
    first = LocalSpawner()
    handle = await first.submit(spec)
    try:
        for _ in range(200):  # worker 0 ends at once
            if await first.poll(spec.cluster_id, handle):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # a pid is reused by a process started after its owner ended
        with bystander() as other:
            await restarted_service_follows(spec, handle, other)
    finally:
        await first.stop(spec.cluster_id, handle, grace_s=0.5)  # reaps its children


async def restarted_service_follows(
    spec: ClusterLaunch, handle: LocalHandle, other: subprocess.Popen[bytes]
) -> None:
    # The service restarts (only what it stored remains), and the kernel has given worker 0's
    # pid to another process.
    stored = json.loads(json.dumps(handle.to_json()))
    stored["pids"]["0"] = other.pid
    restarted = LocalSpawner()
    again = restarted.restore(stored)

    ended = await restarted.poll(spec.cluster_id, again)
    assert [(e.index, e.exit_code) for e in ended] == [(0, None)]  # worker 0 is gone
    await restarted.stop(spec.cluster_id, again, grace_s=2.0)
    assert other.poll() is None  # neither SIGTERM nor SIGKILL reached it
    ended = await restarted.poll(spec.cluster_id, again)
    assert {e.index for e in ended} == {0, 1}  # the real worker 1 was stopped
    worker1 = again.worker(1)
    assert worker1.verifiable and not worker1.alive()


def test_a_restarted_service_holding_a_stored_pid_does_not_signal_itself(tmp_path: Path) -> None:
    # The service after its restart, as a real process whose own pid is in the stored state
    # with the start time of the worker that held it before.
    service = textwrap.dedent(
        """
        import asyncio, os, sys
        from clientswarm.spawners.identity import boot_id
        from clientswarm.spawners.local import LocalSpawner
        stored = {"pids": {"0": os.getpid()}, "started": {"0": int(sys.argv[1])},
                  "boot_id": boot_id(), "log_dir": sys.argv[2]}
        spawner = LocalSpawner()
        asyncio.run(spawner.stop("c", spawner.restore(stored), grace_s=0.2))
        print("survived")
        """
    )
    earlier = start_ticks(1)  # any start time other than the service's own
    assert earlier is not None
    done = subprocess.run(
        [sys.executable, "-c", service, str(earlier), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "survived"), done.stderr[-500:]


def test_start_ticks_tell_two_processes_apart_and_a_process_from_itself() -> None:
    procs = []
    for _ in range(2):
        procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        time.sleep(0.05)  # 5 clock ticks at 100 Hz: distinct start times
    try:
        first, second = (WorkerProcess.of_child(p.pid) for p in procs)
        assert first.alive() and first.is_it() and second.alive()
        assert first.started != second.started
        impostor = WorkerProcess(second.pid, first.started, first.boot)
        assert not impostor.alive() and not impostor.is_it()
        assert not WorkerProcess(first.pid, first.started, "another-boot").is_it()
        assert not WorkerProcess(first.pid).is_it()  # no identity stored: never signalled
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
