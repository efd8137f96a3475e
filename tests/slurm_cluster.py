"""A real single-node Slurm cluster for tests, started by ``scripts/slurm-dev-cluster.sh``.

Use as a pytest plugin (``pytest_plugins = ["slurm_cluster"]``) or import the fixture. Fixture:

``slurm_cluster``
    session scope: runs ``scripts/slurm-dev-cluster.sh start --rest`` (installing Slurm with apt
    the first time, which takes ~15 s; ~0.2 s when it already runs) and yields a
    :class:`SlurmCluster`. For the session ``os.environ["SLURM_CONF"]`` points at the cluster, so
    code under test that calls ``sbatch``/``squeue`` without an explicit env finds it.

The cluster is shared by every test session on the machine (one state dir, fixed ports). Each
session registers itself in ``<state dir>/holders``; the last session to leave stops the cluster,
and only when a test session started it (``<state dir>/started-by-tests``): a cluster a user
started by hand is left running. Skips (with the reason) when not root, or when Slurm is missing
and cannot be installed (no apt-get, ``CLIENTSWARM_NO_APT=1``, apt failing).

Facts worth knowing when writing tests against it (Slurm 22.05.8, no slurmdbd):

* ``sacct`` does not work; ``squeue --json`` lists *all* jobs known to slurmctld (it ignores
  ``-j``/``-t``), finished ones included for an hour. ``scontrol show job -o ID`` filters.
* Array tasks that have not started are one record: ``array_task_id`` null and
  ``array_task_string`` like ``"0,2-3"``; started tasks have their own records. The last task
  reuses the array's job id: key tasks on ``(array_job_id, array_task_id)``.
* Jobs submitted through slurmrestd run as :attr:`SlurmCluster.rest_user`, not as root: their
  working directory and output files must be writable by that user (:meth:`scratch_dir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm-dev-cluster.sh"
STATE_DIR = Path(os.environ.get("CLIENTSWARM_SLURM_DIR", "/tmp/clientswarm-slurm"))
START_TIMEOUT_S = 240  # a first start installs the packages (~15 s, more when apt must update)
STOP_TIMEOUT_S = 60
REST_API = "/slurm/v0.0.38"
CANNOT_HAVE_SLURM = 3  # the script's exit status when Slurm cannot be installed or run here

# Job states after which a job never changes again.
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)

_FIELD = re.compile(r"(?:^|\s)(JobId|ArrayJobId|ArrayTaskId|JobState|Reason|ExitCode)=(\S*)")


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (slurmrestd's)."""

    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def expand_task_ids(spec: str) -> list[int]:
    """The task ids of an array spec as Slurm prints it: ``"0,2-3"``, ``"0-7:2"``, ``"0-3%2"``."""
    spec = spec.split("%", 1)[0].strip("[]")
    ids: list[int] = []
    for part in filter(None, spec.split(",")):
        rng, _, step = part.partition(":")
        first, _, last = rng.partition("-")
        ids.extend(range(int(first), int(last or first) + 1, int(step or 1)))
    return ids


