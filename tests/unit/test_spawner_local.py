"""The local spawner: what it would run (pure), and following and stopping real processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from clientswarm.config.spawners import LocalSpawnerConfig
from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch
from clientswarm.spawners.local import LocalHandle, LocalSpawner, log_path


def launch(tmp_path: Path, python: str = "/usr/bin/python3", workers: int = 2) -> ClusterLaunch:
    return ClusterLaunch(
        cluster_id="abc123",
        service_url="http://127.0.0.1:8080",
        token="very-secret-token",
        log_dir=str(tmp_path / "logs"),
        python=python,
        options=LocalSpawnerConfig(workers=workers),
    )


def test_render_shows_each_worker_command_and_hides_the_token(tmp_path: Path) -> None:
    rendered = LocalSpawner().render(launch(tmp_path))
    logs = tmp_path / "logs"
    assert rendered == (
        "# cluster abc123: 2 local worker process(es)\n"
        "CLIENTSWARM_WORKER_TOKEN=<redacted> /usr/bin/python3 -m clientswarm.worker --service "
        f"http://127.0.0.1:8080 --cluster abc123 --index 0 > {logs}/worker-0.log 2>&1 &\n"
        "CLIENTSWARM_WORKER_TOKEN=<redacted> /usr/bin/python3 -m clientswarm.worker --service "
        f"http://127.0.0.1:8080 --cluster abc123 --index 1 > {logs}/worker-1.log 2>&1 &\n"
    )
    assert "very-secret-token" not in rendered
    assert "very-secret-token" not in repr(launch(tmp_path))


async def test_poll_reports_exit_codes_with_log_tail_and_stop_escalates(tmp_path: Path) -> None:
    # A stand-in "python" that ignores SIGTERM for worker 1 and fails at once for worker 0.
    fake = tmp_path / "fake-python"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import signal, sys, time\n"
        "index = int(sys.argv[sys.argv.index('--index') + 1])\n"
        "if index == 0:\n"
        "    print('cannot reach the service'); sys.exit(3)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('running', flush=True)\n"
        "time.sleep(60)\n"
    )
    fake.chmod(0o755)
    spawner = LocalSpawner()
    spec = launch(tmp_path, python=str(fake))
    handle = await spawner.submit(spec)
    assert set(handle.pids) == {0, 1} and handle.following
    for _ in range(100):
        ended = await spawner.poll(spec.cluster_id, handle)
        if ended:
            break
        await asyncio.sleep(0.05)
    assert [(e.index, e.exit_code, e.reason) for e in ended] == [(0, 3, "exited with code 3")]
    assert "cannot reach the service" in ended[0].log_tail
    for _ in range(200):  # worker 1 ignores SIGTERM only once it has said so
        if "running" in log_path(spec.log_dir, 1).read_text():
            break
        await asyncio.sleep(0.05)
    await spawner.stop(spec.cluster_id, handle, grace_s=0.3)  # SIGTERM ignored → SIGKILL
    ended = await spawner.poll(spec.cluster_id, handle)
    assert {(e.index, e.exit_code) for e in ended} == {(0, 3), (1, -9)}
    assert "running" in log_path(spec.log_dir, 1).read_text()


def test_the_stored_form_of_a_handle_reads_back_and_keeps_its_keys() -> None:
    # What services before typed handles stored: pids and start times keyed by index strings.
    stored = {"pids": {"0": 4242, "1": 4243}, "started": {"0": 17, "1": None}, "boot_id": "b"}
    handle = LocalSpawner().restore({**stored, "log_dir": "/logs"})
    assert handle.worker(0).pid == 4242 and handle.worker(0).started == 17
    assert handle.worker(1).started is None and handle.worker(1).boot == "b"
    assert handle.to_json() == {**stored, "log_dir": "/logs"}  # the same JSON, written back
    assert LocalHandle.from_json(handle.to_json()) == handle
    with pytest.raises(SpawnerError, match=r"LocalHandle .*pids"):
        LocalSpawner().restore({"job_id": "123"})  # another spawner's


def test_a_launch_has_as_many_workers_as_its_options_say(tmp_path: Path) -> None:
    assert launch(tmp_path, workers=3).workers == 3
    assert "--index 2" in LocalSpawner().render(launch(tmp_path, workers=3))
