"""The preflight of a cluster in the service: where it runs, what the start waits for, its events.

A cluster whose configuration asks for a preflight
(:func:`~clientswarm.protocol.preflight.preflight_plan`) gets a :class:`PreflightGate` when
it is created. Its shared start time is not fixed before the gate has passed: ``GET
assignment`` answers 202 until then (see
:meth:`~clientswarm.service.manager.ClusterManager.assignment`).

- Workers on the service's machine (the ``local`` spawner, so ``clientswarm run`` too): the
  service checks the targets itself, with the environment the workers get, while they start.
- Workers elsewhere (Slurm, Kubernetes; or ``local`` with the internal switch
  :attr:`~clientswarm.service.settings.ServiceSettings.preflight_on_workers`): worker 0 gets the
  plan in its registration's reply and posts its report; the cluster fails when worker 0 ends,
  or the start timeout passes, before it did.

Every finding is an event of the cluster (``preflight_passed``, ``preflight_warning``,
``preflight_error``). A failed preflight fails the cluster before any client starts: its
workers are cancelled and stopped, and its status is ``failed`` with the reason, one line
that starts ``preflight failed:``. A cluster recovered after a restart of the service is not
checked again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.errors import SpawnerError
from clientswarm.preflight import run_preflight
from clientswarm.protocol.preflight import (
    PreflightCheck,
    PreflightPlan,
    PreflightReport,
    preflight_plan,
)
from clientswarm.service.following import Follower, worker_ended
from clientswarm.service.lifecycle import WorkerState
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import ClusterState

log = logging.getLogger("clientswarm.service")

REPORTING_WORKER = 0
"""The worker that checks the targets when the workers run off the service's machine."""


def preflight_on_workers(config: ClusterConfig, settings: ServiceSettings) -> bool:
    """Whether worker 0, rather than the service, checks the targets of ``config``."""
    return config.spawner.kind != "local" or settings.preflight_on_workers


class PreflightGate:
    """What the start of one cluster waits for: its preflight, and whether it passed."""

    def __init__(self, plan: PreflightPlan, *, on_worker: bool) -> None:
        self.plan = plan
        self.on_worker = on_worker
        """Whether worker 0 runs it (else the service)."""
        self.done = asyncio.Event()
        self.failure: str | None = None

    @property
    def passed(self) -> bool:
        """True once it ran and no check failed."""
        return self.done.is_set() and self.failure is None

    def finish(self, failure: str | None) -> None:
        """It ran (``failure``: why it failed, else ``None``); wake whoever waits."""
        if not self.done.is_set():
            self.failure = failure
            self.done.set()


def preflight_events(report: PreflightReport) -> list[tuple[str, str, dict[str, Any]]]:
    """The events of ``report``'s findings: kind, message, data."""
    return [
        (
            f"preflight_{check.level}",
            check.message,
            {"target": check.target, "check": check.check, "where": report.where},
        )
        for check in report.checks
    ]


