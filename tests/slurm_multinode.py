"""A real three-node Slurm cluster for tests, started by ``scripts/slurm-multinode-cluster.sh``.

Use as a pytest plugin (listed in ``tests/conftest.py``). Fixture:

``slurm_multinode``
    session scope: runs ``scripts/slurm-multinode-cluster.sh start`` (~4 s: network, daemons,
    a smoke array with one task per node) and yields a :class:`MultiNodeCluster`. Each node
    (``node1``..``node3``) is a slurmd in its own network and UTS namespace on the bridge
    ``csw-br0``; jobs run inside their node's namespaces, so whatever they must reach (the
    service, the target) listens on :attr:`MultiNodeCluster.bridge_address`.

Unlike ``slurm_cluster`` it leaves ``os.environ["SLURM_CONF"]`` alone (that one belongs to the
single-node cluster, which may run in the same session): pass :attr:`MultiNodeCluster.env` to
whatever calls Slurm's commands. Like ``slurm_cluster``, the cluster is shared by the test
sessions on the machine (holders in ``<state dir>/holders``); the last session to leave stops
it, when a test session started it, and stopping removes the namespaces, veths and bridge. A
start that fails is stopped too. Skips (with the reason) where the script cannot run: not root,
no network namespaces, no Slurm.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slurm_cluster import CANNOT_HAVE_SLURM, REPO, SlurmCluster, _live_holders, _locked

SCRIPT = REPO / "scripts" / "slurm-multinode-cluster.sh"
STATE_DIR = Path(os.environ.get("CLIENTSWARM_SLURM_MN_DIR", "/tmp/clientswarm-slurm-multinode"))
SUBNET = os.environ.get("CLIENTSWARM_SLURM_MN_SUBNET", "10.77.0")
NODES = ("node1", "node2", "node3")
START_TIMEOUT_S = 240  # when Slurm is missing, the dev cluster's script installs it first
STOP_TIMEOUT_S = 90

_TASK_HOST = re.compile(r"(?:^|\s)(ArrayTaskId|BatchHost)=(\S*)")


@dataclass
class MultiNodeCluster(SlurmCluster):
    """The running multi-node cluster: nodes by name with their addresses, and the bridge."""

    partition: str = "multi"
    bridge_address: str = f"{SUBNET}.1"
    subnet: str = f"{SUBNET}.0/24"
    nodes: dict[str, str] = field(
        default_factory=lambda: {node: f"{SUBNET}.1{node[-1]}" for node in NODES}
    )

    def task_hosts(self, job_id: int | str) -> dict[int, str]:
        """The node each started task of array ``job_id`` runs (or ran) on, by task index."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id))
        hosts: dict[int, str] = {}
        for line in proc.stdout.splitlines():
            fields = dict(_TASK_HOST.findall(line))
            task, host = fields.get("ArrayTaskId", ""), fields.get("BatchHost", "")
            if task.isdigit() and host and host != "(null)":
                hosts[int(task)] = host
        return hosts

    def take_down(self, node: str, reason: str) -> None:
        """``scontrol update state=down``: Slurm kills the node's jobs (NODE_FAIL)."""
        self.run(
            "scontrol", "update", f"NodeName={node}", "State=DOWN", f"Reason={reason}", check=True
        )

    def resume(self, node: str) -> None:
        """Put a node back in service (nothing to do when it is already back)."""
        self.run("scontrol", "update", f"NodeName={node}", "State=RESUME")


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CLIENTSWARM_SLURM_MN_DIR": str(STATE_DIR),
        "CLIENTSWARM_SLURM_MN_SUBNET": SUBNET,
        "CLIENTSWARM_SLURM_BY_TESTS": "1",
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _stop() -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        _script("stop", timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def start_multinode_cluster() -> Iterator[MultiNodeCluster]:
    """Start (or join) the multi-node cluster for the duration of the block."""
    if os.geteuid() != 0:
        pytest.skip("the multi-node Slurm cluster needs root (namespaces, slurmd, slurmctld)")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    holders = STATE_DIR / "holders"
    holders.mkdir(exist_ok=True)
    lock = STATE_DIR / ".holders.lock"
    me = holders / str(os.getpid())
    with _locked(lock):
        me.touch()
        try:
            proc = _script("start", timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            me.unlink(missing_ok=True)
            if not _live_holders(holders):
                _stop()
            pytest.fail(f"slurm-multinode-cluster.sh start did not finish in {START_TIMEOUT_S} s")
        if proc.returncode != 0:
            me.unlink(missing_ok=True)
            output = (proc.stdout + proc.stderr).strip()[-3000:]
            if proc.returncode == CANNOT_HAVE_SLURM:
                pytest.skip(f"the multi-node Slurm cluster cannot run here: {output}")
            if not _live_holders(holders):
                _stop()
            pytest.fail(f"slurm-multinode-cluster.sh start failed ({proc.returncode}):\n{output}")
    cluster = MultiNodeCluster(conf=STATE_DIR / "slurm.conf", state_dir=STATE_DIR, rest_socket=None)
    try:
        yield cluster
    finally:
        for node in cluster.nodes:  # a test that took a node down may have failed before
            with contextlib.suppress(subprocess.SubprocessError):
                cluster.resume(node)
        with _locked(lock):
            me.unlink(missing_ok=True)
            if not _live_holders(holders) and (STATE_DIR / "started-by-tests").exists():
                _stop()


@pytest.fixture(scope="session")
def slurm_multinode() -> Iterator[MultiNodeCluster]:
    """The three-node Slurm cluster in network namespaces, for the whole test session."""
    with start_multinode_cluster() as cluster:
        yield cluster
