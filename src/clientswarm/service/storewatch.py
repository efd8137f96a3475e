"""Telling the active clusters, and the log, when the store fails and when it works again.

The store notes the outcome of each of its calls (:class:`~clientswarm.store.StoreHealth`);
the watchdog hands this class the active clusters on every tick. The first tick that finds the
store failing logs one line and gives each active cluster a ``store_failing`` event; the first
that finds it working again logs one line and gives each a ``store_recovered`` event. A
failing store may refuse the ``store_failing`` events themselves (a full disk takes no row at
all): those are written as soon as it works again, before ``store_recovered``, with the time
the failure began in their data. ``GET /health`` and the cluster view read the store's health
directly, so they say it at once.

Every :data:`KEEP_CLAIM_EVERY_S` it also makes sure this service still owns the store
(:meth:`~clientswarm.store.Store.keep_claim`): a PostgreSQL restart ends the session that held
the owner lock, which is then taken again; when another service took it in between, this one
stops (SIGTERM to itself: the usual graceful end) rather than follow clusters it no longer
owns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterable

from clientswarm.store import Store, StoreInUse, StoreProblem, StoreUnavailable

log = logging.getLogger("clientswarm.service")

KEEP_CLAIM_EVERY_S = 5.0
"""How often the service checks that it still holds its store's owner lock."""


class StoreWatch:
    """Follows one store's health from tick to tick; see the module docstring."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._problem: StoreProblem | None = None
        self._told: set[str] = set()  # clusters that were, or are to be, told of the failure
        self._untold: set[str] = set()  # … whose store_failing event is not written yet
        self._claim_checked = time.monotonic()

    async def tick(self, cluster_ids: Iterable[str]) -> None:
        """Compare the store's health with the last tick's, and tell ``cluster_ids``."""
        if time.monotonic() - self._claim_checked >= KEEP_CLAIM_EVERY_S:
            self._claim_checked = time.monotonic()
            await self.keep_claim()
        problem = self._store.health.problem()
        if problem is not None:
            if self._problem is None:
                self._problem = problem
                log.error(
                    "the store is failing: %s; sample batches are refused (503) and the "
                    "workers keep them until it works again",
                    problem.line(),
                )
            fresh = set(cluster_ids) - self._told
            self._told |= fresh
            self._untold |= fresh
            await self._tell_failing(problem)
        elif self._problem is not None:
            await self._tell_failing(self._problem)
            if not self._untold and await self._tell_recovered(self._problem):
                log.warning(
                    "the store works again after %.0f s; the workers send the batches they kept",
                    time.time() - self._problem.since,
                )
                self._problem, self._told = None, set()

    async def keep_claim(self) -> None:
        """Take the owner lock again if it was lost; stop this service if another took it."""
        try:
            retaken = await asyncio.to_thread(self._store.keep_claim)
        except StoreUnavailable:
            return  # the database is away: its health says so; the next check tries again
        except StoreInUse as exc:
            log.critical("stopping: this service lost its store to another one: %s", exc)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if retaken:
            log.warning(
                "the store's owner lock was lost (its database session ended) and is held again"
            )

    async def _tell_failing(self, problem: StoreProblem) -> None:
        for cluster_id in sorted(self._untold):
            data = {"since": problem.since, "problem": problem.line()}
            message = (
                f"the store is failing: {problem.line()}; sample batches are refused and the "
                "workers keep them until it works again"
            )
            if not await self._add_event(cluster_id, "store_failing", message, data):
                return  # still refused: the next tick tries again
            self._untold.discard(cluster_id)

    async def _tell_recovered(self, problem: StoreProblem) -> bool:
        failed_s = time.time() - problem.since
        message = (
            f"the store works again after {failed_s:.0f} s; the workers send the batches "
            "they kept, and each is stored once"
        )
        for cluster_id in sorted(self._told):
            if not await self._add_event(
                cluster_id, "store_recovered", message, {"failed_s": round(failed_s, 3)}
            ):
                return False
            self._told.discard(cluster_id)
        return True

    async def _add_event(
        self, cluster_id: str, kind: str, message: str, data: dict[str, object]
    ) -> bool:
        """Whether the event is done with: written, or its cluster is gone."""
        try:
            await asyncio.to_thread(self._store.add_event, cluster_id, kind, message, data)
        except StoreUnavailable:
            return False
        except Exception as exc:  # e.g. the cluster was deleted since: nobody left to tell
            log.debug("no %s event for cluster %s: %s", kind, cluster_id, exc)
        return True


__all__ = ["StoreWatch"]
