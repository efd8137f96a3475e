"""The machinery of ``clientswarm run``: the in-process service, the progress line, the report.

One code path: a run starts the very service ``clientswarm serve`` runs, in this process, on an
ephemeral loopback port with a throw-away store, submits the cluster to it (the ``local``
spawner starts the workers, or takes the standby ones :mod:`clientswarm.run.cli` started
while this module loaded), follows it with a live progress line, and writes the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from clientswarm import aio
from clientswarm.config.models import ClusterConfig
from clientswarm.load import group_end_s
from clientswarm.protocol.spawning import Spawner
from clientswarm.reports.export import write_samples
from clientswarm.reports.summary import write_summary
from clientswarm.run.early import EarlyPlan, local_start_margin_s
from clientswarm.run.mock_target import mock_target
from clientswarm.run.progress import ProgressLine, show_progress
from clientswarm.service.manager import ClusterManager
from clientswarm.service.results import live_warnings
from clientswarm.service.server import running_service
from clientswarm.service.settings import ServiceSettings
from clientswarm.spawners.local import LocalSpawner
from clientswarm.spawners.registry import default_spawners
from clientswarm.spawners.standby import StandbyWorkers
from clientswarm.store import ClusterRecord, Store

if TYPE_CHECKING:
    from rich.console import Console


def _console() -> Console:
    from clientswarm.reports.table import report_console  # rich: off the start-up path

    return report_console()


def planned_duration_s(config: ClusterConfig) -> float | None:
    """Seconds the cluster runs by its schedule; None when a request count alone bounds it."""
    ends = [group_end_s(group, config.warmup_s) for group in config.groups]
    return None if any(end is None for end in ends) else max(e for e in ends if e is not None)


PROGRESS_DELAY_S = 0.3
"""Seconds between submitting the cluster and drawing the progress line: local workers have
sent their first requests by then (about 0.15 s), unhindered by the line's drawing."""


def progress_of(manager: ClusterManager, cluster_id: str, planned_s: float | None) -> ProgressLine:
    """The progress line of a cluster the in-process service follows."""
    state = manager.active.get(cluster_id)
    if state is None:
        return ProgressLine("finishing", 0.0, planned_s, 0, 0, 0, 0, 0, 0)
    tallies = state.live.since_start().values()
    elapsed = 0.0 if state.start_ns is None else max(0.0, time.time() - state.start_ns / 1e9)
    states = [w.state for w in state.workers]
    lags = {g: t.hist["schedule_lag_s"] for g, t in state.live.window(time.time()).items()}
    warnings = live_warnings(
        [w.loop_lag_p99_s for w in state.workers],
        {g: h.quantiles([0.99])[0] for g, h in lags.items()},
    )
    return ProgressLine(
        status=state.status,
        elapsed_s=elapsed,
        planned_s=planned_s,
        succeeded=sum(t.succeeded for t in tallies),
        failed=sum(t.failed for t in tallies),
        in_flight=sum(w.in_flight for w in state.workers),
        workers_running=sum(s in ("registered", "running") for s in states),
        workers_total=len(states),
        workers_failed=sum(s in ("failed", "lost") for s in states),
        warning=warnings[0] if warnings else None,
    )


