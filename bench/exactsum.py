"""The cost of the exact sum behind the summaries' means (``clientswarm.metrics.exactsum``).

Prints, for batches of 1e3, 1e5 and 1e6 latency-like values (lognormal: a few dozen binades),
the nanoseconds per value of ``ExactSum().add(batch)`` then ``.mean()``, beside numpy's float
``sum`` of the same batch; and, for 1e6 values, the same with other chunk sizes
(``CHUNK_VALUES``). Each number is the least of ``--repeat`` timings (the least disturbed by
the rest of the machine). A few seconds; writes nothing.

    .venv/bin/python bench/exactsum.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

import numpy as np

from clientswarm.metrics import exactsum
from clientswarm.metrics.exactsum import ExactSum


def ns_per_value(work: Callable[[], object], values: int, repeat: int) -> float:
    """The least time of ``work`` over ``repeat`` timings, in ns per value."""
    number = max(3, 1_000_000 // values)
    return min(timeit.repeat(work, number=number, repeat=repeat)) / number / values * 1e9


def exact_mean_of(batch: np.ndarray) -> Callable[[], float]:
    def work() -> float:
        summed = ExactSum()
        summed.add(batch)
        return summed.mean()

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timings per number (least kept)")
    repeat = parser.parse_args().repeat
    rng = np.random.default_rng(2)
    print(f"{'values':>9} {'exact ns/value':>15} {'us/batch':>10} {'numpy sum ns/value':>19}")
    for n in (10**3, 10**5, 10**6):
        batch = rng.lognormal(-3, 1.5, n)
        exact = ns_per_value(exact_mean_of(batch), n, repeat)
        numpy_sum = ns_per_value(lambda b=batch: float(b.sum()), n, repeat)
        print(f"{n:>9} {exact:>15.2f} {exact * n / 1e3:>10.1f} {numpy_sum:>19.2f}")
    batch = rng.lognormal(-3, 1.5, 10**6)
    default = exactsum.CHUNK_VALUES
    print(f"\n{'chunk':>9} {'exact ns/value (1e6 values)':>28}")
    for bits in (12, 13, 14, 15, 16, 18):
        exactsum.CHUNK_VALUES = 1 << bits
        mark = " (default)" if 1 << bits == default else ""
        took = ns_per_value(exact_mean_of(batch), 10**6, repeat)
        print(f"{'2**' + str(bits):>9} {took:>28.2f}{mark}")
    exactsum.CHUNK_VALUES = default


if __name__ == "__main__":
    main()
