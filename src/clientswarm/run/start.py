"""How ``clientswarm run`` starts: its workers load their code while its service loads its own.

A run knows everything its workers are told as soon as its configuration is valid, well before
the service's code (FastAPI, SQLAlchemy, the statistics) has loaded. So :func:`start_run`,
before that code loads,

1. binds the service's socket: connections queue there until the service accepts them;
2. picks the cluster's id and token;
3. has the configuration's spawner start the workers with the ordinary launch: the service's
   URL, the cluster id, each one's index, and the token in their environment.

The workers load their code and register through their ordinary retrying client; their calls
wait on the socket. The service then comes up on it and, before it accepts the first one,
creates the cluster with that id and token and takes the spawner's handle
(:class:`~clientswarm.protocol.spawning.Submitted`). From there a run's cluster goes the way
every cluster goes: register → assignment → shared start time. ``--mock`` runs too: workers
never need the target's URL before their assignment.

This module stays light (no service code): it runs before that code is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.errors import ConfigError, SpawnerError
from clientswarm.protocol.spawning import ClusterLaunch, Spawner, Submitted
from clientswarm.service.samplestorage import samples_storage_problem
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.sockets import bind, url_of
from clientswarm.spawners.registry import spawner_class

LOCAL_MARGIN_S = 0.05
"""The start margin of a cluster whose workers run on this machine, before client set-up."""

LOCAL_MARGIN_PER_CLIENT_S = 20e-6
"""What a worker takes to set up one client, added to the margin for the busiest worker."""

EXIT_GRACE_S = 2.0
"""How long workers still running when ``run`` ends get to stop on SIGTERM before they are
killed (with the service gone, they could not deliver their samples anyway)."""


def local_start_margin_s(config: ClusterConfig) -> float:
    """The shared start time's margin when every worker runs here: the held assignment calls
    all return at once over loopback, so the margin only has to cover setting up the clients
    (0.2 s, the service's default, is for workers on other nodes)."""
    workers = config.spawner.workers
    clients = sum(group.clients for group in config.groups)
    return LOCAL_MARGIN_S + LOCAL_MARGIN_PER_CLIENT_S * -(-clients // workers)


def run_settings(config: ClusterConfig, output_dir: Path) -> ServiceSettings:
    """The settings of a run's in-process service: its data (and the workers' logs) in
    ``output_dir``, workers lost after 10 s of silence, and a frontend token nobody is told
    (only the workers, with their cluster token, have business with it)."""
    settings = ServiceSettings(
        data_dir=output_dir, lost_after_s=10.0, api_token=secrets.token_urlsafe(24)
    )
    if config.spawner.kind == "local":
        settings.start_margin_s = local_start_margin_s(config)
    advertise = getattr(config.spawner, "advertise_url", None)
    if advertise:
        settings.advertise_url = advertise
    return settings


@dataclass
class RunStart:
    """A run's service socket and settings, and the workers started for its cluster.

    Use it in a ``with`` block: leaving the block stops whatever of the workers still runs
    (nothing, after a cluster that finished: a finished Kubernetes Job, say, stays for
    ``kubectl``), so ``run`` never leaves a worker behind, however it ends.

    A Ctrl-C from :func:`start_run` on is noted, never raised, until the run's service follows
    the cluster and takes it (:meth:`interrupted`: it then stops the cluster as its own
    Ctrl-C handler would): entering the block raises KeyboardInterrupt for one that came
    before, so that the workers it started are always known to something that stops them. A
    KeyboardInterrupt raised wherever the main thread happens to be while the service loads
    can be swallowed (an exception in a finaliser or a callback is only printed), and a run
    once ran on with its Ctrl-C lost, likely so. A second Ctrl-C while one is noted aborts at
    once.
    """

    settings: ServiceSettings
    sock: socket.socket
    """The service's socket, bound and queueing the workers' connections."""
    spawner: Spawner[Any]
    """The spawner that started them; the service follows them through it."""
    submitted: Submitted
    _interrupts: _HeldInterrupts | None = field(default=None, repr=False)

    def __enter__(self) -> RunStart:
        if self._interrupts is not None and self._interrupts.came:
            self.close()
            raise KeyboardInterrupt  # before anything else: the workers are stopped
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def interrupted(self) -> bool:
        """Whether a Ctrl-C came since the start (asked by whoever has just installed its own
        handler, e.g. with ``loop.add_signal_handler``, to act on one that came before)."""
        return self._interrupts is not None and self._interrupts.came

    def close(self) -> None:
        """Stop the workers still running (politely, then by force after
        :data:`EXIT_GRACE_S`) and close the socket. The service stops them itself when the
        run is stopped; this is for a run that ended before its service was up, or with an
        error, or before the service's own stop got through. Ctrl-C is Python's again."""
        try:
            asyncio.run(self._stop_what_runs())
        finally:
            self.sock.close()
            if self._interrupts is not None:
                self._interrupts.release()

    async def _stop_what_runs(self) -> None:
        launch, handle = self.submitted.launch, self.submitted.handle
        with contextlib.suppress(SpawnerError):
            ended = await self.spawner.poll(launch.cluster_id, handle)
            if len({end.index for end in ended}) >= launch.workers:
                return
        with contextlib.suppress(SpawnerError):
            await self.spawner.stop(launch.cluster_id, handle, EXIT_GRACE_S)


class _HeldInterrupts:
    """Ctrl-C (SIGINT) noted (:attr:`came`), not raised, from :meth:`hold` until another
    handler replaces this one or :meth:`release`; a second one raises KeyboardInterrupt
    (abort at once). Only in the main thread: nowhere else can a signal handler be set."""

    def __init__(self) -> None:
        self._handler = self._note  # one bound method: ``signal.getsignal`` returns it
        self._previous: Any = signal.SIG_DFL
        self._held = False
        self.came = False

    def hold(self) -> _HeldInterrupts:
        """Note Ctrl-C from now on."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._held = True
        return self

    def _note(self, signum: int, frame: object) -> None:
        if self.came:  # the second: abort
            self.release()
            raise KeyboardInterrupt
        self.came = True

    def release(self) -> None:
        """Put back the handler from before :meth:`hold` if this one is still in place (not
        when the run's loop replaced it since: removing its own puts Python's back)."""
        if self._held:
            self._held = False
            if signal.getsignal(signal.SIGINT) is self._handler:
                # None: the handler was not set from Python (Python's own is what a run
                # expects).
                previous = self._previous
                signal.signal(
                    signal.SIGINT, signal.default_int_handler if previous is None else previous
                )


def start_run(
    config: ClusterConfig, *, output_dir: Path, host: str = "127.0.0.1", port: int = 0
) -> RunStart:
    """Bind the service's socket on ``host:port`` and start the workers of ``config`` (see
    the module docstring); use the result in a ``with`` block. SpawnerError when the spawner
    cannot start them; ConfigError when its workers could not write their samples where the
    run reads them (:mod:`~clientswarm.service.samplestorage`)."""
    settings = run_settings(config, output_dir)
    storage = samples_storage_problem(
        config, config.spawner, settings.samples_dir, preset_only=False
    )
    if storage is not None:
        raise ConfigError([storage])
    sock = bind(host, port)
    if not settings.advertise_url:
        settings.advertise_url = url_of(sock)
    cluster_id = uuid.uuid4().hex[:12]
    launch = ClusterLaunch(
        cluster_id=cluster_id,
        service_url=settings.advertise_url,
        token=secrets.token_urlsafe(32),
        log_dir=str(settings.log_dir(cluster_id)),
        python=settings.python,
        options=config.spawner,
        env=settings.policy.worker_environment(config),
        sample_dir=str(settings.samples_dir) if config.sample_path == "files" else None,
    )
    interrupts = _HeldInterrupts().hold()
    try:
        spawner = spawner_class(config.spawner.kind)()
        handle = asyncio.run(spawner.submit(launch))
    except BaseException:
        sock.close()
        interrupts.release()
        raise
    return RunStart(settings, sock, spawner, Submitted(launch, handle), interrupts)


__all__ = [
    "LOCAL_MARGIN_PER_CLIENT_S",
    "LOCAL_MARGIN_S",
    "RunStart",
    "local_start_margin_s",
    "run_settings",
    "start_run",
]
