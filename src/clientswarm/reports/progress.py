"""The live progress display of ``clientswarm run``, ``submit --wait`` and ``calibrate``.

A :class:`ProgressLine` says what a cluster does at one moment; :class:`ProgressDisplay` keeps
it on a console:

- on a terminal, in place (:func:`progress_text`), redrawn at most :data:`REFRESH_PER_S` times
  a second: status, elapsed / planned time, a bar of the planned time (indeterminate when only
  a request count bounds the run), percentage and ETA, workers up / planned; then the
  requests that ended (ok / failed), those in flight, the request and output-token rates and
  the TTFT p50 of the recent window; a third line for the warning, when the numbers are not
  trustworthy. During the warm-up the second line says so and counts nothing as measured.
  No line is wider than the console: what does not fit is left out, least useful first;
- elsewhere (a CI log), the same facts as one plain line (:func:`plain_lines`, a second one
  for the warning; at most :data:`PLAIN_WIDTH` characters each) every :data:`PLAIN_PERIOD_S`
  seconds, and at once when the phase changes (starting, warm-up, running, …).

rich loads when the display is first drawn, not with this module: ``clientswarm run`` imports
it on its start-up path, and the display is drawn only once the cluster is submitted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

REFRESH_PER_S = 4.0
"""Most redraws a second of the display on a terminal."""
PLAIN_PERIOD_S = 5.0
"""Seconds between two plain lines (a change of phase prints one at once)."""
PLAIN_WIDTH = 119
"""Most characters of a plain line."""
FINISHING = "finishing"
"""The status shown once the service no longer follows the cluster: its results are written."""

_SEP = "  "
_BEFORE_START = ("pending", "starting")
_BAR_MIN, _BAR_MAX = 10, 40


@dataclass(frozen=True)
class ProgressLine:
    """What the progress display shows at one moment."""

    status: str
    elapsed_s: float
    """Seconds since the shared start (0 before it)."""
    planned_s: float | None
    """Seconds the cluster runs by its schedule, warm-up included; None: a request count
    bounds it."""
    succeeded: int
    """Measured requests that succeeded (warm-up ones are not measured)."""
    failed: int
    in_flight: int
    workers_running: int
    workers_total: int
    workers_failed: int
    warning: str | None = None
    """Why the numbers are not trustworthy right now (the first reason), if they are not."""
    warmup_s: float = 0.0
    warmup_done: int = 0
    """Warm-up requests that ended."""
    request_rate: float | None = None
    """Requests ending per second over the recent window, warm-up ones included."""
    output_token_rate: float | None = None
    """Output tokens per second over the recent window."""
    ttft_p50_s: float | None = None
    """TTFT median over the recent window."""

    @property
    def phase(self) -> str:
        """The first word: the status, ``warm-up`` while the warm-up runs."""
        if self.status == "running" and self.elapsed_s < self.warmup_s:
            return "warm-up"
        return self.status

    @property
    def eta_s(self) -> float | None:
        """Seconds left by the schedule, once it runs and has a planned end."""
        if self.planned_s is None or self.status != "running":
            return None
        return max(0.0, self.planned_s - self.elapsed_s)


# -- numbers, short ---------------------------------------------------------------------------
def _count(n: int) -> str:
    if n < 100_000:
        return f"{n:,}"
    return f"{n / 1e3:.0f}k" if n < 1_000_000 else f"{n / 1e6:.2f}M"


def _rate(r: float) -> str:
    if r < 100:
        return f"{r:.1f}"
    if r < 10_000:
        return f"{r:,.0f}"
    return f"{r / 1e3:.1f}k" if r < 1_000_000 else f"{r / 1e6:.2f}M"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _span(elapsed_s: float, planned_s: float | None) -> str:
    """``12.5 / 60 s``, or ``1:02 / 10:00`` for longer runs; ``12.5 s`` without a plan."""
    longest = max(elapsed_s, planned_s or 0.0)
    if longest < 100:
        return f"{elapsed_s:.1f} / {planned_s:g} s" if planned_s else f"{elapsed_s:.1f} s"
    return f"{_clock(elapsed_s)} / {_clock(planned_s)}" if planned_s else _clock(elapsed_s)


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 100 else _clock(s)


def _latency(s: float) -> str:
    if s < 0.01:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


# -- the parts of a line, most needed first ---------------------------------------------------
Part = tuple[str, str, int]
"""One fact of a line: its text, its rich style and its rank (0: never left out; a higher rank
leaves first when the line is too wide)."""


def _head(line: ProgressLine, *, plain: bool) -> list[Part]:
    parts: list[Part] = [
        (line.status, "bold cyan", 0),
        (_span(line.elapsed_s, line.planned_s), "bold", 0),
    ]
    if line.planned_s and not plain:
        done = min(1.0, line.elapsed_s / line.planned_s) if line.planned_s > 0 else 1.0
        parts.append((f"{done:.0%}", "", 4))
    if line.eta_s is not None:
        parts.append((f"ETA {_seconds(line.eta_s)}", "", 2))
    workers = f"workers {line.workers_running}/{line.workers_total}"
    parts.append((workers, "", 1))
    if line.workers_failed:
        parts.append((f"{line.workers_failed} lost or failed", "bold red", 0))
    return parts


def _facts(line: ProgressLine) -> list[Part]:
    if line.status in _BEFORE_START:
        return [("waiting for the workers to start", "dim", 0)]
    if line.phase == "warm-up":
        parts: list[Part] = [
            (f"warm-up {line.elapsed_s:.1f} / {line.warmup_s:g} s", "yellow", 0),
            (f"{_count(line.warmup_done)} ended, not measured", "dim", 1),
        ]
    else:
        parts = [
            (f"ok {_count(line.succeeded)}", "green", 0),
            (f"failed {_count(line.failed)}", "red" if line.failed else "dim", 0),
        ]
    parts.append((f"in flight {_count(line.in_flight)}", "", 1))
    if line.request_rate is not None:
        parts.append((f"{_rate(line.request_rate)} req/s", "", 1))
    tokens = line.ttft_p50_s is not None or bool(line.output_token_rate)  # not for `hello`
    if line.output_token_rate is not None and tokens and line.phase != "warm-up":
        parts.append((f"{_rate(line.output_token_rate)} tok/s", "", 3))
    if line.ttft_p50_s is not None and line.phase != "warm-up":
        parts.append((f"TTFT p50 {_latency(line.ttft_p50_s)}", "", 2))
    return parts


def _fit(parts: list[Part], width: int) -> list[Part]:
    """``parts`` without the highest-ranked ones until they fit ``width`` cells."""
    kept = list(parts)
    while _width(kept) > width and any(rank for _, _, rank in kept):
        worst = max(range(len(kept)), key=lambda i: (kept[i][2], i))
        del kept[worst]
    return kept


def _width(parts: list[Part]) -> int:
    return sum(len(text) for text, _, _ in parts) + len(_SEP) * max(0, len(parts) - 1)


def _bar(line: ProgressLine, width: int) -> tuple[str, str]:
    """The bar's filled and empty cells: of the planned time, or a block that moves."""
    if line.planned_s:
        filled = round(width * min(1.0, line.elapsed_s / line.planned_s))
        return "━" * filled, "━" * (width - filled)
    block = max(2, width // 5)
    start = int(line.elapsed_s * 4) % (width - block + 1)
    return " " * start + "━" * block, " " * (width - block - start)


def progress_text(line: ProgressLine, width: int = 80) -> Text:
    """The display for a terminal of ``width`` columns: two lines (three with a warning),
    none wider than ``width``."""
    from rich.text import Text

    text = Text(no_wrap=True, overflow="ellipsis")
    if line.status == FINISHING:
        text.append(f"{FINISHING}: writing the results", style="cyan")
        return text
    head = _fit(_head(line, plain=False), width)
    room = width - _width(head) - len(_SEP)
    bar_width = min(_BAR_MAX, room)
    for i, (part, style, _) in enumerate(head):
        if i:
            text.append(_SEP)
        text.append(part, style=style)
        if i == 1 and bar_width >= _BAR_MIN:  # after the time
            filled, empty = _bar(line, bar_width)
            text.append(_SEP)
            text.append(filled, style="magenta")
            text.append(empty, style="grey23")
    text.append("\n")
    for i, (part, style, _) in enumerate(_fit(_facts(line), width)):
        text.append((_SEP if i else "") + part, style=style)
    if line.warning:
        warning = _cut(f"not trustworthy now: {line.warning}", width)
        text.append("\n" + warning, style="yellow")
    return text


def plain_lines(line: ProgressLine) -> list[str]:
    """The display for a log: one line, and one for the warning if there is one; each at
    most :data:`PLAIN_WIDTH` characters."""
    if line.status == FINISHING:
        return [f"{FINISHING}: writing the results"]
    parts = _fit(_head(line, plain=True) + _facts(line), PLAIN_WIDTH)
    lines = [_SEP.join(part for part, _, _ in parts)]
    if line.warning:
        lines.append(_cut(f"  not trustworthy now: {line.warning}", PLAIN_WIDTH))
    return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class ProgressDisplay:
    """Keeps the progress of a cluster on ``console``: in place on a terminal, plain lines
    otherwise (the module docstring says when). Use it as a context manager."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plain = not console.is_terminal
        self._live: Live | None = None
        self._drawn_at = -float("inf")
        self._phase: str | None = None

    def update(self, line: ProgressLine) -> None:
        """Show ``line`` if it is time to: redraws and plain lines are throttled here."""
        now = time.monotonic()
        if self.plain:
            if line.phase != self._phase or now - self._drawn_at >= PLAIN_PERIOD_S:
                for plain in plain_lines(line):
                    self.console.print(plain, soft_wrap=True, markup=False, highlight=False)
                self._drawn_at, self._phase = now, line.phase
            return
        if now - self._drawn_at < 1 / REFRESH_PER_S:
            return
        self._drawn_at = now
        text = progress_text(line, self.console.width)
        if self._live is None:
            from rich.live import Live

            self._live = Live(text, console=self.console, transient=True, auto_refresh=False)
            self._live.start(refresh=True)
        else:
            self._live.update(text, refresh=True)

    def close(self) -> None:
        """Take the display off the terminal (plain lines stay)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def show_progress(
    read: Callable[[], ProgressLine], console: Console, interval_s: float = 1 / REFRESH_PER_S
) -> None:
    """Read the progress every ``interval_s`` and show it (:class:`ProgressDisplay`) until
    cancelled."""
    with ProgressDisplay(console) as display:
        while True:
            display.update(read())
            await asyncio.sleep(interval_s)


__all__ = [
    "FINISHING",
    "PLAIN_PERIOD_S",
    "PLAIN_WIDTH",
    "REFRESH_PER_S",
    "ProgressDisplay",
    "ProgressLine",
    "plain_lines",
    "progress_text",
    "show_progress",
]
