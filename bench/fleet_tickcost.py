"""A high-rate-path worker's own cost per tick (``sample_path: files``), one process, no service.

What :class:`~clientswarm.worker.file_sink.FileTickSink` does to each tick, timed step by step
on the fleet benchmark's made-up samples (:class:`fleet_workers.SampleTemplates`): the columns
(as :meth:`SampleTemplates.batch` makes them), ``write_tick`` (Arrow IPC, fsync, rename, directory
fsync), ``roll_up(60)`` (every 60th tick merges the 60 files into a part), ``tick_tallies`` and
``encode`` (the body posted to ``POST ticks``, whose size is printed too). Prints only::

    .venv/bin/python bench/fleet_tickcost.py                       # 50, 500, 1000, 2000 a tick
    .venv/bin/python bench/fleet_tickcost.py --sizes 100 --ticks 240 --dir /shared/fs
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_workers import Done, SampleTemplates

from clientswarm.metrics.ticks import encode, tick_tallies
from clientswarm.reports.samplefiles import SampleFileWriter
from clientswarm.worker.file_sink import ROLL_UP_TICKS

STEPS = ("columns", "write_tick", "roll_up", "tallies", "encode")


def one_size(size: int, ticks: int, root: Path) -> dict[str, float]:
    """Median wall µs of each step over ``ticks`` ticks of ``size`` samples (roll-up: its
    mean, since 59 ticks of 60 only list the directory), the mean CPU µs of a whole tick
    (the fsyncs' waits are wall time, not CPU) and the posted bytes per tick."""
    templates = SampleTemplates(random.Random(1))
    writer = SampleFileWriter(root, f"cost-{size}", 0)
    spent: dict[str, list[float]] = {step: [] for step in STEPS}
    body_bytes, cpu = [], []
    for seq in range(ticks):
        done = [Done(seq * size + i, 1_800_000_000_000_000_000 + i * 1000, 0) for i in range(size)]
        c0, t0 = time.thread_time(), time.perf_counter()
        cols = templates.batch(done, 0, [0]).columns()
        t1 = time.perf_counter()
        writer.write_tick(seq, cols)
        t2 = time.perf_counter()
        writer.roll_up(ROLL_UP_TICKS)
        t3 = time.perf_counter()
        tallies = tick_tallies(cols, None)
        t4 = time.perf_counter()
        body = encode(seq, tallies)
        t5, c5 = time.perf_counter(), time.thread_time()
        for step, took_s in zip(STEPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            spent[step].append(took_s * 1e6)
        body_bytes.append(len(body))
        cpu.append((c5 - c0) * 1e6)
    writer.close()
    out = {step: statistics.median(v) for step, v in spent.items()}
    out["roll_up"] = statistics.fmean(spent["roll_up"])
    out["body_bytes"] = statistics.median(body_bytes)
    out["cpu"] = statistics.fmean(cpu)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500, 1000, 2000])
    parser.add_argument("--ticks", type=int, default=120, help="ticks per size (two roll-ups)")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temp dir)")
    args = parser.parse_args()
    head = [
        "samples/tick",
        *[f"{s} µs" for s in STEPS],
        "tick µs",
        "µs/sample",
        "CPU µs",
        "posted bytes",
    ]
    print("  ".join(f"{h:>14}" for h in head))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in args.sizes:
            r = one_size(size, args.ticks, Path(tmp))
            total = sum(r[s] for s in STEPS)
            row = [size, *[r[s] for s in STEPS], total, total / size, r["cpu"], r["body_bytes"]]
            print("  ".join(f"{v:>14,.0f}" if v >= 10 else f"{v:>14.1f}" for v in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
