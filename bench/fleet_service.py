"""The service side of the fleet benchmark: a real ``clientswarm serve`` whose workers nobody
spawns, a throwaway PostgreSQL, and what ``/proc`` says about their CPU and memory.

Workers played by the benchmark. A cluster with ``spawner.kind: slurm`` is submitted through
the Slurm command-line tools on the service's ``PATH`` (:mod:`clientswarm.spawners.slurm.cli`).
:func:`write_stand_in_slurm` puts four shell scripts first on that ``PATH``: ``sbatch`` keeps
the cluster's worker token (it arrives in sbatch's environment, as it would on a real cluster)
and prints a job id, starting nothing; ``squeue --json`` reports every array task ``RUNNING``
until ``scancel`` marks the job cancelled; ``scontrol`` answers the same. The service then
waits for the N workers of the array to register, follows them by heartbeat, and takes their
batches, exactly as it does for a real array whose tasks run elsewhere. Nothing of the service
is changed for the benchmark.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import CLK_TCK, children, cpu_seconds, rss_kb
from report import clientswarm_argv

LISTENING = "clientswarm service listening on "
START_TIMEOUT_S = 60.0

_SBATCH = """#!/bin/sh
# Stand-in sbatch of bench/fleet.py: keeps the worker token, starts nothing.
umask 077
for last; do :; done
grep -o -- '--array=[0-9-]*' "$last" | head -n 1 | cut -d= -f2 > "{state}/array"
printf '%s\\n' "$CLIENTSWARM_WORKER_TOKEN" > "{state}/token.tmp"
mv "{state}/token.tmp" "{state}/token"
echo 4242
"""
_SQUEUE = """#!/bin/sh
# Stand-in squeue of bench/fleet.py: every task of the array runs until scancel.
id=4242
for arg; do case $arg in --jobs=*) id=${{arg#--jobs=}};; esac; done
state=RUNNING
[ -e "{state}/cancelled" ] && state=CANCELLED
record='"job_id":%s,"array_job_id":%s,"array_task_string":"%s","job_state":["%s"]'
printf '{{"jobs":[{{'"$record"'}}]}}\\n' "$id" "$id" "$(cat "{state}/array")" "$state"
"""
_SCONTROL = """#!/bin/sh
# Stand-in scontrol of bench/fleet.py (only 'scontrol -o show job ID' is asked).
state=RUNNING
[ -e "{state}/cancelled" ] && state=CANCELLED
echo "JobId=$4 ArrayJobId=$4 ArrayTaskId=$(cat "{state}/array") JobState=$state Reason=None"
"""
_SCANCEL = """#!/bin/sh
# Stand-in scancel of bench/fleet.py.
touch "{state}/cancelled"
"""


def write_stand_in_slurm(root: Path) -> Path:
    """Write the stand-in Slurm tools into ``root/bin`` (their state in ``root/state``);
    return the bin folder, to put first on the service's ``PATH``."""
    bin_dir, state = root / "bin", root / "state"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    (state / "array").write_text("0-0\n")
    scripts = {"sbatch": _SBATCH, "squeue": _SQUEUE, "scontrol": _SCONTROL, "scancel": _SCANCEL}
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text.format(state=state))
        path.chmod(0o755)
    return bin_dir


def fleet_config(
    name: str, workers: int, duration_s: float, sample_path: str = "service"
) -> dict[str, Any]:
    """The cluster the simulated workers join: ``workers`` array tasks, one client each, its
    samples posted (``sample_path: service``) or written to files (``files``).

    Its target is never called (the workers make the samples up): no preflight, no engine
    metrics, so the service waits for nothing but the workers.
    """
    return {
        "name": name,
        "seed": 1,
        "preflight": False,
        "sample_path": sample_path,
        "target": {"url": "http://127.0.0.1:9", "model": "fleet", "metrics": False},
        "spawner": {"kind": "slurm", "workers": workers},
        "groups": [
            {
                "name": "chat",
                "clients": workers,
                "interaction": {"kind": "chat", "stream": True, "max_tokens": 64},
                "load": {"kind": "closed", "think_time_s": 0},
                "stop": {"duration_s": duration_s},
            }
        ],
    }


def raise_nofile() -> tuple[int, int]:
    """Raise this process's open-file soft limit to its hard limit (inherited by children);
    return (old soft, hard)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft, hard


class FleetService:
    """``clientswarm serve`` on a free loopback port, the stand-in Slurm tools first on its
    ``PATH``, with a tiny client of its REST API."""

    def __init__(
        self, root: Path, store_url: str | None, max_workers: int, profile: Path | None = None
    ) -> None:
        self.root = root
        self.profile = profile
        self.store_url = store_url or f"sqlite:///{root / 'data' / 'clientswarm.sqlite'}"
        self.max_workers = max_workers
        self.slurm_state = root / "slurm" / "state"
        self.log_path = root / "service.log"
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        """The service's process id."""
        assert self.process is not None
        return self.process.pid

    def start(self) -> FleetService:
        """Start the service; return once it listens."""
        bin_dir = write_stand_in_slurm(self.root / "slurm")
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = clientswarm_argv(
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(data),
            "--store",
            self.store_url,
            "--log-level",
            "warning",
            "--max-workers",
            str(self.max_workers),
            "--max-clients",
            str(max(10_000, self.max_workers)),
            "--max-active-clusters",
            "1",
        )
        if self.profile is not None:  # the same command, under bench/fleet_profile.py
            script = Path(__file__).resolve().parent / "fleet_profile.py"
            argv = [sys.executable, str(script), f"--out={self.profile}", "--", *argv[1:]]
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        env.pop("CLIENTSWARM_API_TOKEN", None)
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith(LISTENING):
                self.url = line[len(LISTENING) :].split()[0]
                return self
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError(f"the service did not start:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM the service and wait for it; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the service's log."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One call of the REST API (``/api/v1``); status and decoded JSON."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + "/api/v1" + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None

    def worker_token(self, timeout_s: float = 30.0) -> str:
        """The token the stand-in sbatch kept for the cluster's workers."""
        path = self.slurm_state / "token"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if path.exists():
                return path.read_text().strip()
            time.sleep(0.05)
        raise RuntimeError(f"the service submitted no job array:\n{self.log_tail()}")

    def wait_final(self, cluster_id: str, timeout_s: float) -> dict[str, Any]:
        """The cluster's view once it has ended (or the last one seen after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status, view = self.api("GET", f"/clusters/{cluster_id}")
            if status == 200 and view["status"] in ("completed", "failed", "cancelled"):
                return view
            time.sleep(0.25)
        return view


def count_stored(store_url: str, cluster_id: str) -> int:
    """Samples of ``cluster_id`` in the store (read after the service has stopped)."""
    from clientswarm.store import Store

    store = Store(store_url)
    try:
        return store.count_samples(cluster_id)
    finally:
        store.close()


def count_in_files(data_dir: Path, cluster_id: str) -> int:
    """Samples of ``cluster_id`` in its workers' files of the high-rate path (the service's
    ``data_dir/samples``; read after the service has stopped, every tick counted once)."""
    from clientswarm.reports.samplefiles import SampleFiles

    return SampleFiles(data_dir / "samples", cluster_id).count_samples()


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` and its children, the reaped ones included (a PostgreSQL
    postmaster and its backends); None once it is gone."""
    own = _stat_fields(pid)
    if own is None:
        return None
    total = sum(own)
    for child in children(pid):
        fields = _stat_fields(child)
        total += sum(fields) if fields is not None else 0.0
    return total


def _stat_fields(pid: int) -> tuple[float, float, float, float] | None:
    """utime, stime, cutime and cstime of ``pid`` in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = stat[stat.rindex(")") + 2 :].split()
    return (
        int(f[11]) / CLK_TCK,
        int(f[12]) / CLK_TCK,
        int(f[13]) / CLK_TCK,
        int(f[14]) / CLK_TCK,
    )


def system_seconds(pid: int) -> float | None:
    """Kernel-mode CPU seconds of ``pid`` (its system calls: sockets, fsync); None once gone."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[1]


def main_thread_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid``'s main thread (the service's event loop); None once gone."""
    try:
        stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return None
    f = stat[stat.rindex(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def threads_of(pid: int) -> int:
    """Threads of ``pid`` (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[Any, int]]:
    """A throwaway PostgreSQL (``tests/postgres.py``: initdb in a temp dir, Unix socket only,
    ``fsync=off``, ``max_connections=200``); yields the server (``create_database(name)`` gives
    a fresh database's URL) and the postmaster's pid."""
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(tests))
    from postgres import start_postgres

    try:
        with start_postgres() as server:
            pid_file = server.socket_dir / "data" / "postmaster.pid"
            yield server, int(pid_file.read_text().split()[0])
    except BaseException as exc:
        # tests/postgres.py says "skip" and "fail" the pytest way: make them plain errors.
        if type(exc).__module__.startswith("_pytest"):
            raise RuntimeError(f"PostgreSQL could not start: {exc}") from None
        raise


__all__ = [
    "FleetService",
    "count_in_files",
    "count_stored",
    "cpu_seconds",
    "fleet_config",
    "main_thread_seconds",
    "postgres_server",
    "raise_nofile",
    "rss_kb",
    "system_seconds",
    "threads_of",
    "tree_cpu_seconds",
    "write_stand_in_slurm",
]
