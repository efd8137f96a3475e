"""Tick tallies: what one tick of one worker adds to the live statistics, without its samples.

On the high-rate path a worker keeps its raw samples in files and sends the service, each tick,
only what the live statistics need of them: per part (the
:data:`~clientswarm.metrics.derive.PartKey` of :func:`~clientswarm.metrics.derive.measured_parts`
— target, group, step, stage, replica) the counters of
:class:`~clientswarm.metrics.derive.Measured` and one mergeable
:class:`~clientswarm.metrics.histogram.Histogram` per metric of
:data:`~clientswarm.metrics.live.METRICS`. Tallies are sums: the tallies of two batches merged
are the tallies of their union, histograms equal bucket for bucket, so a worker merges its
batches of a tick into one :class:`TickTallies` and the service merges ticks into its live
statistics (:meth:`~clientswarm.metrics.live.LiveStats.add_tallies`), with the same result as
feeding it the samples (:meth:`~clientswarm.metrics.live.LiveStats.add_parts`).

The wire form (:func:`encode`, :func:`decode`; media type :data:`TICK_MEDIA_TYPE`) is one JSON
object::

    {"v": 1, "seq": 7, "scheme": "loglinear/64/-20/12", "samples": 1000,
     "parts": [{"key": ["default", "chat", null, 0, 0],
                "counts": {"requests": 990, "succeeded": 985, ...},
                "errors": {"http_503": 5}, "token_sources": {"usage": 985},
                "times": [start_ns, end_ns, first_sent_ns, last_sent_ns],
                "hist": {"ttft_s": [count, sum, min, max, gaps, counts], ...}}],
     "clients": [[client, succeeded, failed], ...],
     "outcomes": [[stage, ok, {"http_503": 5}, {"http_503": "last message"}], ...]}

``clients`` are what the store's per-client counters add (:func:`client_counts`), ``outcomes``
what the abort rule judges (:class:`StageOutcomes`): the service does with a tick all it does
with a batch but store its samples. ``times`` is null for a part without measured requests;
``hist`` holds the non-empty histograms only, each in
:meth:`~clientswarm.metrics.histogram.Histogram.to_wire`'s sparse form. Floats travel as their
shortest exact decimal, so a decoded tick equals the encoded one.

The service gets these bytes from anywhere: :func:`decode` checks sizes (:data:`MAX_TICK_BYTES`,
:data:`MAX_PARTS`, :data:`MAX_KINDS`), types, ranges and consistency (errors adding up to the
failed requests, histogram counts within the requests that have the metric, bucket counts
adding up) and raises :class:`TickFormatError`, naming the field, for anything else — never
another exception.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, get_args

import orjson

from clientswarm.errors import ClientswarmError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.derive import UNKNOWN_ERROR, Measured, PartKey, measured_parts
from clientswarm.metrics.histogram import MAX_WIRE_COUNT, SCHEME, Histogram
from clientswarm.metrics.live import METRICS, Tally
from clientswarm.metrics.sample import ERROR_CANCELLED, TokenSource

if TYPE_CHECKING:
    from clientswarm.config.models import SLOConfig

TICK_MEDIA_TYPE = "application/x-clientswarm-ticks"
"""The media type of an encoded tick."""

VERSION = 1
"""The version of the wire form: a tick of another is refused."""

MAX_TICK_BYTES = 16 * 2**20
"""The largest encoded tick :func:`decode` reads."""

MAX_PARTS = 4096
"""The most parts one tick may hold."""

MAX_KINDS = 256
"""The most error kinds (or token sources) one part may name."""

MAX_NAME = 255
"""The longest target, group, step name or error kind."""

COUNTS: tuple[str, ...] = (
    "requests",
    "succeeded",
    "warmup",
    "cancelled",
    "goodput",
    "input_tokens",
    "output_tokens",
)
"""The counters of a part, in the wire's order: those of :class:`Measured` of the same name."""

TIMES: tuple[str, ...] = ("start_ns", "end_ns", "first_sent_ns", "last_sent_ns")
"""The epoch-ns times of a part (over its measured requests), in the wire's order."""

_MEASURED = {f.name for f in fields(Measured)}
if not {*COUNTS, *TIMES, "errors", "token_sources"} <= _MEASURED:  # pragma: no cover - guard
    raise RuntimeError("ticks.COUNTS and TIMES must name fields of derive.Measured")
_TOKEN_SOURCES = frozenset(get_args(TokenSource))
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_PART_KEYS = frozenset({"key", "counts", "errors", "token_sources", "times", "hist"})
_TOP_KEYS = frozenset({"v", "seq", "scheme", "samples", "parts", "clients", "outcomes"})

