"""Replicas of a target (``target.urls``): which one each request goes to.

A worker keeps one :class:`Balancer` per target with several URLs and picks a replica for
every request its clients send: ``round_robin`` (each in turn) or ``least_in_flight`` (the one
with the fewest of this worker's requests in flight; ties go in turn). The choice travels in a
context variable set in the task sending the request (:data:`REPLICA`): every URL an
interaction builds (:attr:`~clientswarm.interactions.base.ClientContext.base_url`) is on that
replica, steps of a user-defined interaction included, and its samples record the replica's
index (``sample.replica``) for the per-replica statistics.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Literal

Balance = Literal["round_robin", "least_in_flight"]

REPLICA: ContextVar[tuple[int, str] | None] = ContextVar("clientswarm_replica", default=None)
"""(index, base URL) of the replica the request being sent in this task goes to."""


class Balancer:
    """Spreads one worker's requests over a target's replicas."""

    __slots__ = ("_balance", "_in_flight", "_next", "urls")

    def __init__(self, urls: list[str], balance: Balance) -> None:
        if not urls:
            raise ValueError("a balancer needs at least one URL")
        self.urls = urls
        self._balance = balance
        self._next = 0
        self._in_flight = [0] * len(urls)

    def pick(self) -> int:
        """The replica of the next request (counted in flight until :meth:`done`)."""
        n = len(self.urls)
        if self._balance == "least_in_flight":
            fewest = min(self._in_flight)
            start = self._next
            index = (
                next(i for i in (start + k for k in range(n)) if self._in_flight[i % n] == fewest)
                % n
            )
        else:
            index = self._next % n
        self._next = (index + 1) % n
        self._in_flight[index] += 1
        return index

    def done(self, index: int) -> None:
        """The request sent to replica ``index`` has ended."""
        self._in_flight[index] -= 1

    @property
    def in_flight(self) -> list[int]:
        """Requests in flight per replica."""
        return list(self._in_flight)
