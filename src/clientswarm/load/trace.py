"""Trace replay: the requests of a production trace as a group's open-loop schedule.

Two formats (``load.format``, else guessed from the file's extension or the text's first
character):

- ``mooncake``: one JSON object per line with ``timestamp`` (milliseconds, any origin),
  ``input_length``, ``output_length`` and ``hash_ids`` (one id per ``block_tokens`` block of
  the prompt, as in Mooncake's published traces; optional);
- ``azure``: the Azure LLM inference trace CSV with a header row naming ``TIMESTAMP`` (a date
  and time such as ``2023-11-16 18:15:46.6805900``, or seconds), ``ContextTokens`` and
  ``GeneratedTokens`` (names matched without regard to case).

The timeline: a request recorded ``t`` seconds after the trace's first one is due
``(t - start_s) / speedup`` seconds after the group starts, for ``start_s <= t < start_s +
window_s``. Requests are kept in the trace's order of time (a stable sort, so ties keep the
file's order) and numbered from 0 in the window; arrival ``i`` is sent by the group's client
``i % clients`` and so by the worker hosting it, exactly as an open load's arrivals
(:mod:`clientswarm.load.schedule`), so each worker replays its slice and the union is the
trace. Arrivals due before ``warmup_s`` are warm-up; ``stop.duration_s`` ends the replay
``warmup_s + duration_s`` after the start and ``stop.requests`` after that many measured
requests.

A request that generated no token in the trace asks for one (``max_tokens`` must be at least
1). A bad file gives one problem per bad line, at most :data:`MAX_PROBLEMS` and then how many
more there are.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import orjson

from clientswarm.config.load import TraceLoadConfig
from clientswarm.config.models import ClusterConfig
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError, FileProblems
from clientswarm.load.clients import first_client as group_first_client
from clientswarm.load.schedule import ArrivalSchedule

TraceFormat = Literal["mooncake", "azure"]

MAX_PROBLEMS = 5
MOONCAKE_TIMESTAMP_S = 1e-3
"""Mooncake traces give timestamps in milliseconds."""

_AZURE_COLUMNS = ("timestamp", "contexttokens", "generatedtokens")


@dataclass(frozen=True, eq=False)
class Trace:
    """A trace's requests in time order: when each was recorded (seconds since the first
    request of the trace, or of the window), its prompt and output lengths and, for a
    Mooncake trace, its prefix blocks' ids."""

    times_s: npt.NDArray[np.float64]
    input_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]
    hash_ids: tuple[tuple[int, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def span_s(self) -> float:
        """Seconds from the first request to the last (0 for fewer than two)."""
        return float(self.times_s[-1] - self.times_s[0]) if len(self) > 1 else 0.0

    def window(self, start_s: float, window_s: float | None) -> Trace:
        """The requests recorded in ``[start_s, start_s + window_s)`` with their times made
        relative to ``start_s``."""
        end_s = math.inf if window_s is None else start_s + window_s
        lo = int(np.searchsorted(self.times_s, start_s, side="left"))
        hi = int(np.searchsorted(self.times_s, end_s, side="left"))
        return Trace(
            self.times_s[lo:hi] - start_s,
            self.input_tokens[lo:hi],
            self.output_tokens[lo:hi],
            None if self.hash_ids is None else self.hash_ids[lo:hi],
        )


class _Problems(FileProblems):
    def __init__(self) -> None:
        super().__init__(MAX_PROBLEMS)

    def raise_any(self, source: str) -> None:
        if self.total:
            raise ConfigError(self.lines, source=source)


def _count(value: Any, name: str, *, minimum: int) -> int:
    """A token count from the trace: a whole number (``12`` or ``12.0``) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name}: expected a whole number, got {value!r}") from None
    if not number.is_integer() or number < minimum:
        raise ValueError(f"{name}: expected a whole number >= {minimum}, got {value!r}")
    return int(number)


def _sorted(
    times: list[float],
    inputs: list[int],
    outputs: list[int],
    hashes: list[tuple[int, ...]] | None,
) -> Trace:
    """The rows in time order (stable), times relative to the first, outputs at least 1."""
    times_s = np.asarray(times, dtype=np.float64)
    order = np.argsort(times_s, kind="stable")
    times_s = times_s[order]
    if len(times_s):
        times_s = times_s - times_s[0]
    ids = None if hashes is None else tuple(hashes[i] for i in order.tolist())
    return Trace(
        times_s,
        np.asarray(inputs, dtype=np.int64)[order],
        np.maximum(np.asarray(outputs, dtype=np.int64)[order], 1),
        ids,
    )


def parse_mooncake(data: bytes, source: str) -> Trace:
    """A Mooncake-style JSONL trace; ConfigError naming the bad lines."""
    problems = _Problems()
    times: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    hashes: list[tuple[int, ...]] = []
    any_hashes = False
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.add(f"line {number}: not JSON ({exc.args[0].split(':')[0]})")
            continue
        if not isinstance(entry, dict):
            problems.add(f"line {number}: expected a JSON object, got {type(entry).__name__}")
            continue
        try:
            missing = [k for k in ("timestamp", "input_length", "output_length") if k not in entry]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            stamp = entry["timestamp"]
            if isinstance(stamp, bool) or not isinstance(stamp, int | float):
                raise ValueError(f"timestamp: expected a number (milliseconds), got {stamp!r}")
            if not math.isfinite(stamp):
                raise ValueError(f"timestamp: expected a finite number, got {stamp!r}")
            ids = entry.get("hash_ids", [])
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                raise ValueError("hash_ids: expected a list of whole numbers")
            row = (
                float(stamp) * MOONCAKE_TIMESTAMP_S,
                _count(entry["input_length"], "input_length", minimum=1),
                _count(entry["output_length"], "output_length", minimum=0),
            )
        except ValueError as exc:
            problems.add(f"line {number}: {exc}")
            continue
        times.append(row[0])
        inputs.append(row[1])
        outputs.append(row[2])
        hashes.append(tuple(ids))
        any_hashes = any_hashes or bool(ids)
    problems.raise_any(source)
    return _sorted(times, inputs, outputs, hashes if any_hashes else None)


def _azure_time(value: str) -> float:
    """Seconds of a TIMESTAMP cell: a number of seconds, or an ISO date and time."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(
            f"TIMESTAMP: expected a date and time (2023-11-16 18:15:46.68) or seconds, "
            f"got {value!r}"
        ) from None


def parse_azure(data: bytes, source: str) -> Trace:
    """An Azure LLM inference trace CSV; ConfigError naming the bad lines."""
    text = data.decode("utf-8-sig", errors="replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise ConfigError(["the trace is empty"], source=source)
    names = [cell.strip().lower() for cell in header]
    missing = [c for c in _AZURE_COLUMNS if c not in names]
    if missing:
        wanted = ", ".join(("TIMESTAMP", "ContextTokens", "GeneratedTokens"))
        raise ConfigError(
            [f"line 1: the header must name {wanted}; got {', '.join(header) or 'nothing'}"],
            source=source,
        )
    t_col, in_col, out_col = (names.index(c) for c in _AZURE_COLUMNS)
    width = max(t_col, in_col, out_col) + 1
    problems = _Problems()
    times: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    for cells in reader:
        number = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) < width:
            problems.add(f"line {number}: expected {width} cells, got {len(cells)}")
            continue
        try:
            row = (
                _azure_time(cells[t_col]),
                _count(cells[in_col].strip(), "ContextTokens", minimum=1),
                _count(cells[out_col].strip(), "GeneratedTokens", minimum=0),
            )
        except ValueError as exc:
            problems.add(f"line {number}: {exc}")
            continue
        times.append(row[0])
        inputs.append(row[1])
        outputs.append(row[2])
    problems.raise_any(source)
    return _sorted(times, inputs, outputs, None)


def trace_format(load: TraceLoadConfig) -> TraceFormat:
    """The format ``load`` names, else ``azure`` for a ``.csv`` path or data that does not
    start with ``{``, else ``mooncake``."""
    if load.format is not None:
        return load.format
    if load.path is not None:
        return "azure" if Path(load.path).suffix.lower() in (".csv", ".tsv") else "mooncake"
    return "mooncake" if (load.data or "").lstrip().startswith("{") else "azure"


_CACHE: dict[tuple[Any, ...], Trace] = {}


def read_trace(load: TraceLoadConfig, files: FileScope = ANYWHERE) -> Trace:
    """The whole trace ``load`` names (not yet windowed). A file is parsed once per process
    while it is unchanged.

    ConfigError when it cannot be read, is malformed or has no request; its ``source`` is the
    field at fault (``path`` or ``data``) and each problem names the file and line.
    """
    fmt = trace_format(load)
    parse = parse_mooncake if fmt == "mooncake" else parse_azure
    if load.data is not None:
        key: tuple[Any, ...] = (fmt, "data", hash(load.data), len(load.data))
        if key not in _CACHE:
            _remember(key, _parsed(parse, load.data.encode(), field="data", label=""))
        return _CACHE[key]
    assert load.path is not None  # the config has one of them
    path = files.resolve(load.path, "path")
    label = f"{load.path}: "
    try:
        stat = path.stat()
        key = (fmt, "path", str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _CACHE:
            raw = path.read_bytes()
            _remember(key, _parsed(parse, raw, field="path", label=label))
    except OSError as exc:
        raise ConfigError(
            [f"{label}cannot read the trace: {exc.strerror or exc}"], source="path"
        ) from None
    return _CACHE[key]


def _parsed(parse: Any, raw: bytes, *, field: str, label: str) -> Trace:
    try:
        trace: Trace = parse(raw, field)
    except ConfigError as exc:
        raise ConfigError([label + line for line in exc.problems], source=field) from None
    if not len(trace):
        raise ConfigError([f"{label}the trace has no request"], source=field)
    return trace


def _remember(key: tuple[Any, ...], trace: Trace) -> None:
    _CACHE.clear()  # one trace at a time is what a worker replays
    _CACHE[key] = trace


def replayed(load: TraceLoadConfig, files: FileScope = ANYWHERE) -> Trace:
    """The requests of ``load``'s window, times relative to its start; ConfigError (as
    :func:`read_trace`, or with source ``start_s`` when the window holds none)."""
    trace = read_trace(load, files)
    window = trace.window(load.start_s, load.window_s)
    if not len(window):
        raise ConfigError(
            [
                f"no request of the trace falls in the window from start_s={load.start_s} s"
                + (f" for window_s={load.window_s} s" if load.window_s is not None else "")
                + f" (the trace spans {trace.span_s:.3f} s)"
            ],
            source="start_s",
        )
    return window


def trace_schedule(
    load: TraceLoadConfig,
    window: Trace,
    *,
    first_client: int,
    clients: int,
    warmup_s: float,
    duration_s: float | None,
    requests: int | None,
) -> ArrivalSchedule:
    """The group's arrivals for ``window`` (see the module's docstring): arrival ``i`` is the
    window's request ``i``; ``duration_s`` is ``stop.duration_s`` (None: the whole window)."""
    offsets = window.times_s / load.speedup
    n = len(offsets)
    if duration_s is not None:
        n = int(np.searchsorted(offsets, warmup_s + duration_s, side="left"))
    n_warmup = min(n, int(np.searchsorted(offsets, warmup_s, side="left")))
    if requests is not None:
        n = min(n, n_warmup + requests)
    warmup = np.zeros(n, dtype=np.bool_)
    warmup[:n_warmup] = True
    return ArrivalSchedule(
        np.array(offsets[:n], dtype=np.float64),
        np.arange(n, dtype=np.int64),
        np.zeros(n, dtype=np.int32),
        warmup,
        first_client,
        clients,
    )


def trace_group_schedule(
    config: ClusterConfig, group_index: int, files: FileScope = ANYWHERE
) -> tuple[ArrivalSchedule, Trace]:
    """The arrival schedule of trace group ``group_index`` and the window it replays."""
    group = config.groups[group_index]
    if not isinstance(group.load, TraceLoadConfig):
        raise ValueError(f"group {group.name!r} has a {group.load.kind} load, not a trace")
    window = replayed(group.load, files)
    schedule = trace_schedule(
        group.load,
        window,
        first_client=group_first_client(config, group_index),
        clients=group.clients,
        warmup_s=config.warmup_s,
        duration_s=group.stop.duration_s,
        requests=group.stop.requests,
    )
    return schedule, window
