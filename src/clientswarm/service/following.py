"""Following the workers of one cluster: who ended, who fell silent, when it is over.

The manager's watchdog calls :meth:`Follower.check` for every active cluster twice a second
(``serve``'s watch interval). It asks the spawner which workers have ended, marks silent
workers ``lost``, tells the spawner to stop the workers once a stop was asked for, and says
when every worker is final (and the spawner has explained who stopped one) so that the
cluster can be finalised. Every change of a worker goes through
:meth:`~clientswarm.service.state.ClusterState.move_worker`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson

from clientswarm.errors import SpawnerError
from clientswarm.protocol.spawning import Spawner, SpawnerHandle, WorkerExit
from clientswarm.service.lifecycle import WorkerState
from clientswarm.service.settings import ServiceSettings
from clientswarm.service.state import ClusterState

log = logging.getLogger("clientswarm.service")


def _now() -> float:
    return time.time()


async def worker_ended(
    state: ClusterState,
    index: int,
    outcome: WorkerState,
    error: str | None,
    *,
    report: dict[str, Any] | None = None,
    unheard_since: float | None = None,
) -> bool:
    """Worker ``index`` ended with ``outcome`` and ``error`` (and its ``report``, when it
    sent one); see :meth:`~ClusterState.move_worker` for ``unheard_since``. False when the
    move was refused (it had ended already)."""
    fields: dict[str, Any] = {"error": error, "finished_at": _now()}
    if report is not None:
        fields["report_json"] = orjson.dumps(report).decode()
        fields["loop_lag_p99_s"] = report.get("loop_lag_p99_s")
    return await state.move_worker(
        index, outcome, fields=fields, why=error, unheard_since=unheard_since
    )


class Follower:
    """Checks the clusters of one service against their spawners and their heartbeats."""

    def __init__(
        self,
        settings: ServiceSettings,
        spawners: dict[str, Spawner[Any]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self.settings = settings
        self.spawners = spawners
        self._spawn = spawn  # runs a coroutine in the background, keeping a reference

    def spawner_of(self, state: ClusterState) -> Spawner[Any] | None:
        """The spawner of the cluster's kind, if this service has one."""
        return self.spawners.get(state.config.spawner.kind)

    async def check(self, state: ClusterState) -> bool:
        """Look at the cluster once; True when it is over: it must fail
        (:attr:`~ClusterState.failure`), or every worker is final and explained."""
        if state.failure is not None:
            return True
        spawner, handle = self.spawner_of(state), state.followed()
        if spawner is not None and handle is not None:
            for ended in await spawner.poll(state.id, handle):
                if ended.index not in state.exits_noted:
                    state.exits_noted.add(ended.index)
                    await self._exited(state, ended)
        await self._judge_silence(state)
        if state.stop_requested_at is not None and not state.spawner_stopped:
            if spawner is not None and handle is not None:
                # SIGTERM (scancel on Slurm) is a graceful stop for a worker: it records its
                # in-flight requests as cancelled and ships everything before it exits.
                state.spawner_stopped = True
                self._spawn(self._stop_workers(spawner, state, handle))
            if state.start_ns is None:  # stopped before it started: nobody will finish
                for index, worker in enumerate(state.workers):
                    if not worker.final:
                        await worker_ended(state, index, WorkerState.CANCELLED, None)
        return all(w.final for w in state.workers) and not self._awaiting_explanation(state)

    async def _exited(self, state: ClusterState, ended: WorkerExit) -> None:
        """The spawner says the process of a worker ended."""
        worker = state.workers[ended.index]
        if not worker.final:
            if ended.cancelled or (
                state.stop_requested_at is not None and worker.state is WorkerState.RUNNING
            ):
                # Stopped by the spawner, or it exited after the service asked it to stop
                # (its final report may still be on its way: its batches were acknowledged).
                outcome = WorkerState.CANCELLED
            elif worker.state in (WorkerState.PENDING, WorkerState.REGISTERED):
                outcome = WorkerState.FAILED
            else:
                outcome = WorkerState.LOST
            lines = ended.log_tail.strip().splitlines()[-3:]
            tail = f"; last output: {' | '.join(lines)}" if lines else ""
            if await worker_ended(state, ended.index, outcome, f"worker {ended.reason}{tail}"):
                return
        # It had ended already (or just did, its report racing this exit).
        outside = ended.cancelled or state.stop_requested_at is None
        if worker.state is WorkerState.CANCELLED and outside:
            # It finished cleanly on the scheduler's SIGTERM (scancel, a Job's deadline)
            # rather than the service's: say who stopped it.
            await state.journal.update_worker(state.id, ended.index, error=ended.reason)

    async def _judge_silence(self, state: ClusterState) -> None:
        """A running worker silent for ``lost_after_s`` is lost (time the service itself
        did not run excepted: :meth:`~ClusterState.excuse_stall`)."""
        now = time.monotonic()
        stall_s = state.excuse_stall(now, self.settings.watch_interval_s)
        if stall_s:  # paused (SIGSTOP, a VM freeze) or starved: the workers could not be heard
            log.warning(
                "cluster %s: the service did not run for %.1f s; workers' silence in that "
                "time is not held against them",
                state.id,
                stall_s,
            )
        lost_after_s = self.settings.lost_after_s
        for index, worker in enumerate(state.workers):
            silent = now - worker.last_seen > lost_after_s
            if worker.state is WorkerState.RUNNING and silent:
                await worker_ended(
                    state,
                    index,
                    WorkerState.LOST,
                    f"no heartbeat for {lost_after_s:g} s",
                    unheard_since=worker.last_seen,
                )
        state.watched_at = time.monotonic()

    def _awaiting_explanation(self, state: ClusterState) -> bool:
        """Whether a worker stopped by the scheduler, not the service, is still unexplained
        by the spawner (and the wait for it has not run out)."""
        if self.spawner_of(state) is None or state.stop_requested_at is not None:
            return False
        unexplained = [
            index
            for index, worker in enumerate(state.workers)
            if worker.state is WorkerState.CANCELLED and index not in state.exits_noted
        ]
        if not unexplained or state.followed() is None:
            return False
        now = time.monotonic()
        if state.explain_until is None:
            state.explain_until = now + self.settings.explain_wait_s
        return now < state.explain_until

    async def _stop_workers(
        self, spawner: Spawner[Any], state: ClusterState, handle: SpawnerHandle
    ) -> None:
        try:
            await spawner.stop(state.id, handle, grace_s=self.settings.stop_grace_s)
        except SpawnerError as exc:
            log.warning("cluster %s: %s", state.id, exc)
            await state.journal.event(state.id, "spawner", str(exc))

    async def release(self, state: ClusterState) -> None:
        """Let the spawner free what it keeps for the cluster's workers (unless it was told
        to stop them, which frees it too)."""
        spawner, handle = self.spawner_of(state), state.followed()
        if spawner is None or state.spawner_stopped or handle is None:
            return
        try:
            await spawner.release(state.id, handle)
        except SpawnerError as exc:
            log.warning("cluster %s: %s", state.id, exc)
            await state.journal.event(state.id, "spawner", str(exc))


__all__ = ["Follower", "worker_ended"]
