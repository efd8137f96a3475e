"""The live progress line of ``clientswarm run`` (and ``submit --wait``).

rich loads when the line is first drawn, not with this module: ``clientswarm run`` imports it
on its start-up path, and the line is drawn only once the cluster is submitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from clientswarm.service.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class ProgressLine:
    """What the progress line shows at one moment."""

    status: str
    elapsed_s: float
    planned_s: float | None
    succeeded: int
    failed: int
    in_flight: int
    workers_running: int
    workers_total: int
    workers_failed: int
    warning: str | None = None
    """Why the numbers are not trustworthy right now (the first reason), if they are not."""


def progress_line(snapshot: ClusterSnapshot | None, planned_s: float | None) -> ProgressLine:
    """The line of a cluster the in-process service follows (``None``: it no longer does,
    its results are being written)."""
    if snapshot is None:
        return ProgressLine("finishing", 0.0, planned_s, 0, 0, 0, 0, 0, 0)
    warnings = snapshot.warnings()
    return ProgressLine(
        status=snapshot.status.value,
        elapsed_s=snapshot.elapsed_s,
        planned_s=planned_s,
        succeeded=snapshot.succeeded,
        failed=snapshot.failed,
        in_flight=snapshot.in_flight,
        workers_running=sum(w.state.alive for w in snapshot.workers),
        workers_total=len(snapshot.workers),
        workers_failed=sum(w.state.broken for w in snapshot.workers),
        warning=warnings[0] if warnings else None,
    )


def progress_text(line: ProgressLine, rate_per_s: float) -> Text:
    """One line: elapsed / planned, outcomes, in flight, current rate, live workers."""
    from rich.text import Text

    planned = f" / {line.planned_s:.0f} s" if line.planned_s is not None else ""
    text = Text()
    text.append(f"{line.status:<9}", style="cyan")
    text.append(f"{line.elapsed_s:6.1f} s{planned}", style="bold")
    text.append(f"  ok {line.succeeded}", style="green")
    text.append(f"  failed {line.failed}", style="red" if line.failed else "dim")
    text.append(f"  in flight {line.in_flight}")
    text.append(f"  {rate_per_s:7.1f} req/s")
    text.append(f"  workers {line.workers_running}/{line.workers_total}")
    if line.workers_failed:
        text.append(f"  ({line.workers_failed} lost or failed)", style="bold red")
    if line.warning:
        text.append(f"\n  not trustworthy now: {line.warning}", style="yellow")
    return text


async def show_progress(
    read: Callable[[], ProgressLine], console: Console, interval_s: float = 0.25
) -> None:
    """Refresh the progress line until cancelled; plain lines every 5 s when not a terminal."""
    from rich.live import Live

    plain = not console.is_terminal
    period = 5.0 if plain else interval_s
    line = read()
    done_before, at_before = line.succeeded + line.failed, time.monotonic()
    rate = 0.0
    live = None if plain else Live(progress_text(line, rate), console=console, transient=True)
    if live is not None:
        live.start()
    try:
        while True:
            await asyncio.sleep(period)
            line = read()
            done, now = line.succeeded + line.failed, time.monotonic()
            instant = (done - done_before) / (now - at_before)
            # Smooth over ~2 s so the rate reads steadily on a terminal.
            rate = instant if plain or rate == 0.0 else 0.85 * rate + 0.15 * instant
            done_before, at_before = done, now
            if live is not None:
                live.update(progress_text(line, rate))
            else:
                console.print(progress_text(line, rate))
    finally:
        if live is not None:
            live.stop()
