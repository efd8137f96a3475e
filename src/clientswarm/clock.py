"""Time for measurements: a monotonic clock anchored once to the wall clock."""

from __future__ import annotations

import time


class Clock:
    """Epoch nanoseconds read from ``perf_counter_ns`` plus one wall-clock anchor.

    Intervals between two readings are monotonic-clock exact; the absolute value agrees with
    ``time.time_ns()`` at the moment the clock was made. Inject it; never patch globals.
    """

    __slots__ = ("_offset_ns",)

    def __init__(self) -> None:
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    def now_ns(self) -> int:
        """Now, as Unix epoch nanoseconds on the monotonic timeline."""
        return time.perf_counter_ns() + self._offset_ns
