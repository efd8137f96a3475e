"""Run ``clientswarm ARGS`` in this process with a sampling profiler beside it (no py-spy here).

A daemon thread reads every thread's Python stack (``sys._current_frames()``) every
``--every-ms`` and counts the stacks by thread role: ``loop`` (the main thread: the service's
event loop) and ``pool`` (the threads of ``asyncio.to_thread``: store commits, statistics);
an idle pool thread is not counted. Beside it:

- every ``asyncio.to_thread`` call is timed by the function it runs: how long it waited for a
  free thread of the loop's default pool, and how long it ran;
- the loop's lag: every 50 ms the sampler thread schedules a callback on the event loop
  (``call_soon_threadsafe``) and notes how late it ran: how long any request waits for the
  loop (the GIL included).

At exit it writes ``--out`` (JSON). The sampler costs the service a little CPU and GIL time;
the fleet benchmark uses it only in a separate profiled run (``bench/fleet.py --profile``),
never for the measured numbers. ::

    python bench/fleet_profile.py --out prof.json -- serve --port 0 ...
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

TOP = 40
STACK_DEPTH = 14
LAG_EVERY_S = 0.05
KEEP = 200_000


def _where(frame: FrameType) -> str:
    code = frame.f_code
    path = code.co_filename
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{code.co_name} ({path}:{code.co_firstlineno})"


def _quantiles_ms(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def q(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50": q(0.5), "p99": q(0.99), "max": q(1.0)}


class LoopLag:
    """How late callbacks scheduled from another thread run on the service's event loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lags_s: list[float] = []

    def probe(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        sent = time.perf_counter()

        def ran() -> None:
            if len(self.lags_s) < KEEP:
                self.lags_s.append(time.perf_counter() - sent)

        with contextlib.suppress(RuntimeError):  # closed meanwhile
            loop.call_soon_threadsafe(ran)

    def report(self) -> dict[str, float | int]:
        return _quantiles_ms(list(self.lags_s))


class ThreadCalls:
    """Every ``asyncio.to_thread`` call, by function: its wait for a thread, and its run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waits: dict[str, list[float]] = collections.defaultdict(list)
        self.runs: dict[str, list[float]] = collections.defaultdict(list)

    def install(self) -> None:
        original = asyncio.to_thread

        async def to_thread(func: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted = time.perf_counter()
            name = getattr(func, "__qualname__", type(func).__name__)

            def timed() -> Any:
                started = time.perf_counter()
                try:
                    return func(*args, **kwargs)
                finally:
                    self._note(name, started - submitted, time.perf_counter() - started)

            return await original(timed)

        asyncio.to_thread = to_thread  # type: ignore[assignment]

    def _note(self, name: str, wait_s: float, run_s: float) -> None:
        with self._lock:
            if len(self.waits[name]) < KEEP:
                self.waits[name].append(wait_s)
                self.runs[name].append(run_s)

    def report(self) -> dict[str, Any]:
        with self._lock:
            names = sorted(self.runs, key=lambda n: -sum(self.runs[n]))
            return {
                name: {
                    "wait_ms": _quantiles_ms(self.waits[name]),
                    "run_ms": _quantiles_ms(self.runs[name]),
                    "run_s_total": round(sum(self.runs[name]), 2),
                }
                for name in names[:TOP]
            }


class Sampler:
    """Counts the stacks of every thread but its own, by role."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.main_id = threading.main_thread().ident
        self.samples: collections.Counter[str] = collections.Counter()
        self.self_counts: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.stacks: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-profiler", daemon=True)
        self.lag = LoopLag()
        self.calls = ThreadCalls()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    @staticmethod
    def _idle(chain: list[str]) -> bool:
        """A pool thread waiting for work (its top frame the pool's loop, blocked in C), or
        another thread waiting on a lock or event."""
        top = chain[0] if chain else ""
        return top.startswith("wait (") or (
            top.startswith("_worker (") and "concurrent/futures/thread.py" in top
        )

    def _run(self) -> None:
        me = threading.get_ident()
        next_probe = time.monotonic()
        while not self._stop.wait(self.every_s):
            if time.monotonic() >= next_probe:
                self.lag.probe()
                next_probe += LAG_EVERY_S
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                chain = []
                f: FrameType | None = frame
                while f is not None:
                    chain.append(_where(f))
                    f = f.f_back
                if ident == self.main_id:
                    role = "loop"
                elif any("concurrent/futures/thread.py" in where for where in chain):
                    role = "pool"
                else:
                    role = "other"
                if role != "loop" and self._idle(chain):
                    continue
                self.samples[role] += 1
                self.self_counts[role][chain[0]] += 1
                for where in set(chain):
                    self.inclusive[role][where] += 1
                self.stacks[role][" <- ".join(chain[:STACK_DEPTH])] += 1

    def report(self) -> dict[str, Any]:
        return {
            "every_ms": self.every_s * 1000,
            "loop_lag_ms": self.lag.report(),
            "to_thread": self.calls.report(),
            "samples": dict(self.samples),
            "roles": {
                role: {
                    "self": self.self_counts[role].most_common(TOP),
                    "inclusive": self.inclusive[role].most_common(TOP),
                    "stacks": self.stacks[role].most_common(15),
                }
                for role in self.samples
            },
        }


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every-ms", type=float, default=10.0)
    args = parser.parse_args(argv[:split])
    sampler = Sampler(args.every_ms / 1000)
    sampler.calls.install()
    from clientswarm import aio

    run = aio.run

    def run_watched(coro: Any) -> Any:
        async def watched() -> Any:
            sampler.lag.loop = asyncio.get_running_loop()
            return await coro

        return run(watched())

    aio.run = run_watched  # serve runs its loop through clientswarm.aio.run
    sampler.start()
    started = time.monotonic()
    from clientswarm.cli import main as clientswarm_main

    code: Any = 0
    try:
        clientswarm_main(argv[split + 1 :], prog_name="clientswarm")
    except SystemExit as exc:
        code = exc.code
    finally:
        sampler.stop()
        report = sampler.report() | {"wall_s": round(time.monotonic() - started, 1)}
        report["cpu_s"] = round(sum(os.times()[:2]), 2)
        args.out.write_text(json.dumps(report, indent=1))
    return code if isinstance(code, int) else 1


if __name__ == "__main__":
    sys.exit(main())
