"""One summary: finalised once by the service, served alike by ``GET …/results`` and written
as ``clientswarm run``'s summary.json; the samples file written while the batches commit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import ClusterStatistics
from clientswarm.reports.export import SamplesFile, read_samples
from clientswarm.run.local import write_results
from clientswarm.run.mock_target import mock_target
from clientswarm.service.creation import new_cluster_rows
from clientswarm.service.results import cluster_summary
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store
from service_process import ServiceProcess

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
TOKEN = "results-token"


def chat(i: int, ttft_ms: float, itl: list[float]) -> Sample:
    sent = T0 + i * 10 * MS
    return Sample(
        group="chat",
        client=i % 2,
        worker=0,
        name="chat",
        scheduled_ns=sent,
        sent_ns=sent,
        end_ns=sent + 500 * MS,
        first_token_ns=sent + round(ttft_ms * MS),
        output_tokens=len(itl) + 1,
        itl_s=itl,
    )


def config_data(url: str) -> dict[str, Any]:
    return {
        "name": "one-summary",
        "seed": 3,
        "target": {"url": url, "model": "mock-model", "timeout_s": 10},
        "spawner": {"kind": "local", "workers": 2},
        "slo": {"ttft_s": 0.5},
        "groups": [
            {
                "name": "chat",
                "clients": 4,
                "interaction": {"kind": "chat", "max_tokens": 16, "prompts": ["Hi"]},
                "stop": {"duration_s": 1.5},
            }
        ],
    }


@pytest.fixture
async def mock_url() -> AsyncIterator[str]:
    async with mock_target("--ttft-ms 20 --itl-ms 2 --seed 5") as url:
        yield url


@pytest.mark.slow
async def test_run_writes_the_summary_the_service_serves(mock_url: str, tmp_path: Path) -> None:
    """summary.json of a run, as ``run`` writes it, is GET …/results of ``serve`` on the same
    store; the samples file written during the run holds the stored samples."""
    data_dir, out = tmp_path / "data", tmp_path / "out"
    out.mkdir()
    store = Store.from_url_or_path(str(data_dir / "clientswarm.sqlite"))
    store.create_all()
    samples = SamplesFile(out / "samples.parquet", "parquet")
    settings = ServiceSettings(data_dir=data_dir, lost_after_s=5.0)
    async with running_service(store, settings) as service:
        manager = service.manager
        record = await manager.create(validate_config_data(config_data(mock_url)))
        manager.sinks[record.id] = samples  # as run does, before any batch can come
        async with manager.changed:
            await manager.changed.wait_for(lambda: record.id not in manager.active)
    written = write_results(store, record.id, out, samples)
    stored = sorted(store.iter_samples(record.id), key=lambda s: (s.worker, s.sent_ns))
    store.close()

    summary = json.loads((out / "summary.json").read_text())
    assert summary == written
    assert summary["cluster"]["status"] == "completed" and summary["cluster"]["ended_at"]
    assert summary["total"]["requests"] > 20 and len(summary["workers"]) == 2
    in_file = sorted(read_samples(out / "samples.parquet"), key=lambda s: (s.worker, s.sent_ns))
    assert in_file == stored
    with ServiceProcess(data_dir, token=TOKEN) as svc:
        status, served = svc.api("GET", f"/clusters/{record.id}/results")
    assert status == 200
    assert served == summary


def seeded_store(tmp_path: Path, batch: list[Sample]) -> tuple[Store, Any]:
    """A store with one cluster (the config of :func:`config_data`) and ``batch`` stored."""
    config = validate_config_data(config_data("http://127.0.0.1:9"))
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    record, clients = new_cluster_rows(config, cluster_id="c1", token="t", base_dir=tmp_path)
    store.create_cluster(record)
    store.create_workers("c1", 2)
    store.create_clients("c1", clients)
    assert store.add_batch("c1", 0, 1, batch)
    return store, record


def test_the_summary_comes_from_the_fed_statistics_while_they_hold_every_stored_sample(
    tmp_path: Path,
) -> None:
    stored = [chat(i, 100.0, [0.01, 0.02]) for i in range(4)]
    store, record = seeded_store(tmp_path, stored)
    fed = ClusterStatistics(group_order=["chat"])
    # Four other samples: which statistics the summary used shows in its numbers.
    fed.add(SampleColumns.from_samples([chat(i, 300.0, [0.05]) for i in range(4)]))
    summary = cluster_summary(store, record, [], fed=fed)
    assert summary.total.ttft_s["p50"] == pytest.approx(0.3)
    assert summary.total.itl_s["count"] == 4
    # A batch stored that the statistics were not fed: they are not the store's any more.
    assert store.add_batch("c1", 1, 1, [chat(9, 200.0, [])])
    summary = cluster_summary(store, record, [], fed=fed)
    assert summary.total.requests == 5
    assert summary.total.ttft_s["p50"] == pytest.approx(0.1)
    assert summary.total.itl_s["count"] == 8
    fed.close()
    store.close()


def test_a_samples_file_that_failed_is_written_again_from_the_store(tmp_path: Path) -> None:
    batch = [chat(i, 100.0, [0.01 * i]) for i in range(3)]
    store, _ = seeded_store(tmp_path, batch)
    store.update_cluster("c1", summary_json="{}")
    samples = SamplesFile(tmp_path / "samples.parquet", "parquet", batch_samples=1)
    bad = SampleColumns.from_samples(batch)
    bad.columns["status"] = [0, 1, 2]  # the encoder cannot take it: kept, never raised
    samples.add(bad)
    samples.close()
    assert samples.error is not None and samples.samples == 3
    samples.add(SampleColumns.from_samples(batch))  # after close: nothing happens
    write_results(store, "c1", tmp_path, samples)
    assert list(read_samples(tmp_path / "samples.parquet")) == batch
    store.close()


def test_a_samples_file_fed_batch_by_batch_is_the_file_of_those_samples(tmp_path: Path) -> None:
    batches = [
        [chat(10 * b + i, 50.0 + i, list(np.linspace(0.01, 0.02, i))) for i in range(7)]
        for b in range(5)
    ]
    for fmt in ("jsonl", "parquet"):
        samples = SamplesFile(tmp_path / f"s.{fmt}", fmt, batch_samples=10)
        for batch in batches:
            samples.add(SampleColumns.from_samples(batch))
        path = samples.close()
        assert samples.error is None and samples.samples == 35
        assert list(read_samples(path)) == [s for batch in batches for s in batch]
