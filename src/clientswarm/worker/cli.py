"""``clientswarm worker``: one worker process, a client of the service (what spawners start)::

    CLIENTSWARM_WORKER_TOKEN=… clientswarm worker --service URL --cluster ID --index N

SIGTERM or SIGINT stops the worker gracefully: requests in flight are recorded as cancelled
and every sample is still delivered before it exits; a second signal aborts at once.
Exit codes: 0 completed or stopped, 1 failed, 2 invalid options or a missing token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any, NoReturn

import click
import orjson

from clientswarm import aio
from clientswarm.errors import WorkerError
from clientswarm.imports import collections_paused
from clientswarm.protocol.assignment import Assignment, WorkerReport
from clientswarm.protocol.internal import TOKEN_ENV
from clientswarm.protocol.standby import EARLY_READY
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
@click.option(
    "--standby",
    is_flag=True,
    hidden=True,
    help="Load everything, then read the other options as one JSON line on stdin "
    "(how `clientswarm run` has its local workers ready before its service is).",
)
@click.pass_context
def worker_command(
    ctx: click.Context,
    service: str | None,
    cluster: str | None,
    index: int | None,
    register_timeout: float,
    outage_limit: float | None,
    standby: bool,
) -> None:
    """Run one worker: its clients drive the target and its samples go to the service.

    The cluster token is read from the CLIENTSWARM_WORKER_TOKEN environment variable.
    """
    root = ctx.find_root().obj or {}
    debug = bool(root.get("debug"))
    if standby:
        orders = wait_for_orders()
        if orders is None:
            return  # not needed after all
        obj = {"debug": debug, "early_assignment": orders.get("early_assignment")}
        with worker_command.make_context(ctx.info_name, list(orders["args"]), obj=obj) as handed:
            worker_command.invoke(handed)
        return
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
    options = ServiceWorkerOptions(
        register_timeout_s=register_timeout,
        outage_limit_s=outage_limit,
        early_assignment=root.get("early_assignment"),
    )
    try:
        report = aio.run(serve(endpoint, options))
    except WorkerError as exc:
        if debug:
            raise
        _fail(str(exc), EXIT_FAILED)
    if report.outcome == "failed":
        _fail(f"worker {index} failed: {report.error or 'no reason given'}", EXIT_FAILED)


def wait_for_orders() -> dict[str, Any] | None:
    """A standby worker's wait: load the code a run needs, then read the orders the local
    spawner writes on stdin (see :mod:`clientswarm.spawners.standby`), take its environment
    and send all output to its log from then on. ``None`` when stdin closes without orders.

    Orders with an ``early`` assignment (all but its start time) are answered ``ready`` on
    stdout; the next line on stdin is ``start <ns>``, which puts the assignment with that start
    time under ``early_assignment``, or ``wait`` (register and wait for the service's start)."""
    with collections_paused():
        import clientswarm.config.models
        import clientswarm.interactions.registry
        import clientswarm.interactions.user  # noqa: F401  (what a run loads first; now, not then)

    loaded_mono = time.monotonic()
    line = sys.stdin.buffer.readline()
    if not line.strip():
        return None
    orders: dict[str, Any] = orjson.loads(line)
    os.environ.update(orders["env"])
    early = orders.pop("early", None)
    if early is not None:
        assignment = Assignment.model_validate(early)  # now, not after the start
        os.write(sys.stdout.fileno(), EARLY_READY)
        answer = sys.stdin.buffer.readline().split()
        if len(answer) == 2 and answer[0] == b"start":
            orders["early_assignment"] = assignment.model_copy(update={"start_ns": int(answer[1])})
    log_fd = os.open(orders["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    waited_s = time.monotonic() - loaded_mono
    print(f"standby worker pid {os.getpid()} took these orders after {waited_s:.2f} s", flush=True)
    if early is not None and "early_assignment" not in orders:
        print("no early start: registering and waiting for the service's start time", flush=True)
    return orders


__all__ = ["TOKEN_ENV", "serve", "wait_for_orders", "worker_command"]
