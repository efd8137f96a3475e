"""The live progress line of ``clientswarm run``."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from clientswarm.run.orchestrator import RunProgress


def progress_text(progress: RunProgress, rate_per_s: float) -> Text:
    """One line: elapsed / planned, outcomes, in flight, current rate, live workers."""
    planned = f" / {progress.planned_s:.0f} s" if progress.planned_s is not None else ""
    running = sum(1 for w in progress.workers if w.state in ("ready", "running"))
    failed_workers = sum(1 for w in progress.workers if w.state == "failed")
    text = Text()
    text.append(f"{progress.elapsed_s:6.1f} s{planned}", style="bold")
    text.append(f"  ok {progress.succeeded}", style="green")
    text.append(f"  failed {progress.failed}", style="red" if progress.failed else "dim")
    text.append(f"  in flight {progress.in_flight}")
    text.append(f"  {rate_per_s:7.1f} req/s")
    text.append(f"  workers {running}/{len(progress.workers)}")
    if failed_workers:
        text.append(f"  ({failed_workers} failed)", style="bold red")
    return text


async def show_progress(progress: RunProgress, console: Console, interval_s: float = 0.25) -> None:
    """Refresh the progress line until cancelled; plain lines every 5 s when not a terminal."""
    done_before, at_before = 0, time.monotonic()
    rate = 0.0
    if not console.is_terminal:
        while True:
            await asyncio.sleep(5.0)
            done = progress.succeeded + progress.failed
            now = time.monotonic()
            rate = (done - done_before) / (now - at_before)
            done_before, at_before = done, now
            console.print(progress_text(progress, rate))
    with Live(progress_text(progress, rate), console=console, transient=True) as live:
        while True:
            await asyncio.sleep(interval_s)
            done = progress.succeeded + progress.failed
            now = time.monotonic()
            # Smooth over ~2 s so the rate reads steadily.
            instant = (done - done_before) / (now - at_before)
            rate = instant if rate == 0.0 else 0.85 * rate + 0.15 * instant
            done_before, at_before = done, now
            live.update(progress_text(progress, rate))
