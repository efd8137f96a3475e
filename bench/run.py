"""Benchmarks of clientswarm against its own simulator on this machine (``make bench``).

Runs every benchmark of ``cases.py`` ``--repeat`` times (repeats interleaved, so that a noisy
minute spoils one value of each case rather than every value of one), prints the medians, and
writes ``results.json`` and ``RESULTS.md`` beside this file (``--quick``: ``results-quick.json``
and ``RESULTS-quick.md``, so a smoke run never overwrites the committed full results).

All traffic goes to a simulator on 127.0.0.1; every load is bounded by a duration and a count.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import BENCHMARKS, Benchmark, Settings
from harness import simulator
from report import Raw, log, machine_info, print_tables, render_markdown, summarise

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1 repeat (~1 minute)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats (default 3; quick 1)")
    parser.add_argument(
        "--only",
        choices=[b.id for b in BENCHMARKS],
        action="append",
        help="run only this benchmark (may be given more than once)",
    )
    parser.add_argument("--out", type=Path, default=HERE, help="directory of the result files")
    args = parser.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


async def run_benchmark(
    bench: Benchmark, settings: Settings, raw: Raw, repeat: str, tmp: Path
) -> None:
    """Every case of ``bench`` once, against one fresh simulator; values appended to ``raw``."""
    async with simulator(bench.simulator_args) as sim:
        if sim.pid is None:
            log("  (simulator pid not found: its CPU share is not reported)")
        for case in bench.cases:
            t0 = time.monotonic()
            metrics = await case.run(sim, settings, tmp)
            took = time.monotonic() - t0
            per_case = raw.setdefault(bench.id, {}).setdefault(case.name, {})
            for key, value in metrics.items():
                per_case.setdefault(key, []).append(value)
            rate = metrics.get("req_s")
            log(
                f"{repeat} {bench.id:<10} {case.name:<12} {took:5.1f} s  "
                f"{metrics['requests']} requests, {metrics['failed']} failed"
                + (f", {rate:,.0f} req/s" if isinstance(rate, float) else "")
                + f", worker CPU {metrics['worker_cpu'] or 0:.2f}"
                + f", others {metrics['others_cpu'] or 0:.2f}"
            )


async def main(args: argparse.Namespace) -> int:
    """Run, print, write; 1 if any case did not complete."""
    settings = Settings.quick() if args.quick else Settings.full()
    benches = [b for b in BENCHMARKS if not args.only or b.id in args.only]
    info = machine_info()
    raw: Raw = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clientswarm-bench-") as tmp:
        for r in range(args.repeat):
            for bench in benches:
                await run_benchmark(bench, settings, raw, f"[{r + 1}/{args.repeat}]", Path(tmp))
    info["wall_s"] = round(time.monotonic() - started, 1)
    agg = summarise(raw)
    print_tables(agg)

    suffix = "-quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"results{suffix}.json"
    md_path = args.out / f"RESULTS{suffix}.md"
    setting_values = {**dataclasses.asdict(settings), "repeats": args.repeat}
    document = {
        "machine": info,
        "settings": setting_values,
        "benchmarks": {
            b.id: {"title": b.title, "setup": b.setup, "simulator_args": b.simulator_args}
            | {"cases": agg.get(b.id, {})}
            for b in benches
        },
    }
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    md_path.write_text(render_markdown(info, setting_values, args.repeat, agg) + "\n")
    log(f"\nwrote {json_path} and {md_path} ({info['wall_s']} s)")
    completed = [v for cases in raw.values() for m in cases.values() for v in m["completed"]]
    return 0 if all(completed) else 1


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of clientswarm
        sys.exit(asyncio.run(main(parse_args())))
    sys.exit(uvloop.run(main(parse_args())))