async def run_cluster(
    config: ClusterConfig,
    *,
    base_dir: Path,
    output_dir: Path,
    console: Console | None,
    store: Store,
    host: str = "127.0.0.1",
    port: int = 0,
    standby: StandbyWorkers | None = None,
    early: EarlyPlan | None = None,
) -> str:
    """Run ``config`` through an in-process service; return the cluster id once it finished.

    The service's frontend API gets a random token nobody is told: only the workers (with
    their cluster token) have business with it, even when it listens beyond loopback.
    ``console`` shows the progress line; ``None``: the report console, made once the cluster
    is submitted (rich loads after the workers have their orders, off the start-up path).
    The cluster is created before the service accepts its first request; with ``early``
    (:mod:`clientswarm.run.early`) on the socket the early workers were given, with their
    id, token and start time.
    """
    settings = ServiceSettings(
        data_dir=output_dir, lost_after_s=10.0, api_token=secrets.token_urlsafe(24)
    )
    if config.spawner.kind == "local":
        settings.start_margin_s = local_start_margin_s(config)
    advertise = getattr(config.spawner, "advertise_url", None)
    if advertise:
        settings.advertise_url = advertise
    spawners: dict[str, Spawner] = {**default_spawners(), "local": LocalSpawner(standby)}
    created: list[ClusterRecord] = []

    async def create(manager: ClusterManager) -> None:
        # Before the service accepts a request: early workers' calls wait on its socket.
        preset = None if early is None else await asyncio.to_thread(early.preset)
        created.append(await manager.create(config, base_dir=base_dir, preset=preset))

    async with running_service(
        store,
        settings,
        host=host,
        port=port,
        spawners=spawners,
        sock=None if early is None else early.sock,
        before_serving=create,
    ) as service:
        manager = service.manager
        (record,) = created
        loop = asyncio.get_running_loop()

        stopping: list[asyncio.Task[None]] = []

        def stop() -> None:
            stopping.append(
                asyncio.create_task(manager.stop_cluster(record.id, "stopped with Ctrl-C"))
            )

        loop.add_signal_handler(signal.SIGINT, stop)
        loop.add_signal_handler(signal.SIGTERM, stop)
        planned = planned_duration_s(config)

        async def display_progress() -> None:
            await asyncio.sleep(PROGRESS_DELAY_S)  # rich loads and draws once workers have sent
            await show_progress(
                lambda: progress_of(manager, record.id, planned), console or _console()
            )

        display = asyncio.create_task(display_progress())
        try:
            async with manager.changed:
                await manager.changed.wait_for(lambda: record.id not in manager.active)
        finally:
            display.cancel()
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
    return record.id


def write_results(store: Store, cluster_id: str, output_dir: Path, fmt: str) -> dict[str, Any]:
    """Write summary.json, the raw samples and the config that ran; return the summary."""
    record = store.get_cluster(cluster_id)
    assert record is not None and record.summary_json is not None
    summary: dict[str, Any] = orjson.loads(record.summary_json)
    if record.reason:
        summary["cluster"]["reason"] = record.reason
    samples_path = write_samples(output_dir / f"samples.{fmt}", store.iter_samples(cluster_id), fmt)
    summary["samples_file"] = samples_path.name
    write_summary(output_dir / "summary.json", summary)
    (output_dir / "config.json").write_bytes(
        orjson.dumps(orjson.loads(record.config_json), option=orjson.OPT_INDENT_2)
    )
    return summary


def run_locally(
    config: ClusterConfig,
    *,
    base_dir: Path,
    output_dir: Path,
    console: Console | None = None,
    fmt: str = "jsonl",
    mock_args: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    standby: StandbyWorkers | None = None,
    early: EarlyPlan | None = None,
) -> dict[str, Any]:
    """Run ``config`` with a throw-away store (against the simulator started with
    ``mock_args`` unless None), write the results to ``output_dir``; return the summary.
    ``standby`` workers, when given, are taken before fresh processes are started; ``console``
    and ``early`` as for :func:`run_cluster` (``early`` is not for a simulator run)."""
    if early is not None and mock_args is not None:
        raise ValueError("an early start needs the target's URL before the simulator is up")
    with tempfile.TemporaryDirectory(prefix="clientswarm-run-") as scratch:
        store = Store.from_url_or_path(str(Path(scratch) / "store.sqlite"))
        store.create_all()

        async def main() -> str:
            async with contextlib.AsyncExitStack() as stack:
                ran = config
                if mock_args is not None:
                    url = await stack.enter_async_context(mock_target(mock_args))
                    (console or _console()).print(f"simulator target at {url}", style="dim")
                    ran = config.with_targets({"url": url})  # every target: the simulator
                return await run_cluster(
                    ran,
                    base_dir=base_dir,
                    output_dir=output_dir,
                    console=console,
                    store=store,
                    host=host,
                    port=port,
                    standby=standby,
                    early=early,
                )

        try:
            return write_results(store, aio.run(main()), output_dir, fmt)
        finally:
            store.close()
