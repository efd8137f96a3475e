"""The store's health from the outcome of its calls: per operation, without flapping."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from clientswarm.store.health import (
    STALE_S,
    StoreHealth,
    is_database_failure,
    kind_of,
    one_line,
)

FULL = "database or disk is full"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failure_lasts_until_that_operation_succeeds_again() -> None:
    clock = Clock()
    health = StoreHealth(clock)
    assert health.problem() is None
    health.failed("add_batch", FULL)
    clock.now += 2
    # A nearly full disk: a heartbeat's small update still fits, every batch fails.
    health.succeeded("update_worker")
    problem = health.problem()
    assert problem is not None and problem.since == 1000.0
    assert problem.line() == f"the disk is full: add_batch failed: {FULL}"
    health.succeeded("add_batch")
    assert health.problem() is None
    assert health.view() == {"ok": True, "problem": None, "since": None}


def test_a_failure_not_repeated_is_forgotten_once_something_else_works() -> None:
    clock = Clock()
    health = StoreHealth(clock)
    health.failed("create_cluster", FULL)  # a call that nobody makes again
    clock.now += STALE_S - 1
    health.succeeded("add_batch")
    assert health.problem() is not None  # too recent to forget
    clock.now += 2
    assert health.problem() is not None  # nothing has worked since it went stale
    health.succeeded("add_batch")
    assert health.problem() is None


def test_the_open_view_names_the_kind_of_failure_not_the_database_message() -> None:
    health = StoreHealth(Clock())
    health.failed("get_cluster", 'connection to server at "10.0.0.5", port 5432 failed')
    assert health.view(detail=False) == {
        "ok": False,
        "problem": "the database server is unreachable",
        "since": 1000.0,
    }
    assert "10.0.0.5" in health.view()["problem"]


def test_kinds_of_failure() -> None:
    assert kind_of("could not extend file: No space left on device") == "the disk is full"
    assert kind_of("attempt to write a readonly database") == "the database is read-only"
    assert kind_of("disk I/O error") == "disk I/O error"
    assert kind_of("database is locked") == "the database is locked"
    assert kind_of("server closed the connection unexpectedly") == (
        "the database server is unreachable"
    )
    assert kind_of("no such table: samples") == "the database failed"


def test_what_counts_as_the_database_failing() -> None:
    full = sa_exc.OperationalError("INSERT …", {}, sqlite3.OperationalError(FULL))
    assert is_database_failure(full, ())
    assert one_line(full) == FULL
    raw = sqlite3.OperationalError("disk I/O error\n  detail")  # the driver's own, unwrapped
    assert is_database_failure(raw, (sqlite3.OperationalError,))
    assert one_line(raw) == "disk I/O error detail"
    duplicate = sa_exc.IntegrityError("INSERT …", {}, sqlite3.IntegrityError("UNIQUE"))
    assert not is_database_failure(duplicate, (sqlite3.OperationalError,))
    assert not is_database_failure(ValueError("a bug"), (sqlite3.OperationalError,))
