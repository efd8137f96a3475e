"""The high-rate path (``sample_path: files``) end to end: real worker processes write their
samples to durable Parquet files under the service's samples directory and post only each
tick's tallies; the service's summary is read from the files.

- every request the target saw is one sample in the files, and the summary counts them;
- the same samples through the other path (posted batches into a store, in another order and
  other chunks) give the very same statistics, to the last bit;
- the internal API keeps the two paths apart (409) and refuses a malformed tick (422);
- ``clientswarm run`` writes the run's samples file from the workers' files.
(The faults of workers and of the service on this path are in test_fault_matrix.py.)
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.ticks import TICK_MEDIA_TYPE, TickTallies, encode
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE
from clientswarm.reports.samplefiles import SampleFiles, SampleFileWriter, freeze, live_name
from clientswarm.service.results import cluster_summary
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import ClusterRecord, Store
from service_process import ServiceProcess, run_cli_async, samples_jsonl, simulator
from stand_in_spawner import StandInSpawner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "high-rate-token-77a1"


def config(target: str, sample_path: str = "files") -> dict[str, Any]:
    return {
        "name": "high-rate",
        "seed": 5,
        "target": {"url": target, "model": "mock-model", "timeout_s": 10},
        "preflight": False,
        "warmup_s": 0.5,
        "sample_path": sample_path,
        "slo": {"ttft_s": 0.02, "tpot_s": 0.01},
        "spawner": {"kind": "local", "workers": 2},
        "groups": [
            {
                "name": "chat",
                "clients": 4,
                "interaction": {"kind": "chat", "stream": True, "max_tokens": 8},
                "load": {"kind": "open", "rate": 40, "arrival": "poisson"},
                "stop": {"duration_s": 3},
            },
            {
                "name": "hello",
                "clients": 2,
                "interaction": {"kind": "hello"},
                "load": {"kind": "open", "rate": 20, "arrival": "constant"},
                "stop": {"duration_s": 3},
            },
        ],
    }


def seen_total(url: str) -> int:
    with urllib.request.urlopen(url + "/mock/stats", timeout=10) as answer:
        stats = json.loads(answer.read())
    return sum(
        n for route, n in stats["requests"].items() if not route.startswith(("/mock", "/metrics"))
    )


STATISTICS = ("total", "groups", "targets")


def test_a_run_on_files_has_every_request_once_and_the_store_path_agrees(
    tmp_path: Path,
) -> None:
    with (
        simulator(
            "--seed", "3", "--ttft-ms", "5", "--itl-ms", "1", "--error-rate-500", "0.1"
        ) as url,
        ServiceProcess(tmp_path / "svc", token=TOKEN) as svc,
    ):
        status, created = svc.api("POST", "/clusters", config(url))
        assert status == 201, created
        cluster_id = created["id"]
        view = svc.wait_status(cluster_id, timeout_s=90)
        seen = seen_total(url)
        _, summary = svc.api("GET", f"/clusters/{cluster_id}/results")
        status, raw, _ = svc.request("GET", f"/clusters/{cluster_id}/samples?format=jsonl")
        files = SampleFiles(svc.data_dir / "samples", cluster_id)  # frozen at the end
        assert not (svc.data_dir / "samples" / live_name(cluster_id)).exists()
        counted, workers = files.count_samples(), files.workers()
        names = sorted(p.name for p in (svc.data_dir / "samples" / cluster_id).rglob("*.parquet"))
        chunks = list(files.iter_columns(chunk_rows=97))
        deleted, _ = svc.api("DELETE", f"/clusters/{cluster_id}")
        assert deleted == 204 and not (svc.data_dir / "samples" / cluster_id).exists()
    assert view["status"] == "completed", view
    assert workers == [0, 1]
    # Rolled up at the end: one part per worker, no tick file left.
    assert names and all(n.startswith("part-") for n in names), names
    assert counted == seen > 100
    assert status == 200 and len(raw.splitlines()) == seen  # the download reads the files
    total = summary["total"]
    assert total["requests"] + summary["total"]["warmup_excluded"] == seen
    assert 0 < total["failed"] < total["requests"]  # the target's 500s, counted

    # The other path: the same samples posted as batches into a store, in another order and in
    # other chunks, summarised as a sample_path: service cluster is.
    random.Random(1).shuffle(chunks)
    store = Store.from_url_or_path(str(tmp_path / "other.sqlite"))
    store.create_all()
    record = ClusterRecord(
        id=cluster_id,
        name="high-rate",
        status="completed",
        config_json=validate_config_data(config(url, "service")).model_dump_json(),
        token_hash="h",
        spawner_kind="local",
        start_ns=view.get("start_ns"),
    )
    store.create_cluster(record)
    store.create_workers(cluster_id, 2)
    for seq, cols in enumerate(chunks, start=1):
        assert store.add_batch(cluster_id, 0, seq, cols)
    again = cluster_summary(store, store.get_cluster(cluster_id) or record, []).model_dump(
        mode="json"
    )
    store.close()
    for key in STATISTICS:
        assert again[key] == summary[key], key


async def test_the_internal_api_keeps_the_two_paths_apart(tmp_path: Path) -> None:
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    spawner = StandInSpawner()
    settings = ServiceSettings(data_dir=tmp_path / "data", api_token="t")
    async with (
        running_service(store, settings, spawners={"local": spawner}) as service,
        aiohttp.ClientSession() as http,
    ):
        ids = {}
        for path in ("files", "service"):
            record = await service.manager.create(
                validate_config_data(config("http://127.0.0.1:9", path)), base_dir=tmp_path
            )
            ids[path] = record.id
        for _ in range(500):
            if len(spawner.launches) == 2:
                break
            await asyncio.sleep(0.01)
        tokens = {launch.cluster_id: launch.token for launch in spawner.launches}

        async def post(path: str, action: str, body: bytes, media_type: str) -> tuple[int, Any]:
            cluster_id = ids[path]
            url = f"{service.url}/internal/v1/clusters/{cluster_id}/workers/0/{action}"
            headers = {"Authorization": f"Bearer {tokens[cluster_id]}", "Content-Type": media_type}
            async with http.post(url, data=body, headers=headers) as r:
                return r.status, await r.json()

        for path in ("files", "service"):
            url = f"{service.url}/internal/v1/clusters/{ids[path]}/workers/0/register"
            headers = {"Authorization": f"Bearer {tokens[ids[path]]}"}
            async with http.post(
                url, json={"host": "h", "pid": 1, "version": "0"}, headers=headers
            ) as r:
                assert r.status == 200

        tick = encode(1, TickTallies())
        status, body = await post("service", "ticks", tick, TICK_MEDIA_TYPE)
        assert status == 409 and "POST …/samples" in body["error"]["message"], body
        status, body = await post("files", "samples", b"{}", PACKED_MEDIA_TYPE)
        assert status == 409 and "POST …/ticks" in body["error"]["message"], body
        broken = orjson.loads(tick) | {"samples": -1}
        status, body = await post("files", "ticks", orjson.dumps(broken), TICK_MEDIA_TYPE)
        assert status == 422 and "invalid tick: samples" in body["error"]["message"], body
        status, body = await post("files", "ticks", tick, TICK_MEDIA_TYPE)
        assert status == 200 and body == {"seq": 1, "duplicate": False}, body
        status, body = await post("files", "ticks", tick, TICK_MEDIA_TYPE)
        assert status == 200 and body["duplicate"] is True  # counted once
    store.close()


async def test_run_writes_the_samples_file_from_the_workers_files(tmp_path: Path) -> None:
    with simulator("--seed", "3", "--ttft-ms", "2", "--itl-ms", "1") as url:
        data = config(url)
        data["groups"] = data["groups"][1:]  # the hello group: 20/s for 0.5 + 3 s
        file = tmp_path / "c.json"
        file.write_text(json.dumps(data))
        code, out, err = await run_cli_async(file, tmp_path / "out")
        seen = seen_total(url)
    assert code == 0, out + err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["total"]["requests"] + summary["total"]["warmup_excluded"] == seen == 70
    assert len(samples_jsonl(tmp_path / "out")) == 70
    assert list((tmp_path / "out" / "samples").rglob("part-*.parquet"))  # and the files stay


def test_a_worker_still_writing_after_the_summary_adds_nothing_to_it(tmp_path: Path) -> None:
    # A worker the service gave up as lost may still be running when its cluster ends: the
    # files are frozen before the summary reads them, and its next tick fails (unacknowledged,
    # as a late batch is refused on the other path) instead of landing beside them.
    cols = _one_tick()
    writer = SampleFileWriter(tmp_path / "root", live_name("c1"), 0)
    writer.write_tick(1, cols)
    final = freeze(tmp_path / "root", "c1")
    assert final == tmp_path / "root" / "c1" and SampleFiles(tmp_path / "root", "c1").seqs(0) == {1}
    with pytest.raises(FileNotFoundError):
        writer.write_tick(2, cols)
    assert SampleFiles(tmp_path / "root", "c1").count_samples() == len(cols)
    assert not (tmp_path / "root" / live_name("c1")).exists()
    assert freeze(tmp_path / "root", "c1") == final  # once: a second freeze changes nothing


def _one_tick() -> Any:
    """The columns of a few samples (as a worker's tick holds them)."""
    from clientswarm.metrics.columns import SampleColumns
    from clientswarm.metrics.sample import Sample

    t0 = 1_700_000_000_000_000_000
    samples = [
        Sample(
            group="g",
            client=0,
            worker=0,
            name="hello",
            scheduled_ns=t0 + i,
            sent_ns=t0 + i,
            end_ns=t0 + i + 1_000_000,
            http_status=200,
        )
        for i in range(5)
    ]
    return SampleColumns.from_samples(samples)