MAX_CLIENTS = 100_000
"""The most clients one tick may count."""

MAX_MESSAGE = 1000
"""The longest example error message a tick carries."""


class TickFormatError(ClientswarmError, ValueError):
    """An encoded tick that is not valid: the message names the field and what is wrong."""


def _histograms() -> dict[str, Histogram]:
    return {name: Histogram() for name in METRICS}


@dataclass(slots=True)
class PartTally:
    """What one part's samples of a tick add to statistics: :class:`Measured`'s counters and
    times, and a histogram per metric of :data:`~clientswarm.metrics.live.METRICS` instead of
    the values."""

    requests: int = 0
    succeeded: int = 0
    warmup: int = 0
    cancelled: int = 0
    goodput: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    token_sources: Counter[str] = field(default_factory=Counter)
    start_ns: int | None = None
    """The earliest scheduled or send time of a measured request."""
    end_ns: int | None = None
    first_sent_ns: int | None = None
    last_sent_ns: int | None = None
    hist: dict[str, Histogram] = field(default_factory=_histograms)

    @classmethod
    def of(cls, m: Measured) -> PartTally:
        """The tally of what some samples add (:func:`~clientswarm.metrics.derive.measured`)."""
        t = cls(errors=Counter(m.errors), token_sources=Counter(m.token_sources))
        for name in (*COUNTS, *TIMES):
            setattr(t, name, getattr(m, name))
        for name in METRICS:
            values = m.values[name]
            if values.size:
                t.hist[name].record_many(values)
        return t

    def merge(self, other: PartTally) -> PartTally:
        """Add ``other`` to this tally (in place); returns ``self``."""
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.update(other.errors)
        self.token_sources.update(other.token_sources)
        self.start_ns = _first(min, self.start_ns, other.start_ns)
        self.end_ns = _first(max, self.end_ns, other.end_ns)
        self.first_sent_ns = _first(min, self.first_sent_ns, other.first_sent_ns)
        self.last_sent_ns = _first(max, self.last_sent_ns, other.last_sent_ns)
        for name, h in other.hist.items():
            self.hist[name].merge(h)
        return self

    def live(self) -> Tally:
        """The live statistics' tally of this part; it shares this one's histograms and error
        counts (for :meth:`~clientswarm.metrics.live.LiveStats.add_tallies`, which only reads)."""
        t = Tally(
            requests=self.requests,
            succeeded=self.succeeded,
            errors=self.errors,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            warmup=self.warmup,
            cancelled=self.cancelled,
            hist=self.hist,
        )
        if self.start_ns is not None:
            t.start_s = self.start_ns / 1e9  # as Tally.of converts it
        return t


