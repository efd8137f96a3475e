"""Cluster-wide client numbering, placement on workers and the split of max_concurrency."""

from __future__ import annotations

import pytest

from clientswarm.config.models import ClusterConfig
from clientswarm.load import (
    WorkerClient,
    client_ids,
    clients_of_worker,
    group_of_client,
    hosted_clients,
    worker_concurrency,
    worker_of_client,
)


@pytest.fixture
def config() -> ClusterConfig:
    return ClusterConfig.model_validate(
        {
            "name": "c",
            "target": {"url": "http://127.0.0.1:1"},
            "groups": [
                {
                    "name": name,
                    "clients": n,
                    "interaction": {"kind": "hello"},
                    "stop": {"duration_s": 1},
                }
                for name, n in (("a", 3), ("b", 5), ("c", 1))
            ],
        }
    )


def test_clients_are_numbered_group_after_group(config: ClusterConfig) -> None:
    assert [client_ids(config, g) for g in range(3)] == [range(0, 3), range(3, 8), range(8, 9)]
    assert [group_of_client(config, c) for c in range(9)] == [0, 0, 0, 1, 1, 1, 1, 1, 2]
    with pytest.raises(ValueError, match=r"0\.\.8"):
        group_of_client(config, 9)
    with pytest.raises(ValueError, match="group index"):
        client_ids(config, 3)


def test_client_lives_on_worker_c_mod_workers() -> None:
    assert [worker_of_client(c, 4) for c in range(9)] == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    with pytest.raises(ValueError):
        worker_of_client(0, 0)


@pytest.mark.parametrize("workers", [1, 2, 4, 9, 12])
def test_workers_partition_the_clients(config: ClusterConfig, workers: int) -> None:
    hosted = [clients_of_worker(config, w, workers) for w in range(workers)]
    ids = sorted(wc.client_id for part in hosted for wc in part)
    assert ids == list(range(config.total_clients))
    for w, part in enumerate(hosted):
        for wc in part:
            assert wc.client_id % workers == w
            assert client_ids(config, wc.group_index)[wc.local_index] == wc.client_id


def test_clients_of_worker_names_group_and_local_index(config: ClusterConfig) -> None:
    assert clients_of_worker(config, 1, 3) == [
        WorkerClient(0, 1, 1),
        WorkerClient(1, 4, 1),
        WorkerClient(1, 7, 4),
    ]


def test_hosted_clients() -> None:
    assert list(hosted_clients(range(3, 11), 2, 4)) == [6, 10]
    assert list(hosted_clients(range(3, 4), 0, 4)) == []


@pytest.mark.parametrize(
    ("max_concurrency", "clients", "workers"),
    [
        (256, range(0, 16), 2),
        (10, range(3, 10), 3),
        (70, range(5, 105), 8),
        (100, range(0, 3), 8),
        (5, range(0, 1000), 5),
        (13, range(1, 12), 4),
    ],
)
def test_concurrency_split_sums_to_the_cap(
    max_concurrency: int, clients: range, workers: int
) -> None:
    shares = [worker_concurrency(max_concurrency, clients, w, workers) or 0 for w in range(workers)]
    assert sum(shares) == max_concurrency
    for w, share in enumerate(shares):
        hosted = len(hosted_clients(clients, w, workers))
        assert (share == 0) == (hosted == 0)
    # Proportional: a worker hosting more clients never gets fewer slots.
    pairs = sorted((len(hosted_clients(clients, w, workers)), shares[w]) for w in range(workers))
    assert [s for _, s in pairs] == sorted(s for _, s in pairs)


def test_concurrency_below_the_hosting_workers_gives_each_one_slot() -> None:
    shares = [worker_concurrency(2, range(0, 10), w, 4) for w in range(4)]
    assert shares == [1, 1, 1, 1]


def test_no_cap_stays_none() -> None:
    assert worker_concurrency(None, range(0, 4), 0, 2) is None
