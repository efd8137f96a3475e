"""POST samples on a real service: the packed form workers send, JSON rows, and bad batches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE, ColumnarBatch
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store
from stand_in_spawner import StandInSpawner

T0 = 1_700_000_000_000_000_000


def streamed(i: int, itl: list[float]) -> Sample:
    sent = T0 + i * 1_000_000
    return Sample(
        group="chat",
        client=0,
        worker=0,
        name="chat",
        scheduled_ns=sent,
        sent_ns=sent,
        end_ns=sent + 500_000_000,
        first_token_ns=sent + 50_000_000,
        last_token_ns=sent + 400_000_000,
        output_tokens=len(itl) + 1,
        token_source="usage",
        itl_s=itl,
        http_status=200,
    )


async def test_packed_and_row_batches_are_stored_and_bad_ones_get_a_422(tmp_path: Path) -> None:
    config = validate_config_data(
        {
            "name": "ingest",
            "target": {"url": "http://127.0.0.1:9", "model": "m"},
            "preflight": False,  # the test plays the workers: nothing listens there
            "spawner": {"kind": "local", "workers": 1},
            "groups": [
                {
                    "name": "chat",
                    "clients": 1,
                    "interaction": {"kind": "chat", "stream": True, "prompts": ["hi"]},
                    "stop": {"duration_s": 60},
                }
            ],
        }
    )
    store = Store.from_url_or_path(str(tmp_path / "store.sqlite"))
    store.create_all()
    spawner = StandInSpawner()
    settings = ServiceSettings(data_dir=tmp_path, api_token="frontend-token")
    async with running_service(store, settings, spawners={"local": spawner}) as service:
        record = await service.manager.create(config, base_dir=tmp_path)
        for _ in range(500):  # the manager submits in the background
            if spawner.launches:
                break
            await asyncio.sleep(0.01)
        (launch,) = spawner.launches
        base = f"{service.url}/internal/v1/clusters/{record.id}/workers/0"
        auth = {"Authorization": f"Bearer {launch.token}"}
        async with aiohttp.ClientSession(headers=auth) as http:

            async def post(body: bytes, media_type: str) -> tuple[int, Any]:
                headers = {"Content-Type": media_type}
                async with http.post(f"{base}/samples", data=body, headers=headers) as r:
                    return r.status, await r.json()

            registered = {"host": "test", "pid": 1, "version": "0"}
            async with http.post(f"{base}/register", json=registered) as r:
                assert r.status == 200
            packed = ColumnarBatch()
            packed.add([streamed(0, [0.01] * 127), streamed(1, [])])
            assert await post(packed.encode(1), PACKED_MEDIA_TYPE) == (
                200,
                {"seq": 1, "duplicate": False},
            )
            assert (await post(packed.encode(1), PACKED_MEDIA_TYPE))[1]["duplicate"] is True
            rows = orjson.dumps({"seq": 2, "samples": [streamed(2, [0.02, 0.03])]})
            assert await post(rows, "application/json") == (200, {"seq": 2, "duplicate": False})

            line, _, itl = packed.encode(3).partition(b"\n")
            status, body = await post(line + b"\n" + itl[:-8], PACKED_MEDIA_TYPE)
            assert status == 422
            assert "invalid sample batch" in body["error"]["message"]
            assert "1008 bytes of ITLs follow the JSON line" in body["error"]["message"]
            status, body = await post(b'{"seq": 4}', "application/json")
            assert status == 422 and "needs 'samples'" in body["error"]["message"]
        live = service.manager.live.get(record.id)
        assert live is not None
        await service.manager.stop_cluster(record.id)
        async with service.manager.changed:
            await service.manager.changed.wait_for(lambda: record.id not in service.manager.active)
    stored = sorted(store.iter_samples(record.id), key=lambda s: s.sent_ns)
    assert [s.itl_s for s in stored] == [[0.01] * 127, [], [0.02, 0.03]]
    assert stored[0] == streamed(0, [0.01] * 127)
    # The ITL bytes the worker sent are the bytes stored, untouched.
    (first_batch, _) = store.iter_columns(record.id, chunk=2)
    assert b"".join(first_batch.itl_blobs()) == itl
    # Live and final statistics took the same samples, with the same definitions.
    final = orjson.loads(store.get_cluster(record.id).summary_json)["groups"]["chat"]
    tally = live.since_start()["chat"]
    assert (tally.requests, tally.succeeded) == (final["requests"], final["succeeded"]) == (3, 3)
    assert tally.hist["itl_s"].count == final["itl_s"]["count"] == 129
    assert tally.hist["ttft_s"].count == final["ttft_s"]["count"] == 3
    store.close()