@dataclass
class SlurmCluster:
    """The running dev cluster: its config, how to reach it, and helpers to drive it."""

    conf: Path
    state_dir: Path
    rest_socket: Path | None
    partition: str = "debug"
    rest_user: str = "clientswarm-rest"
    _scratch: list[Path] = field(default_factory=list, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """What to merge into a subprocess's environment so Slurm's commands find the cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(
        self, *cmd: str, check: bool = False, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (``sbatch …``, ``squeue …``) against the cluster; text output."""
        return subprocess.run(
            list(cmd),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def sbatch(self, *args: str) -> int:
        """Submit with ``sbatch --parsable ARGS``; the job id."""
        out = self.run("sbatch", "--parsable", *args, check=True).stdout.strip()
        return int(out.split(";", 1)[0])

    def job_records(self, job_id: int) -> list[dict[str, str]]:
        """``scontrol show job -o JOB_ID`` parsed: JobId, ArrayJobId, ArrayTaskId, JobState,
        Reason, ExitCode of each record (one per job; an array: one per started task plus one
        for the tasks not started yet). Empty when Slurm does not know the job."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id))
        if proc.returncode != 0:
            return []
        return [dict(_FIELD.findall(line)) for line in proc.stdout.splitlines() if line.strip()]

    def task_states(self, job_id: int) -> dict[int | None, str]:
        """The state of each task of an array (``None``: not an array) by task id."""
        states: dict[int | None, str] = {}
        for rec in self.job_records(job_id):
            task = rec.get("ArrayTaskId")
            state = rec.get("JobState", "UNKNOWN")
            if not task:
                states[None] = state
            else:
                for tid in expand_task_ids(task):
                    states[tid] = state
        return states

    def wait_job(self, job_id: int, timeout: float = 60) -> str:
        """Wait until the job (every task of an array) is finished; its final state.

        For an array whose tasks ended differently, the distinct states joined by ``","``
        (sorted). Raises ``TimeoutError`` with the current states after ``timeout`` seconds."""
        return _summary(self.wait_tasks(job_id, timeout))

    def wait_tasks(self, job_id: int, timeout: float = 60) -> dict[int | None, str]:
        """Wait until every task of the job is finished; the final state of each task."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.task_states(job_id)
            if states and all(s in TERMINAL_STATES for s in states.values()):
                return states
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout} s: {states}")
            time.sleep(0.2)

    def squeue_json(self) -> list[dict[str, Any]]:
        """Every job slurmctld knows (``squeue --json``; finished ones included)."""
        proc = self.run("squeue", "--json", check=True)
        jobs: list[dict[str, Any]] = json.loads(proc.stdout)["jobs"]
        return jobs

    def rest(
        self, method: str, path: str, body: Any = None, timeout: float = 30
    ) -> tuple[int, Any]:
        """One request to slurmrestd over its unix socket (``path`` below ``/slurm/v0.0.38``
        unless it starts with ``/slurm``); the status and the decoded JSON reply."""
        if self.rest_socket is None:
            pytest.skip("slurmrestd is not running")
        if not path.startswith("/slurm"):
            path = REST_API + path
        conn = _UnixHTTPConnection(str(self.rest_socket), timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            data = json.dumps(body) if body is not None else None
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        return resp.status, json.loads(raw) if raw else None

    def scratch_dir(self, prefix: str = "test-") -> Path:
        """A fresh folder every job can write into, REST jobs (run as :attr:`rest_user`)
        included; removed at the end of the session."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.state_dir / "jobs"))
        path.chmod(0o777)
        self._scratch.append(path)
        return path


def _summary(states: dict[int | None, str]) -> str:
    return ",".join(sorted(set(states.values())))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_holders(holders: Path) -> list[Path]:
    """The holder files of live processes; those of dead ones are removed."""
    live = []
    for entry in holders.iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            live.append(entry)
        else:
            entry.unlink(missing_ok=True)
    return live


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLIENTSWARM_SLURM_DIR": str(STATE_DIR), "CLIENTSWARM_SLURM_BY_TESTS": "1"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _why_no_slurm() -> str | None:
    """Why Slurm cannot run here, or None when it may."""
    if os.geteuid() != 0:
        return "the Slurm dev cluster needs root (slurmctld/slurmd/munged run as root)"
    if shutil.which("bash") is None or shutil.which("runuser") is None:
        return "the Slurm dev cluster needs bash and runuser"
    installed = all(shutil.which(b) for b in ("munged", "slurmctld", "slurmd", "sbatch"))
    if not installed:
        if shutil.which("apt-get") is None:
            return "Slurm is not installed and there is no apt-get to install it"
        if os.environ.get("CLIENTSWARM_NO_APT") == "1":
            return "Slurm is not installed and CLIENTSWARM_NO_APT=1 forbids installing it"
    return None


@contextlib.contextmanager
def start_slurm_cluster() -> Iterator[SlurmCluster]:
    """Start (or join) the dev cluster for the duration of the block; see the module doc."""
    reason = _why_no_slurm()
    if reason:
        pytest.skip(reason)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    holders = STATE_DIR / "holders"
    holders.mkdir(exist_ok=True)
    lock = STATE_DIR / ".holders.lock"
    me = holders / str(os.getpid())
    with _locked(lock):
        me.touch()
        try:
            proc = _script("start", "--rest", timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            me.unlink(missing_ok=True)
            pytest.fail(f"slurm-dev-cluster.sh start did not finish in {START_TIMEOUT_S} s")
        if proc.returncode != 0:
            me.unlink(missing_ok=True)
            output = (proc.stdout + proc.stderr).strip()[-3000:]
            if proc.returncode == CANNOT_HAVE_SLURM:
                pytest.skip(f"Slurm cannot run here: {output}")
            pytest.fail(f"slurm-dev-cluster.sh start failed ({proc.returncode}):\n{output}")
    socket_path = STATE_DIR / "rest" / "slurmrestd.sock"
    cluster = SlurmCluster(
        conf=STATE_DIR / "slurm.conf",
        state_dir=STATE_DIR,
        rest_socket=socket_path if socket_path.is_socket() else None,
        rest_user=_rest_user(),
    )
    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
        for path in cluster._scratch:
            shutil.rmtree(path, ignore_errors=True)
        with _locked(lock):
            me.unlink(missing_ok=True)
            if not _live_holders(holders) and (STATE_DIR / "started-by-tests").exists():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    _script("stop", timeout=STOP_TIMEOUT_S)


def _rest_user() -> str:
    """The user slurmrestd runs as (the script's choice), from its pid."""
    try:
        pid = (STATE_DIR / "run" / "slurmrestd.pid").read_text().strip()
        uid = os.stat(f"/proc/{pid}").st_uid
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError, ValueError):
        return os.environ.get("CLIENTSWARM_SLURM_REST_USER", "clientswarm-rest")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The single-node Slurm dev cluster (with slurmrestd) for the whole test session."""
    with start_slurm_cluster() as cluster:
        yield cluster
