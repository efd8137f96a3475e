"""The machinery of ``clientswarm run``: the in-process service, the progress line, the report.

One code path: a run starts the very service ``clientswarm serve`` runs, in this process, on an
ephemeral loopback port with a throw-away store, has it create the cluster whose workers
:mod:`clientswarm.run.start` started while this module loaded, follows it with a live progress
line, and writes the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from clientswarm import aio
from clientswarm.config.models import ClusterConfig
from clientswarm.metrics.columns import SampleSink
from clientswarm.reports.export import SamplesFile, write_samples
from clientswarm.reports.summary import write_summary
from clientswarm.run.mock_target import mock_target
from clientswarm.run.progress import cluster_progress, show_progress
from clientswarm.run.start import RunStart, start_run
from clientswarm.service.manager import ClusterManager
from clientswarm.service.runinfo import planned_duration_s
from clientswarm.service.samplesource import sample_columns, sample_count
from clientswarm.service.server import running_service
from clientswarm.service.timeseries import cluster_timeseries
from clientswarm.spawners.registry import default_spawners
from clientswarm.store import ClusterRecord, Store

if TYPE_CHECKING:
    from rich.console import Console


def _console() -> Console:
    from clientswarm.reports.table import report_console  # rich: off the start-up path

    return report_console()


PROGRESS_DELAY_S = 0.3
"""Seconds between submitting the cluster and drawing the progress line: local workers have
sent their first requests by then (about 0.15 s), unhindered by the line's drawing."""


async def run_cluster(
    config: ClusterConfig,
    *,
    base_dir: Path,
    console: Console | None,
    store: Store,
    start: RunStart,
    samples: SampleSink | None = None,
    linger: Callable[[str, str], Awaitable[None]] | None = None,
) -> str:
    """Run ``config`` through an in-process service; return the cluster id once it finished.
    ``samples`` takes every batch the service commits (the run's samples file).

    The service comes up on ``start``'s socket with its settings and, before it accepts the
    first request (the workers' registrations wait on the socket), creates the cluster with
    the id, token and workers that :func:`~clientswarm.run.start.start_run` started; then
    :func:`follow` shows it on ``console``.

    ``linger``: called with the cluster's id and the service's URL once it has finished,
    while the service still serves (``run --ui``: the web UI stays up until Ctrl-C).
    """
    spawners = {**default_spawners(), config.spawner.kind: start.spawner}
    created: list[ClusterRecord] = []
    refused: list[Exception] = []

    async def create(manager: ClusterManager) -> None:
        try:
            record = await manager.create(config, base_dir=base_dir, submitted=start.submitted)
        except Exception as exc:  # uvicorn would only say that its start-up failed
            refused.append(exc)
            raise
        created.append(record)
        if samples is not None:  # before the first request: it sees every batch
            manager.add_sink(record.id, samples)

    service_running = running_service(
        store, start.settings, spawners=spawners, sock=start.sock, before_serving=create
    )
    try:
        async with service_running as service:
            (record,) = created
            if linger is not None:
                (console or _console()).print(
                    f"web UI: {service.url}/ (token: {start.settings.api_token})", soft_wrap=True
                )
            await follow(
                service.manager,
                record.id,
                planned_duration_s(config),
                console,
                interrupted=start.interrupted,
            )
            if linger is not None:
                await linger(record.id, service.url)
    except RuntimeError:
        if refused:  # the cluster was refused: say why, not that the service did not start
            raise refused[0] from None
        raise
    return record.id


async def follow(
    manager: ClusterManager,
    cluster_id: str,
    planned_s: float | None,
    console: Console | None,
    *,
    interrupted: Callable[[], bool] | None = None,
) -> None:
    """Show the cluster's progress line until it has finished; Ctrl-C (or SIGTERM) stops it.
    ``None`` for ``console``: the report console, made once the workers have sent their first
    requests (rich loads off the start-up path). ``interrupted``: whether a Ctrl-C came
    before this took Ctrl-C over (:meth:`~clientswarm.run.start.RunStart.interrupted`): it
    stops the cluster at once."""
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def stop() -> None:
        stopping.append(
            asyncio.create_task(manager.stop_cluster(cluster_id, "stopped with Ctrl-C"))
        )

    loop.add_signal_handler(signal.SIGINT, stop)
    loop.add_signal_handler(signal.SIGTERM, stop)
    if interrupted is not None and interrupted():
        stop()

    async def display_progress() -> None:
        await asyncio.sleep(PROGRESS_DELAY_S)  # rich loads and draws once workers have sent
        record = await manager.cluster(cluster_id)
        warmup_s = float(orjson.loads(record.config_json).get("warmup_s") or 0.0)
        await show_progress(
            lambda: cluster_progress(manager, cluster_id, planned_s, warmup_s),
            console or _console(),
        )

    display = asyncio.create_task(display_progress())
    try:
        await manager.wait_finished(cluster_id)
    finally:
        display.cancel()
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)


