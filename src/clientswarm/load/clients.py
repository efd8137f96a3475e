"""Cluster-wide client numbering, the placement of clients on workers, and concurrency caps.

Clients are numbered across the whole cluster, group after group: group 0's clients are
``0 .. n0-1``, group 1's are ``n0 .. n0+n1-1``, and so on. A client's *local index* is its
position inside its group (``client_id - first client of the group``). Client ``c`` lives on
worker ``c % workers``, so every worker can work out its own clients from the configuration
alone, and consecutive clients of a group land on different workers.

An open-loop group's ``max_concurrency`` is a fleet-wide cap. No central counter sits on the hot
path, so the cap is split across the workers that host the group's clients, in proportion to how
many of them each hosts (see :func:`worker_concurrency`).
"""

from __future__ import annotations

from typing import NamedTuple

from clientswarm.config.models import ClusterConfig


class WorkerClient(NamedTuple):
    """One client hosted by a worker: its group, its cluster-wide id, its index in the group."""

    group_index: int
    client_id: int
    local_index: int


def _check_workers(worker: int, workers: int) -> None:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not 0 <= worker < workers:
        raise ValueError(f"worker index must be in 0..{workers - 1}, got {worker}")


def _check_group(config: ClusterConfig, group_index: int) -> None:
    if not 0 <= group_index < len(config.groups):
        raise ValueError(f"group index must be in 0..{len(config.groups) - 1}, got {group_index}")


def first_client(config: ClusterConfig, group_index: int) -> int:
    """Cluster-wide id of the first client of group ``group_index``."""
    _check_group(config, group_index)
    return sum(group.clients for group in config.groups[:group_index])


def client_ids(config: ClusterConfig, group_index: int) -> range:
    """Cluster-wide ids of the clients of group ``group_index``."""
    start = first_client(config, group_index)
    return range(start, start + config.groups[group_index].clients)


def group_of_client(config: ClusterConfig, client_id: int) -> int:
    """Index of the group that client ``client_id`` belongs to."""
    start = 0
    for group_index, group in enumerate(config.groups):
        if start <= client_id < start + group.clients:
            return group_index
        start += group.clients
    raise ValueError(f"client id must be in 0..{start - 1}, got {client_id}")


def worker_of_client(client_id: int, workers: int) -> int:
    """Index of the worker that hosts client ``client_id``."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if client_id < 0:
        raise ValueError(f"client id must be >= 0, got {client_id}")
    return client_id % workers


def hosted_clients(clients: range, worker: int, workers: int) -> range:
    """The ids in ``clients`` (a group's id range) that worker ``worker`` hosts."""
    _check_workers(worker, workers)
    first = clients.start + (worker - clients.start) % workers
    return range(first, clients.stop, workers)


def clients_of_worker(config: ClusterConfig, worker: int, workers: int) -> list[WorkerClient]:
    """Every client that worker ``worker`` hosts, group by group, in increasing id order."""
    _check_workers(worker, workers)
    hosted: list[WorkerClient] = []
    for group_index in range(len(config.groups)):
        ids = client_ids(config, group_index)
        for client_id in hosted_clients(ids, worker, workers):
            hosted.append(WorkerClient(group_index, client_id, client_id - ids.start))
    return hosted


def worker_concurrency(
    max_concurrency: int | None, clients: range, worker: int, workers: int
) -> int | None:
    """This worker's share of a group's fleet-wide ``max_concurrency``.

    ``clients`` is the group's id range (:func:`client_ids`). Each worker hosting at least one
    of the group's clients gets one slot, and the rest are shared in proportion to how many of
    the group's clients it hosts (largest remainder, ties to the lower worker index), so the
    shares sum to ``max_concurrency``. When the cap is smaller than the number of hosting
    workers, each still gets 1 and the fleet may exceed the cap by that difference: a worker
    with no slot could never send. A worker hosting none of the group's clients gets 0;
    ``None`` (no cap) stays ``None``.
    """
    _check_workers(worker, workers)
    if max_concurrency is None:
        return None
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    counts = [len(hosted_clients(clients, w, workers)) for w in range(workers)]
    if counts[worker] == 0:
        return 0
    hosts = [w for w in range(workers) if counts[w] > 0]
    extra = max_concurrency - len(hosts)
    if extra <= 0:
        return 1
    total = len(clients)
    # Exact integer arithmetic so that every worker computes the same apportionment.
    shares = {w: 1 + extra * counts[w] // total for w in hosts}
    leftover = max_concurrency - sum(shares.values())
    by_remainder = sorted(hosts, key=lambda w: (-(extra * counts[w] % total), w))
    for w in by_remainder[:leftover]:
        shares[w] += 1
    return shares[worker]
