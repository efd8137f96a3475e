"""Whether the store's database works, told by the outcome of the store's own calls.

A call that fails in the database itself (:func:`is_database_failure`: a full disk, a read-only
file, a lost or unreachable server) marks its operation (``add_batch``, ``update_worker``, …)
failing; the next success of that same operation clears it. Keying by operation matters when
a database fails only in part: on a nearly full disk a heartbeat's small update may still fit
while every sample batch fails, and the store must not look healthy between two batches.
An operation that failed and was not called again is forgotten once it failed more than
:data:`STALE_S` ago and some other call has succeeded since.

Nothing here touches the database: :class:`~clientswarm.store.database.Database` reports to
a :class:`StoreHealth` around every transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc

STALE_S = 15.0
"""A failure not repeated for this long is forgotten once any other call succeeds: three times
the longest pause of a worker between two tries of a batch (5 s, see
:mod:`clientswarm.worker.internal_api`), so a batch that keeps failing keeps the store failing."""

_MESSAGE_CHARS = 300

# Short, fixed words for the open /health route (which must not show the database's own
# message: it may name hosts and paths), by what the database's message says, first match.
_KINDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("disk is full", "no space left", "disk full", "quota"), "the disk is full"),
    (("readonly", "read-only"), "the database is read-only"),
    (("i/o error", "input/output"), "disk I/O error"),
    (("database is locked", "busy"), "the database is locked"),
    (("connect", "server closed", "timeout", "timed out"), "the database server is unreachable"),
)


def is_database_failure(error: BaseException, dbapi_errors: tuple[type[Exception], ...]) -> bool:
    """Whether ``error`` is the database failing (retry later), not a refusal of the call.

    ``dbapi_errors``: the driver's own classes that mean the same, for the calls that use the
    driver's cursor directly (PostgreSQL's ``COPY``), whose errors SQLAlchemy does not wrap.
    """
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    failing = (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,  # no pooled connection became free in time
        sa_exc.DisconnectionError,
    )
    return isinstance(error, failing + dbapi_errors)


def one_line(error: BaseException) -> str:
    """The database's own message of ``error`` on one line (SQLAlchemy's wrapping removed)."""
    cause = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig else error
    text = " ".join(str(cause).split()) or type(cause).__name__
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def kind_of(message: str) -> str:
    """A few words for what failed, by the database's message (see :data:`_KINDS`)."""
    lowered = message.lower()
    for needles, kind in _KINDS:
        if any(needle in lowered for needle in needles):
            return kind
    return "the database failed"


@dataclass(frozen=True, slots=True)
class StoreProblem:
    """The store is failing: since when (Unix epoch seconds) and why (the latest failure)."""

    since: float
    operation: str
    message: str

    @property
    def kind(self) -> str:
        """A few words that name no host or path (see :func:`kind_of`)."""
        return kind_of(self.message)

    def line(self) -> str:
        """One line: what failed and the database's message."""
        return f"{self.kind}: {self.operation} failed: {self.message}"


@dataclass(slots=True)
class _Failure:
    first_at: float
    last_at: float
    message: str


class StoreHealth:
    """The failing operations of one store; thread-safe. ``clock`` gives Unix epoch seconds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failing: dict[str, _Failure] = {}

    def failed(self, operation: str, message: str) -> None:
        """``operation`` failed in the database with ``message`` (one line)."""
        now = self._clock()
        with self._lock:
            failure = self._failing.get(operation)
            if failure is None:
                self._failing[operation] = _Failure(now, now, message)
            else:
                failure.last_at, failure.message = now, message

    def succeeded(self, operation: str) -> None:
        """``operation`` committed (or read): it works again; stale failures are forgotten."""
        if not self._failing:  # the usual case, without the lock
            return
        now = self._clock()
        with self._lock:
            self._failing.pop(operation, None)
            for name, failure in list(self._failing.items()):
                if now - failure.last_at > STALE_S:
                    del self._failing[name]

    def problem(self) -> StoreProblem | None:
        """The current problem, or None while the store works."""
        with self._lock:
            if not self._failing:
                return None
            operation, latest = max(self._failing.items(), key=lambda item: item[1].last_at)
            since = min(f.first_at for f in self._failing.values())
        return StoreProblem(since, operation, latest.message)

    def view(self, *, detail: bool = True) -> dict[str, Any]:
        """``{"ok", "problem", "since"}`` for the API; ``detail`` False leaves the database's
        own message out (it may name hosts and paths) and says only what kind of failure."""
        problem = self.problem()
        if problem is None:
            return {"ok": True, "problem": None, "since": None}
        text = problem.line() if detail else problem.kind
        return {"ok": False, "problem": text, "since": problem.since}


__all__ = [
    "STALE_S",
    "StoreHealth",
    "StoreProblem",
    "is_database_failure",
    "kind_of",
    "one_line",
]
