"""Store faults on a real service: an unusable ``--store``, a full disk mid-run, two services on
one store (SQLite and PostgreSQL), and a batch of the wrong type.

The full disk is a real one: a small tmpfs (root only, skipped elsewhere) filled to the last
page, so SQLite meets ENOSPC while it grows its write-ahead log, as on a real disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE, ColumnarBatch
from clientswarm.service.server import RunningService, open_store, running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.store import Store, StoreError, StoreInUse
from clientswarm.worker.internal_api import (
    InternalApiClient,
    RetryPolicy,
    ServiceWorkerOptions,
    WorkerEndpoint,
)
from service_process import CLI, ServiceProcess
from stand_in_spawner import StandInSpawner

T0 = 1_700_000_000_000_000_000
API_TOKEN = "frontend-token"
CONFIG = {
    "name": "faults",
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


# -- an unusable --store --------------------------------------------------------------------


def _bad_stores(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "not-a-database.sqlite").write_text("hello\n")
    read_only = tmp_path / "read-only.sqlite"
    sqlite3.connect(read_only).close()  # a valid, empty database, opened read-only below
    return {
        "a directory": str(tmp_path / "a-directory"),
        "not a database": str(tmp_path / "not-a-database.sqlite"),
        "read-only": f"sqlite:///file:{read_only}?mode=ro&uri=true",
        "unknown scheme": "nosuchdb://host/db",
        "unreachable PostgreSQL": "postgresql://someone:secret@127.0.0.1:1/db",
    }


def test_an_unusable_store_is_one_line_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    for what, value in _bad_stores(tmp_path).items():
        with pytest.raises(StoreError) as refused:
            open_store(value, tmp_path / "data").close()
        line = str(refused.value)
        assert line.startswith("cannot open the store "), (what, line)
        assert "\n" not in line and "--store takes" in line, (what, line)
        assert "secret" not in line  # a password in the URL is never shown
    assert not list(here.iterdir())  # nothing made of a file: URI's text, relative to here


def test_serve_on_an_unusable_store_says_one_line_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [CLI, "serve", "--port", "0", "--store", _bad_stores(tmp_path)["read-only"]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: cannot open the store sqlite:///file:")
    assert "attempt to write a readonly database" in done.stderr


# -- two services, one store ----------------------------------------------------------------


def _one_owner_then_a_successor(tmp_path: Path, store: str) -> None:
    """A real service owns ``store``; a second is refused, naming it; once the owner is
    SIGKILLed (no chance to unlock: the OS or PostgreSQL must), a successor gets the store."""
    first = ServiceProcess(tmp_path / "first", extra=("--store", store)).start()
    try:
        with pytest.raises(StoreInUse) as refused:
            open_store(store, tmp_path / "second").close()
        line = str(refused.value)
        assert "is in use by another clientswarm service" in line and "\n" not in line
        assert f"pid {first.process.pid} " in line  # type: ignore[union-attr]
        assert first.api("GET", "/clusters")[0] == 200  # the owner carries on
    finally:
        first.stop(signal.SIGKILL)
    open_store(store, tmp_path / "third").close()


def test_a_second_service_on_a_sqlite_store_is_refused_and_a_killed_owner_leaves_no_lock(
    tmp_path: Path,
) -> None:
    _one_owner_then_a_successor(tmp_path, str(tmp_path / "shared.sqlite"))


def test_a_second_service_on_a_postgresql_store_is_refused_and_a_killed_owner_leaves_no_lock(
    tmp_path: Path, postgres_url: str
) -> None:
    _one_owner_then_a_successor(tmp_path, postgres_url)


def test_an_owner_that_lost_its_postgresql_session_takes_the_lock_again_or_yields(
    postgres_url: str,
) -> None:
    """A PostgreSQL restart ends the session that held the owner lock: the owner notices and
    takes it again; if another service took it first, the owner is told (and stops)."""
    from sqlalchemy import create_engine, text

    def end_the_lock_session() -> None:
        admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.connect() as conn:
            ended = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            ).all()
            conn.commit()
        admin.dispose()
        assert ended, "no session held an advisory lock"

    with Store.from_url_or_path(postgres_url) as first:
        first.claim()
        assert first.keep_claim() is False  # held: nothing to do
        end_the_lock_session()
        assert first.keep_claim() is True  # taken again on a new session
        with pytest.raises(StoreInUse), Store.from_url_or_path(postgres_url) as second:
            second.claim()  # the first holds it again
        end_the_lock_session()
        with Store.from_url_or_path(postgres_url) as second:
            second.claim()  # the lock was free: a second service took it
            with pytest.raises(StoreInUse):
                first.keep_claim()


# -- a service in this process, with the test speaking for worker 0 --------------------------


@dataclass
class Worker0:
    """The service, the cluster, and HTTP calls as its worker 0 and as the frontend."""

    service: RunningService
    cluster_id: str
    token: str
    http: aiohttp.ClientSession

    def url(self, action: str) -> str:
        return f"{self.service.url}/internal/v1/clusters/{self.cluster_id}/workers/0/{action}"

    async def post_batch(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": PACKED_MEDIA_TYPE}
        async with self.http.post(self.url("samples"), data=body, headers=headers) as r:
            return r.status, await r.json(), dict(r.headers)

    async def post_rows(self, rows: list[dict[str, Any]], seq: int) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        body = orjson.dumps({"seq": seq, "samples": rows})
        async with self.http.post(self.url("samples"), data=body, headers=headers) as r:
            return r.status, await r.json()

    async def get(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with self.http.get(self.service.url + path, headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json()


@contextlib.asynccontextmanager
async def worker0(tmp_path: Path, store: Store) -> AsyncIterator[Worker0]:
    spawner = StandInSpawner()
    settings = ServiceSettings(data_dir=tmp_path / "data", api_token=API_TOKEN)
    config = validate_config_data(CONFIG)
    async with (
        running_service(store, settings, spawners={"local": spawner}) as service,
        aiohttp.ClientSession() as http,
    ):
        record = await service.manager.create(config, base_dir=tmp_path)
        for _ in range(500):  # the manager submits in the background
            if spawner.launches:
                break
            await asyncio.sleep(0.01)
        (launch,) = spawner.launches
        worker = Worker0(service, record.id, launch.token, http)
        registered = {"host": "test", "pid": 1, "version": "0"}
        headers = {"Authorization": f"Bearer {launch.token}"}
        async with http.post(worker.url("register"), json=registered, headers=headers) as r:
            assert r.status == 200
        yield worker


def streamed(i: int, itl_count: int) -> Sample:
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
        output_tokens=itl_count + 1,
        token_source="usage",
        itl_s=[0.01] * itl_count,
        http_status=200,
    )


def packed(seq: int, samples: list[Sample]) -> bytes:
    batch = ColumnarBatch()
    batch.add(samples)
    return batch.encode(seq)


async def eventually(check: Any, timeout_s: float = 10.0) -> Any:
    """``await check()`` until it returns something truthy (at most ``timeout_s``)."""
    for _ in range(int(timeout_s / 0.05)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"still not the case after {timeout_s} s")


# -- a full disk mid-run ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh 8 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that can fill up) needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to its last page; the file that holds the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
        with pytest.raises(OSError) as full:
            os.write(fd, b"\0" * 4096)
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_is_said_everywhere_and_the_resent_batch_is_stored_once(
    tmp_path: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.from_url_or_path(str(small_disk / "store.sqlite"))
    store.create_all()
    try:
        async with worker0(tmp_path, store) as w:
            status, ack, _ = await w.post_batch(packed(1, [streamed(i, 8) for i in range(10)]))
            assert (status, ack) == (200, {"seq": 1, "duplicate": False})
            filler = fill(small_disk)

            # A batch bigger than the log's pages so far: SQLite must grow its WAL, and cannot.
            big = packed(2, [streamed(10 + i, 127) for i in range(1000)])
            status, body, headers = await w.post_batch(big)
            assert status == 503, body
            assert "database or disk is full" in body["error"]["message"]
            assert "send it again" in body["error"]["message"] and "Retry-After" in headers

            # The worker's own client keeps trying (503 is transient for it), never gives up.
            endpoint = WorkerEndpoint(w.service.url, w.cluster_id, 0, w.token)
            options = ServiceWorkerOptions(retry=RetryPolicy(initial_s=0.05, max_s=0.2))
            client = InternalApiClient(w.http, endpoint, options)
            resend = asyncio.create_task(
                client.call("POST", "samples", big, media_type=PACKED_MEDIA_TYPE)
            )

            health = await w.get("/health")
            assert health["status"] == "degraded"
            assert health["store"]["ok"] is False
            assert health["store"]["problem"] == "the disk is full"  # no path, no host
            view = await w.get(f"/api/v1/clusters/{w.cluster_id}")
            assert view["status"] in ("pending", "starting", "running")  # as it was
            assert view["store"]["ok"] is False
            assert "database or disk is full" in view["store"]["problem"]
            assert "\n" not in view["store"]["problem"]
            await asyncio.sleep(1.5)  # three watchdog ticks and several resends, all failing
            assert not resend.done()
            failing_lines = [r for r in caplog.records if "the store is failing" in r.message]
            assert len(failing_lines) == 1
            assert not [r for r in caplog.records if r.exc_info]  # not one traceback

            filler.unlink()
            status, reply = await asyncio.wait_for(resend, timeout=10)
            assert status == 200 and orjson.loads(reply) == {"seq": 2, "duplicate": False}
            status, ack, _ = await w.post_batch(big)  # once more, as after a lost reply
            assert (status, ack) == (200, {"seq": 2, "duplicate": True})

            async def recovered() -> list[str] | None:
                events = await w.get(f"/api/v1/clusters/{w.cluster_id}/events")
                kinds = [e["kind"] for e in events if e["kind"].startswith("store_")]
                health = await w.get("/health")
                return kinds if health["status"] == "ok" and "store_recovered" in kinds else None

            assert await eventually(recovered) == ["store_failing", "store_recovered"]
            view = await w.get(f"/api/v1/clusters/{w.cluster_id}")
            assert view["store"] == {"ok": True, "problem": None, "since": None}
            assert [r.message for r in caplog.records if "works again" in r.message]
            await w.service.manager.stop_cluster(w.cluster_id)
        assert store.count_samples(w.cluster_id) == 1010  # every sample once
        assert store.list_workers(w.cluster_id)[0].samples == 1010
    finally:
        store.close()


# -- a batch of the wrong type ----------------------------------------------------------------


async def test_a_value_of_the_wrong_type_is_a_422_naming_its_column(tmp_path: Path) -> None:
    with Store.from_url_or_path(str(tmp_path / "store.sqlite")) as store:
        store.create_all()
        async with worker0(tmp_path, store) as w:
            row = streamed(0, 2).to_dict() | {"scheduled_ns": "soon"}
            status, body = await w.post_rows([streamed(1, 2).to_dict(), row], seq=1)
            assert status == 422, body
            message = body["error"]["message"]
            assert 'samples[1].scheduled_ns: expected an integer, got "soon"' in message
            line, _, itl = packed(2, [streamed(2, 2)]).partition(b"\n")
            head = orjson.loads(line)
            head["columns"]["scheduled_ns"] = ["soon"]
            status, body, _ = await w.post_batch(orjson.dumps(head) + b"\n" + itl)
            assert status == 422, body
            assert (
                'columns.scheduled_ns[0]: expected an integer, got "soon"'
                in (body["error"]["message"])
            )
            assert (await w.post_batch(packed(3, [streamed(3, 2)])))[0] == 200
            await w.service.manager.stop_cluster(w.cluster_id)
            finished = await eventually(lambda: _final(w))
        assert finished["status"] == "cancelled" and store.count_samples(w.cluster_id) == 1


async def _final(w: Worker0) -> dict[str, Any] | None:
    view: dict[str, Any] = await w.get(f"/api/v1/clusters/{w.cluster_id}")
    return view if view["status"] in ("completed", "failed", "cancelled") else None


async def test_results_that_cannot_be_computed_fail_the_cluster_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="clientswarm.service")
    with Store.from_url_or_path(str(tmp_path / "store.sqlite")) as store:
        store.create_all()
        async with worker0(tmp_path, store) as w:
            # As a store written before batches were checked: SQLite keeps the text as it is.
            poisoned = streamed(0, 2)
            poisoned.scheduled_ns = "soon"  # type: ignore[assignment]
            assert store.add_batch(w.cluster_id, 0, 1, [poisoned, streamed(1, 2)])
            await w.service.manager.stop_cluster(w.cluster_id)
            finished = await eventually(lambda: _final(w), timeout_s=5)
            await asyncio.sleep(1.0)  # two more watchdog ticks: nothing more may happen
            events = await w.get(f"/api/v1/clusters/{w.cluster_id}/events")
            results = await w.get(f"/api/v1/clusters/{w.cluster_id}/results")
    assert finished["status"] == "failed"
    assert finished["reason"].startswith("computing the results failed (ValueError")
    assert "'soon'" in finished["reason"]  # the cause, as the statistics met it
    assert "/samples" in finished["reason"]
    assert [e["kind"] for e in events].count("failed") == 1
    assert results["total"]["requests"] == 0 and finished["reason"] in results["warnings"]
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "computing its results failed" in tracebacks[0].message


async def test_a_poisoned_store_fails_its_cluster_on_recovery_and_the_service_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="clientswarm.service")
    with Store.from_url_or_path(str(tmp_path / "store.sqlite")) as store:
        store.create_all()
        async with worker0(tmp_path, store) as w:
            poisoned = streamed(0, 2)
            poisoned.scheduled_ns = "soon"  # type: ignore[assignment]
            assert store.add_batch(w.cluster_id, 0, 1, [poisoned, streamed(1, 2)])
            cluster_id = w.cluster_id
        store.update_cluster(cluster_id, status="running")  # as if its workers had started
        # The service stopped with the cluster running; a new one recovers it from the store.
        settings = ServiceSettings(data_dir=tmp_path / "data", api_token=API_TOKEN)
        async with running_service(store, settings) as service:
            record = store.get_cluster(cluster_id)
            assert record is not None
            assert cluster_id not in service.manager.active
        events = [e.message for e in store.list_events(cluster_id)]
    assert record.status == "failed" and record.reason is not None and "'soon'" in record.reason
    assert any(m.startswith("recovering it after the service restarted failed") for m in events)
    assert "recovering it after the restart failed" in caplog.text


async def test_a_value_out_of_its_postgresql_column_is_a_422(
    tmp_path: Path, postgres_url: str
) -> None:
    with Store.from_url_or_path(postgres_url) as store:
        store.create_all()
        async with worker0(tmp_path, store) as w:
            wide = streamed(0, 2)
            wide.client = 2**31  # a 64-bit integer, as the wire allows, but clients are int4
            status, body, _ = await w.post_batch(packed(1, [wide]))
            assert status == 422, body
            assert "out of range for type integer" in body["error"]["message"]
            assert (await w.post_batch(packed(1, [streamed(1, 2)])))[0] == 200  # nothing kept
            await w.service.manager.stop_cluster(w.cluster_id)
        assert store.count_samples(w.cluster_id) == 1