class Preflights:
    """The preflight gates of the clusters a service follows."""

    def __init__(
        self,
        settings: ServiceSettings,
        follower: Follower,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.settings = settings
        self.follower = follower
        self._spawn = spawn  # runs a coroutine in the background, keeping a reference
        self.gates: dict[str, PreflightGate] = {}

    def begin(self, state: ClusterState) -> None:
        """Start the preflight of a new cluster (in the background, when the service runs
        it); nothing when its configuration asks for none."""
        plan = preflight_plan(state.config)
        if plan is None or not plan.targets:
            return
        gate = PreflightGate(plan, on_worker=preflight_on_workers(state.config, self.settings))
        self.gates[state.id] = gate
        if not gate.on_worker:
            env = self.settings.policy.worker_environment(state.config)
            where = f"the service on {socket.gethostname()}"
            self._spawn(self._run_here(state, gate, run_preflight(gate.plan, env, where=where)))

    async def _run_here(
        self,
        state: ClusterState,
        gate: PreflightGate,
        checking: Coroutine[Any, Any, PreflightReport],
    ) -> None:
        try:
            report = await checking
        except Exception as exc:  # a bug must not leave the cluster waiting for ever
            log.exception("cluster %s: the preflight failed to run", state.id)
            report = _failed_report(f"the preflight could not run: {type(exc).__name__}: {exc}")
        await self.done(state, gate, report)

    def plan_for(self, state: ClusterState, index: int) -> PreflightPlan | None:
        """The plan worker ``index`` is to check and report, if it is to."""
        gate = self.gates.get(state.id)
        if gate is None or not gate.on_worker or gate.done.is_set():
            return None
        return gate.plan if index == REPORTING_WORKER else None

    async def reported(self, state: ClusterState, index: int, report: PreflightReport) -> None:
        """Worker ``index`` posted the preflight's report (ignored unless it was asked for:
        a report sent again after a lost reply changes nothing)."""
        gate = self.gates.get(state.id)
        if gate is None or not gate.on_worker or index != REPORTING_WORKER:
            return
        await self.done(state, gate, report)

    async def passed(self, state: ClusterState) -> bool:
        """Whether the cluster may start: it has no preflight, or its preflight passed.
        Waits for it up to ``assignment_hold_s``; fails it when worker 0 can no longer report."""
        gate = self.gates.get(state.id)
        if gate is None or gate.passed:
            return True
        if not gate.done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.done.wait(), self.settings.assignment_hold_s)
        if not gate.done.is_set() and gate.on_worker:
            missing = self._missing_report(state)
            if missing is not None:
                await self.done(state, gate, _failed_report(missing))
        return gate.passed

    def _missing_report(self, state: ClusterState) -> str | None:
        """Why worker 0's report will not come, if it will not."""
        worker = state.workers[REPORTING_WORKER]
        if worker.final:
            return f"worker {REPORTING_WORKER} ended ({worker.state}) before it reported the check"
        timeout_s = self.settings.start_timeout_s
        if time.monotonic() - state.created_mono > timeout_s:
            return f"worker {REPORTING_WORKER} did not report the check within {timeout_s:g} s"
        return None

    async def done(self, state: ClusterState, gate: PreflightGate, report: PreflightReport) -> None:
        """The preflight ran: its events, then the cluster fails (when a check did) or may
        start."""
        if gate.done.is_set():
            return
        failure = report.failure()
        try:
            for kind, message, data in preflight_events(report):
                await state.journal.event(state.id, kind, message, data)
            if failure is not None and not self._ending(state):
                await self._fail(state, failure)
        finally:
            gate.finish(failure)

    @staticmethod
    def _ending(state: ClusterState) -> bool:
        """Whether the cluster ends anyway (stopped, failed for another reason, ended)."""
        return state.status.final or state.stop_requested_at is not None or bool(state.failure)

    async def _fail(self, state: ClusterState, reason: str) -> None:
        """End the cluster before its start: workers cancelled and stopped, status ``failed``
        with ``reason`` (the watchdog's next tick finalises it)."""
        state.failure = reason
        state.settled.set()  # wakes the held GET assignment calls: they answer 410
        for index, worker in enumerate(state.workers):
            worker.stop_all = True
            if not worker.final:  # no error of its own: the cluster's reason says it all
                await worker_ended(state, index, WorkerState.CANCELLED, None)
        self.stop_workers(state)

    def stop_workers(self, state: ClusterState) -> None:
        """Have the spawner stop the workers of a cluster that failed its preflight (again
        once the spawner answered, when it had not yet: see :meth:`ClusterManager._submitted`)."""
        if state.failure is None or state.spawner_stopped:
            return
        spawner, handle = self.follower.spawner_of(state), state.followed()
        if spawner is None or handle is None:
            return
        state.spawner_stopped = True

        async def stop() -> None:
            try:
                await spawner.stop(state.id, handle, grace_s=self.settings.stop_grace_s)
            except SpawnerError as exc:
                log.warning("cluster %s: %s", state.id, exc)

        self._spawn(stop())

    def forget(self, cluster_id: str) -> None:
        """The cluster has ended."""
        self.gates.pop(cluster_id, None)


def _failed_report(message: str) -> PreflightReport:
    check = PreflightCheck(target="", check="preflight", level="error", message=message)
    return PreflightReport(checks=[check], where="the service")


__all__ = [
    "REPORTING_WORKER",
    "PreflightGate",
    "Preflights",
    "preflight_events",
    "preflight_on_workers",
]
