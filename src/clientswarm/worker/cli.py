"""``clientswarm worker``: one worker process, a client of the service (what spawners start)::

    CLIENTSWARM_WORKER_TOKEN=… clientswarm worker --service URL --cluster ID --index N

SIGTERM or SIGINT stops the worker gracefully: requests in flight are recorded as cancelled
and every sample is still delivered before it exits; a second signal aborts at once.
Exit codes: 0 completed or stopped, 1 failed, 2 invalid options or a missing token.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import NoReturn

import click

from clientswarm import aio
from clientswarm.errors import WorkerError
from clientswarm.protocol.assignment import WorkerReport
from clientswarm.protocol.internal import TOKEN_ENV
from clientswarm.worker.service_client import (
    ServiceWorkerOptions,
    WorkerEndpoint,
    run_service_worker,
)

log = logging.getLogger("clientswarm.worker")

EXIT_FAILED = 1
EXIT_INVALID = 2


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


async def serve(endpoint: WorkerEndpoint, options: ServiceWorkerOptions) -> WorkerReport:
    """Run a service worker with SIGTERM/SIGINT handlers: the first stops, a second aborts."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    aborted = False

    def on_signal(name: str) -> None:
        nonlocal aborted
        if not stop.is_set():
            log.info("%s: stopping gracefully (send it again to abort)", name)
            stop.set()
        elif main_task is not None and not aborted:
            log.warning("%s again: aborting; samples not yet acknowledged are lost", name)
            aborted = True
            main_task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        return await run_service_worker(endpoint, stop=stop, options=options)
    except asyncio.CancelledError:
        if not aborted:
            raise
        raise WorkerError("aborted by a second signal before everything was delivered") from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@click.command("worker", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--service", metavar="URL", help="Base URL of the clientswarm service.")
@click.option("--cluster", metavar="ID", help="Id of the cluster this worker belongs to.")
@click.option(
    "--index",
    type=click.IntRange(min=0),
    envvar=["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"],
    help="This worker's index in the cluster [default: $SLURM_ARRAY_TASK_ID, or "
    "$JOB_COMPLETION_INDEX of a Kubernetes Indexed Job].",
)
@click.option(
    "--register-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds to keep trying to reach the service before giving up.",
)
@click.option(
    "--outage-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Give up once the service has been unreachable this many seconds "
    "(default: never, so nothing measured is lost while the service restarts).",
)
@click.pass_context
def worker_command(
    ctx: click.Context,
    service: str | None,
    cluster: str | None,
    index: int | None,
    register_timeout: float,
    outage_limit: float | None,
) -> None:
    """Run one worker: its clients drive the target and its samples go to the service.

    The cluster token is read from the CLIENTSWARM_WORKER_TOKEN environment variable.
    """
    root = ctx.find_root().obj or {}
    debug = bool(root.get("debug"))
    if service is None or cluster is None or index is None:
        _fail("--service, --cluster and --index are required", EXIT_INVALID)
    if not service.startswith(("http://", "https://")):
        _fail(f"--service: {service!r} is not an http:// or https:// URL", EXIT_INVALID)
    try:
        endpoint = WorkerEndpoint.from_env(service, cluster, index)
    except WorkerError as exc:
        _fail(str(exc), EXIT_INVALID)
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s worker {index} %(levelname)s %(message)s"
    )
    options = ServiceWorkerOptions(register_timeout_s=register_timeout, outage_limit_s=outage_limit)
    try:
        report = aio.run(serve(endpoint, options))
    except WorkerError as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_FAILED)
    if report.outcome == "failed":
        _fail(f"worker {index} failed: {report.error or 'no reason given'}", EXIT_FAILED)


__all__ = ["TOKEN_ENV", "serve", "worker_command"]