def _first(pick: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    """``pick(a, b)``, or whichever of them is not None."""
    if a is None or b is None:
        return b if a is None else a
    return pick(a, b)


@dataclass(slots=True)
class TickTallies:
    """What one tick of one worker adds to statistics: a :class:`PartTally` per part."""

    samples: int = 0
    """Every sample the tick covers, warm-up, cut-off ones and steps included."""
    parts: dict[PartKey, PartTally] = field(default_factory=dict)
    clients: dict[int, list[int]] = field(default_factory=dict)
    """``[succeeded, failed]`` interactions of each client (:func:`client_counts`)."""
    outcomes: dict[int, StageOutcomes] = field(default_factory=dict)
    """What each stage's requests came to, for the abort rule (:class:`StageOutcomes`)."""

    def merge(self, other: TickTallies) -> TickTallies:
        """Add ``other`` to these tallies (in place; ``other``'s are copied); returns ``self``."""
        self.samples += other.samples
        for key, t in other.parts.items():
            self.parts.setdefault(key, PartTally()).merge(t)
        for client, (ok, bad) in other.clients.items():
            pair = self.clients.setdefault(client, [0, 0])
            pair[0] += ok
            pair[1] += bad
        for stage, o in other.outcomes.items():
            self.outcomes.setdefault(stage, StageOutcomes()).merge(o)
        return self

    def live_tallies(self) -> dict[PartKey, Tally]:
        """The parts as the live statistics take them
        (:meth:`~clientswarm.metrics.live.LiveStats.add_tallies`), sharing their histograms."""
        return {key: t.live() for key, t in self.parts.items()}


@dataclass(slots=True)
class StageOutcomes:
    """The interactions of one stage as the abort rule judges them
    (:mod:`clientswarm.service.abort`): steps and requests cut off by a stop left out,
    warm-up ones in; how many succeeded, how many failed of each error kind, and the last
    message of each kind."""

    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def merge(self, other: StageOutcomes) -> StageOutcomes:
        """Add ``other`` (in place); returns ``self``."""
        self.ok += other.ok
        self.failed.update(other.failed)
        self.examples.update(other.examples)
        return self


def client_counts(cols: SampleColumns) -> dict[int, list[int]]:
    """``{client: [succeeded, failed]}`` of a batch, counted as the summary counts a group's:
    interactions only (not their steps), and neither warm-up samples nor requests cut off by a
    stop (``error_kind == "cancelled"``, e.g. the request in flight when a client was stopped),
    so a group's clients add up to the group's ``succeeded`` and ``failed``."""
    c = cols.columns
    counts: dict[int, list[int]] = {}
    every = ("client", "status", "step", "warmup", "error_kind")
    for client, status, step, warmup, kind in zip(*(c[n] for n in every), strict=True):
        if step or warmup or kind == ERROR_CANCELLED:
            continue
        pair = counts.get(client)
        if pair is None:
            pair = counts[client] = [0, 0]
        pair[0 if status == "ok" else 1] += 1
    return counts


def stage_outcomes(cols: SampleColumns) -> dict[int, StageOutcomes]:
    """What each stage's interactions in ``cols`` came to (:class:`StageOutcomes`)."""
    c = cols.columns
    out: dict[int, StageOutcomes] = {}
    every = ("status", "error_kind", "error_message", "stage", "step")
    for status, kind, message, stage, step in zip(*(c[n] for n in every), strict=True):
        if step or kind == ERROR_CANCELLED:
            continue
        o = out.get(int(stage or 0))
        if o is None:
            o = out[int(stage or 0)] = StageOutcomes()
        if status == "ok":
            o.ok += 1
        else:
            kind = kind or UNKNOWN_ERROR
            o.failed[kind] += 1
            if message:
                o.examples[kind] = message[:MAX_MESSAGE]
    return out


def tick_tallies(cols: SampleColumns, slo: SLOConfig | None = None) -> TickTallies:
    """The tallies of a batch of samples (:func:`~clientswarm.metrics.derive.measured_parts`,
    goodput judged against ``slo``), with its clients' counts and its stages' outcomes."""
    parts = measured_parts(cols, slo=slo)
    return TickTallies(
        len(cols),
        {key: PartTally.of(m) for key, m in parts.items()},
        client_counts(cols) if len(cols) else {},
        stage_outcomes(cols) if len(cols) else {},
    )


def encode(seq: int, tallies: TickTallies) -> bytes:
    """The wire form of ``tallies`` as tick number ``seq`` (see the module docstring)."""
    return orjson.dumps(
        {
            "v": VERSION,
            "seq": seq,
            "scheme": SCHEME,
            "samples": tallies.samples,
            "parts": [_encode_part(key, t) for key, t in tallies.parts.items()],
            "clients": [[k, ok, bad] for k, (ok, bad) in tallies.clients.items()],
            "outcomes": [
                [stage, o.ok, dict(o.failed), o.examples] for stage, o in tallies.outcomes.items()
            ],
        }
    )


def _encode_part(key: PartKey, t: PartTally) -> dict[str, Any]:
    return {
        "key": list(key),
        "counts": {name: getattr(t, name) for name in COUNTS},
        "errors": dict(t.errors),
        "token_sources": dict(t.token_sources),
        "times": None if t.start_ns is None else [getattr(t, name) for name in TIMES],
        "hist": {name: h.to_wire() for name, h in t.hist.items() if h.count},
    }


def decode(body: bytes) -> tuple[int, TickTallies]:
    """``(seq, tallies)`` of an encoded tick, checked (see the module docstring):
    :class:`TickFormatError` names what is wrong."""
    if len(body) > MAX_TICK_BYTES:
        raise TickFormatError(f"a tick is at most {MAX_TICK_BYTES} bytes, got {len(body)}")
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TickFormatError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise TickFormatError(f"a tick is a JSON object, got {_shown(raw)}")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise TickFormatError(f"unknown fields {unknown}; valid: {', '.join(sorted(_TOP_KEYS))}")
    if raw.get("v") != VERSION or type(raw.get("v")) is not int:
        raise TickFormatError(
            f"v: this service reads version {VERSION}, got {_shown(raw.get('v'))}"
        )
    if raw.get("scheme") != SCHEME:
        raise TickFormatError(
            f"scheme: histogram layout {_shown(raw.get('scheme'))} is not this version's "
            f"{SCHEME!r}; run workers and service of equal clientswarm versions"
        )
    seq = _int(raw.get("seq"), "seq", 1, _INT64[1])
    samples = _int(raw.get("samples"), "samples", 0, MAX_WIRE_COUNT)
    parts = raw.get("parts")
    if not isinstance(parts, list) or len(parts) > MAX_PARTS:
        raise TickFormatError(
            f"parts must be a list of at most {MAX_PARTS} parts, got {_shown(parts)}"
        )
    out = TickTallies(samples)
    for i, part in enumerate(parts):
        key, t = _decode_part(part, f"parts[{i}]")
        if key in out.parts:
            raise TickFormatError(f"parts[{i}].key: {_shown(list(key))} appears twice")
        out.parts[key] = t
    counted = sum(t.requests + t.warmup + t.cancelled for t in out.parts.values())
    if counted > samples:
        raise TickFormatError(f"samples: {samples}, but the parts count {counted} samples")
    out.clients = _clients(raw.get("clients", []), samples)
    out.outcomes = _outcomes(raw.get("outcomes", []), samples)
    return seq, out


def _clients(raw: Any, samples: int) -> dict[int, list[int]]:
    if not isinstance(raw, list) or len(raw) > MAX_CLIENTS:
        raise TickFormatError(f"clients: a list of at most {MAX_CLIENTS} [client, ok, failed]")
    clients: dict[int, list[int]] = {}
    total = 0
    for i, entry in enumerate(raw):
        if not isinstance(entry, list) or len(entry) != 3:
            raise TickFormatError(f"clients[{i}]: [client, succeeded, failed], got {_shown(entry)}")
        client = _int(entry[0], f"clients[{i}][0]", 0, _INT32[1])
        ok = _int(entry[1], f"clients[{i}][1]", 0, samples)
        bad = _int(entry[2], f"clients[{i}][2]", 0, samples)
        if client in clients:
            raise TickFormatError(f"clients[{i}]: client {client} appears twice")
        clients[client] = [ok, bad]
        total += ok + bad
    if total > samples:
        raise TickFormatError(f"clients: {total} interactions counted, more than {samples} samples")
    return clients


def _outcomes(raw: Any, samples: int) -> dict[int, StageOutcomes]:
    if not isinstance(raw, list) or len(raw) > MAX_PARTS:
        raise TickFormatError(
            f"outcomes: a list of at most {MAX_PARTS} [stage, ok, failed, examples]"
        )
    out: dict[int, StageOutcomes] = {}
    total = 0
    for i, entry in enumerate(raw):
        where = f"outcomes[{i}]"
        if not isinstance(entry, list) or len(entry) != 4:
            raise TickFormatError(f"{where}: [stage, ok, failed, examples], got {_shown(entry)}")
        stage = _int(entry[0], f"{where}[0]", *_INT32)
        if stage in out:
            raise TickFormatError(f"{where}: stage {stage} appears twice")
        o = StageOutcomes(_int(entry[1], f"{where}[1]", 0, samples))
        o.failed = _counter(entry[2], f"{where}[2]", lambda k: 0 < len(k) <= MAX_NAME)
        examples = entry[3]
        if not isinstance(examples, dict) or not set(examples) <= set(o.failed):
            raise TickFormatError(f"{where}[3]: a message for some of the failed kinds")
        for kind, message in examples.items():
            if not isinstance(message, str) or len(message) > MAX_MESSAGE:
                raise TickFormatError(
                    f"{where}[3].{kind}: a message of at most {MAX_MESSAGE} chars"
                )
        o.examples = dict(examples)
        total += o.ok + sum(o.failed.values())
        out[stage] = o
    if total > samples:
        raise TickFormatError(f"outcomes: {total} interactions, more than {samples} samples")
    return out


def _decode_part(part: Any, where: str) -> tuple[PartKey, PartTally]:
    if not isinstance(part, dict) or set(part) != _PART_KEYS:
        raise TickFormatError(f"{where}: expected an object of {', '.join(sorted(_PART_KEYS))}")
    key = _key(part["key"], f"{where}.key")
    counts = part["counts"]
    if not isinstance(counts, dict) or set(counts) != set(COUNTS):
        raise TickFormatError(f"{where}.counts: expected an object of {', '.join(COUNTS)}")
    t = PartTally()
    for name in COUNTS:
        setattr(t, name, _int(counts[name], f"{where}.counts.{name}", 0, MAX_WIRE_COUNT))
    t.errors = _counter(part["errors"], f"{where}.errors", lambda k: 0 < len(k) <= MAX_NAME)
    t.token_sources = _counter(
        part["token_sources"], f"{where}.token_sources", _TOKEN_SOURCES.__contains__
    )
    failed = t.requests - t.succeeded
    if failed < 0 or t.goodput > t.succeeded or sum(t.errors.values()) != failed:
        raise TickFormatError(
            f"{where}.counts: succeeded <= requests, goodput <= succeeded, and the errors "
            f"must add up to the failed requests ({max(failed, 0)}), got "
            f"{sum(t.errors.values())} errors"
        )
    if sum(t.token_sources.values()) > t.succeeded:
        raise TickFormatError(f"{where}.token_sources: more than the {t.succeeded} successes")
    _times(part["times"], t, f"{where}.times")
    _hists(part["hist"], t, f"{where}.hist")
    return key, t


def _key(raw: Any, where: str) -> PartKey:
    """A part's key: ``[target, group, None, stage, replica]`` or ``[target, group, step,
    None, 0]``."""
    if not isinstance(raw, list) or len(raw) != 5:
        raise TickFormatError(f"{where}: [target, group, step, stage, replica], got {_shown(raw)}")
    target, group, step, stage, replica = raw
    for name, value in (("target", target), ("group", group)):
        if not isinstance(value, str) or len(value) > MAX_NAME:
            raise TickFormatError(f"{where}: {name} must be a string of at most {MAX_NAME} chars")
    if step is None:
        return (
            target,
            group,
            None,
            _int(stage, f"{where}: stage", *_INT32),
            _int(replica, f"{where}: replica", 0, _INT32[1]),
        )
    if (
        not isinstance(step, str)
        or not 0 < len(step) <= MAX_NAME
        or stage is not None
        or replica != 0
    ):
        raise TickFormatError(
            f"{where}: a step's key is [target, group, step name (1 to {MAX_NAME} chars), "
            f"null, 0], got {_shown(raw)}"
        )
    return target, group, step, None, 0


def _times(raw: Any, t: PartTally, where: str) -> None:
    if raw is None:
        if t.requests:
            raise TickFormatError(f"{where}: [start, end, first sent, last sent] ns for requests")
        return
    if not t.requests or not isinstance(raw, list) or len(raw) != len(TIMES):
        raise TickFormatError(
            f"{where}: [start, end, first sent, last sent] ns with requests, null without any"
        )
    values = [_int(v, f"{where}[{i}]", *_INT64) for i, v in enumerate(raw)]
    start, _end, first, last = values
    if not start <= first <= last:
        raise TickFormatError(f"{where}: start <= first sent <= last sent, got {values}")
    for name, value in zip(TIMES, values, strict=True):
        setattr(t, name, value)


def _hists(raw: Any, t: PartTally, where: str) -> None:
    if not isinstance(raw, dict) or not set(raw) <= set(METRICS):
        raise TickFormatError(f"{where}: expected an object of histograms of {', '.join(METRICS)}")
    # The requests that can have each metric: successes, or (schedule lag) every measured one.
    most = {name: t.succeeded for name in METRICS} | {"itl_s": MAX_WIRE_COUNT}
    most["schedule_lag_s"] = t.requests
    for name, data in raw.items():
        try:
            h = Histogram.from_wire(data)
        except ValueError as exc:
            raise TickFormatError(f"{where}.{name}: {exc}") from None
        if h.count > most[name]:
            raise TickFormatError(f"{where}.{name}: {h.count} values, more than {most[name]}")
        t.hist[name] = h


def _counter(raw: Any, where: str, valid: Callable[[str], bool]) -> Counter[str]:
    if not isinstance(raw, dict) or len(raw) > MAX_KINDS:
        raise TickFormatError(f"{where}: expected an object of at most {MAX_KINDS} counts")
    for name, n in raw.items():
        if not valid(name):
            raise TickFormatError(f"{where}: {_shown(name)} is not a valid name here")
        _int(n, f"{where}.{name}", 1, MAX_WIRE_COUNT)
    return Counter(raw)


def _int(value: Any, where: str, low: int, high: int) -> int:
    """``value`` if it is an integer in ``[low, high]``, else TickFormatError."""
    if type(value) is not int or not low <= value <= high:
        raise TickFormatError(f"{where}: an integer from {low} to {high}, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


__all__ = [
    "COUNTS",
    "MAX_KINDS",
    "MAX_NAME",
    "MAX_PARTS",
    "MAX_TICK_BYTES",
    "TICK_MEDIA_TYPE",
    "TIMES",
    "VERSION",
    "PartTally",
    "StageOutcomes",
    "TickFormatError",
    "TickTallies",
    "client_counts",
    "decode",
    "encode",
    "stage_outcomes",
    "tick_tallies",
]