async def until_interrupted() -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def write_results(
    store: Store,
    cluster_id: str,
    output_dir: Path,
    samples: SamplesFile,
    samples_root: Path | None = None,
) -> dict[str, Any]:
    """Write summary.json, timeseries.json (:mod:`clientswarm.metrics.timeseries`), finish the
    samples file, write the config that ran and report.html (:mod:`clientswarm.reports.html`);
    return the summary. summary.json is the
    document the service finalised, as ``GET …/results`` serves it. ``samples`` was written
    while the batches were committed; when it failed or holds other samples than the cluster
    has, it is written again from them (on the high-rate path, ``sample_path: files``, from
    the workers' files under ``samples_root``: :mod:`clientswarm.service.samplesource`)."""
    record = store.get_cluster(cluster_id)
    assert record is not None and record.summary_json is not None
    summary: dict[str, Any] = orjson.loads(record.summary_json)
    samples.close()
    root = samples_root or output_dir / "samples"
    if samples.error is not None or samples.samples != sample_count(store, cluster_id, root):
        write_samples(samples.path, sample_columns(store, cluster_id, root), samples.fmt)
    write_summary(output_dir / "summary.json", summary)
    timeseries = cluster_timeseries(store, record, root)
    (output_dir / "timeseries.json").write_bytes(orjson.dumps(timeseries))
    config = orjson.loads(record.config_json)
    (output_dir / "config.json").write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    from clientswarm.reports.html import write_report  # rich, via its tables: after the run

    write_report(output_dir / "report.html", summary, timeseries, config)
    return summary


def run_locally(
    config: ClusterConfig,
    *,
    base_dir: Path,
    output_dir: Path,
    console: Console | None = None,
    fmt: str = "parquet",
    mock_args: str | None = None,
    start: RunStart | None = None,
    ui: bool = False,
) -> dict[str, Any]:
    """Run ``config`` with a throw-away store (against the simulator started with
    ``mock_args`` unless None), write the results to ``output_dir``; return the summary.
    ``start``: the workers :func:`~clientswarm.run.start.start_run` started (the caller
    closes it); ``None``: they are started here, on a free loopback port. ``console`` as for
    :func:`follow`. ``ui``: print the web UI's address, and once the run has ended and its
    results are written, keep serving them there until Ctrl-C."""
    if start is None:  # nobody started the workers yet (``clientswarm calibrate``)
        with start_run(config, output_dir=output_dir) as started:
            return run_locally(
                config,
                base_dir=base_dir,
                output_dir=output_dir,
                console=console,
                fmt=fmt,
                mock_args=mock_args,
                start=started,
                ui=ui,
            )
    with tempfile.TemporaryDirectory(prefix="clientswarm-run-") as scratch:
        store = Store.from_url_or_path(str(Path(scratch) / "store.sqlite"))
        store.create_all()
        samples = SamplesFile(output_dir / f"samples.{fmt}", fmt)
        samples_root = start.settings.samples_dir
        written: list[dict[str, Any]] = []

        async def serve_results(cluster_id: str, url: str) -> None:
            """``run --ui``: write the results, then serve them until Ctrl-C."""
            written.append(
                await asyncio.to_thread(
                    write_results, store, cluster_id, output_dir, samples, samples_root
                )
            )
            (console or _console()).print(
                f"the run has ended; its results are in {output_dir} and at {url}/ until Ctrl-C",
                soft_wrap=True,
            )
            await until_interrupted()

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
                    console=console,
                    store=store,
                    start=start,
                    samples=samples,
                    linger=serve_results if ui else None,
                )

        try:
            cluster_id = aio.run(main())
            if written:
                return written[0]
            return write_results(store, cluster_id, output_dir, samples, samples_root)
        finally:
            samples.close()
            store.close()
