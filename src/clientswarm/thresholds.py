"""Threshold expressions: ``<path> <operator> <bound>``, e.g. ``ttft_s.p99 < 0.5``.

A threshold is a pass/fail check of one statistic of a summary's Stats (DESIGN.md's
``Stats`` shape, :class:`clientswarm.metrics.summary.Stats`):

- the **path** is dotted: a number of Stats (``error_rate``, ``output_token_rate``,
  ``requests``), a statistic of a distribution (``ttft_s.p99``, ``e2e_s.mean``: one of
  :data:`DIST_KEYS`) or a count by name (``errors.http_500``, ``token_sources.usage``: a name
  that was never counted reads 0);
- the **operator** is one of ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``;
- the **bound** is a plain number (``0.5``, ``2000``, ``1e-3``), in the statistic's own unit
  (seconds, per-second rates, counts, fractions): no unit suffixes.

A statistic that has no value (``ttft_s.p99`` of a run without a streamed answer is ``null``)
fails its threshold, its value reported as ``null``.

The parser reads the bound with a function it is given (:func:`parse_expression`'s ``bound``),
a plain number by default (:func:`number_bound`): another reader of expressions (a comparison
of two runs' ``--fail-if 'ttft_s.p99 < +10%'``) passes its own, and shares the grammar, the
paths, the checks and their messages.

Pure: no numpy, no pydantic: the configuration imports it, and validating a configuration
loads no numeric stack.
"""

from __future__ import annotations

import difflib
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from clientswarm.errors import ThresholdError

NUMBERS: tuple[str, ...] = (
    "requests",
    "succeeded",
    "failed",
    "duration_s",
    "request_rate",
    "output_token_rate",
    "input_tokens",
    "output_tokens",
    "goodput_rate",
    "goodput",
    "succeeded_rate",
    "send_rate",
    "send_span_s",
    "error_rate",
    "warmup_excluded",
    "cancelled_excluded",
)
"""The plain numbers of Stats."""

DISTRIBUTIONS: tuple[str, ...] = (
    "ttft_s",
    "itl_s",
    "tpot_s",
    "e2e_s",
    "schedule_lag_s",
    "e2e_from_schedule_s",
)
"""The distributions of Stats (each a ``Dist``)."""

DIST_KEYS: tuple[str, ...] = ("count", "mean", "min", "p50", "p90", "p95", "p99", "max")
"""The statistics of a distribution (:data:`clientswarm.metrics.dist.DIST_KEYS`)."""

COUNTS: dict[str, tuple[str, ...] | None] = {
    "errors": None,
    "token_sources": ("usage", "tokenizer", "chunks"),
}
"""The counts by name of Stats, with the names they may have (None: any name, e.g. the error
kinds ``http_500``, ``connection``, ``timeout``, or one a user-defined interaction gives)."""

LIVE_PATHS: frozenset[str] = frozenset(
    {
        "requests",
        "succeeded",
        "failed",
        "duration_s",
        "request_rate",
        "succeeded_rate",
        "output_token_rate",
        "error_rate",
        "input_tokens",
        "output_tokens",
        "errors",
        "warmup_excluded",
        "cancelled_excluded",
        "ttft_s",
        "itl_s",
        "tpot_s",
        "e2e_s",
        "schedule_lag_s",
    }
)
"""The first parts of the paths the live statistics have (:meth:`Tally.stats
<clientswarm.metrics.live.Tally.stats>`): only these can be judged while a run goes on."""

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
"""The comparison operators, longest first (the order the parser tries them)."""

EXAMPLE = "ttft_s.p99 < 0.5"

_SPACE = "[ \\t\\r\\n]*"
"""Spaces as the parser and the JSON Schema alike take them (not the regex engines' ``\\s``,
which differ)."""
_OPERATOR = "<=|>=|==|!=|<|>"
_NUMBER_TEXT = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)([eE][+-]?[0-9]+)?"
_NAME = "[A-Za-z0-9_:-]+"
_EXPRESSION = re.compile(
    rf"^{_SPACE}(?P<path>[^<>=!\s]+){_SPACE}(?P<op>{_OPERATOR}){_SPACE}(?P<bound>\S.*?){_SPACE}$",
    re.DOTALL,
)
_PATH_PART = re.compile(rf"^{_NAME}$")
_NUMBER = re.compile(rf"^{_NUMBER_TEXT}$")


def _paths_pattern() -> str:
    dists = f"({'|'.join(DISTRIBUTIONS)})[.]({'|'.join(DIST_KEYS)})"
    counts = [
        f"{name}[.]{_NAME if names is None else '(' + '|'.join(names) + ')'}"
        for name, names in COUNTS.items()
    ]
    return "|".join([*NUMBERS, dists, *counts])


EXPRESSION_PATTERN = (
    f"^{_SPACE}({_paths_pattern()}){_SPACE}({_OPERATOR}){_SPACE}{_NUMBER_TEXT}{_SPACE}$"
)
"""Every valid expression with a plain-number bound, as one regular expression (for the JSON
Schema of the configuration: editors and API clients see what the parser takes)."""

B = TypeVar("B")


@dataclass(frozen=True, slots=True)
class Expression(Generic[B]):
    """One parsed expression: where its value is, how it is compared, with what bound."""

    text: str
    """The expression as written (stripped)."""
    path: tuple[str, ...]
    op: str
    bound: B

    @property
    def name(self) -> str:
        """The dotted path, e.g. ``ttft_s.p99``."""
        return ".".join(self.path)

    def holds(self, value: float | None, bound: float) -> bool:
        """Whether ``value <op> bound``; a missing (None or NaN) value never holds."""
        if value is None or math.isnan(value):
            return False
        return OPERATORS[self.op](value, bound)


def number_bound(text: str) -> float:
    """The bound of a threshold: a plain, finite number (ThresholdError otherwise)."""
    if not _NUMBER.match(text):
        raise ThresholdError(
            "the right-hand side must be a plain number (e.g. 0.5, 2000, 1e-3), in the "
            "statistic's own unit (seconds, per second, a count or a fraction)"
        )
    return float(text)


@overload
def parse_expression(text: str) -> Expression[float]: ...


@overload
def parse_expression(text: str, bound: Callable[[str], B]) -> Expression[B]: ...


def parse_expression(text: str, bound: Callable[[str], Any] = number_bound) -> Expression[Any]:
    """Parse ``text`` (``<path> <operator> <bound>``), checking its path (:func:`check_path`)
    and reading its bound with ``bound``; ThresholdError saying what is wrong."""
    if not isinstance(text, str):
        raise ThresholdError(f"expected an expression like {EXAMPLE!r}")
    match = _EXPRESSION.match(text)
    if match is None:
        raise ThresholdError(
            f"expected '<statistic> <operator> <number>', e.g. {EXAMPLE!r} or "
            f"'error_rate < 0.01'; operators: {', '.join(sorted(OPERATORS, key=len))}"
        )
    path = tuple(match["path"].split("."))
    check_path(path)
    return Expression(text.strip(), path, match["op"], bound(match["bound"]))


def check_path(path: tuple[str, ...]) -> None:
    """ThresholdError when ``path`` names nothing in Stats, with a did-you-mean."""
    head, rest = path[0], path[1:]
    if not all(path) or not all(_PATH_PART.match(p) for p in path):
        raise ThresholdError(f"{'.'.join(path)!r} is not a dotted path like {EXAMPLE.split()[0]}")
    if head in NUMBERS:
        if rest:
            raise ThresholdError(f"{head} is a number: it has no {'.'.join(rest)!r}; write {head}")
        return
    if head in DISTRIBUTIONS:
        if not rest:
            raise ThresholdError(
                f"{head} is a distribution: name one of its statistics, e.g. {head}.p99 "
                f"({', '.join(DIST_KEYS)})"
            )
        if len(rest) > 1 or rest[0] not in DIST_KEYS:
            raise ThresholdError(
                f"unknown statistic {'.'.join(rest)!r} of {head}{_did_you_mean(rest[0], DIST_KEYS)}"
                f"; valid: {', '.join(DIST_KEYS)}"
            )
        return
    if head in COUNTS:
        names = COUNTS[head]
        example = "http_500" if names is None else names[0]
        if len(rest) != 1:
            raise ThresholdError(f"{head} counts by name: name one, e.g. {head}.{example}")
        if names is not None and rest[0] not in names:
            raise ThresholdError(
                f"unknown name {rest[0]!r} of {head}{_did_you_mean(rest[0], names)}; "
                f"valid: {', '.join(names)}"
            )
        return
    every = [*NUMBERS, *DISTRIBUTIONS, *COUNTS]
    raise ThresholdError(
        f"unknown statistic {head!r}{_did_you_mean(head, every)}; valid: {', '.join(NUMBERS)}; "
        f"distributions (add .p99, .mean, …): {', '.join(DISTRIBUTIONS)}; "
        f"counts (add .<name>): {', '.join(COUNTS)}"
    )


def _did_you_mean(word: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def value_at(stats: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    """The value at ``path`` in a Stats document (None where it has none; 0 for a name a
    count never counted)."""
    head = path[0]
    node = stats.get(head)
    if head in COUNTS:
        counts = node if isinstance(node, Mapping) else {}
        count = counts.get(path[1], 0)
        return count if isinstance(count, int | float) and not isinstance(count, bool) else None
    for part in path[1:]:
        node = node.get(part) if isinstance(node, Mapping) else None
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return None if math.isnan(node) else node


def judged_live(path: tuple[str, ...]) -> bool:
    """Whether the live statistics have the value at ``path`` (see :data:`LIVE_PATHS`)."""
    return path[0] in LIVE_PATHS


def check(expression: str, stats: Mapping[str, Any] | None) -> tuple[float | None, bool]:
    """The value of ``expression``'s statistic in ``stats`` (a Stats document; None: none)
    and whether the threshold holds."""
    parsed = parse_expression(expression)
    value = None if stats is None else value_at(stats, parsed.path)
    return value, parsed.holds(value, parsed.bound)


__all__ = [
    "COUNTS",
    "DISTRIBUTIONS",
    "DIST_KEYS",
    "EXPRESSION_PATTERN",
    "LIVE_PATHS",
    "NUMBERS",
    "OPERATORS",
    "Expression",
    "ThresholdError",
    "check",
    "check_path",
    "judged_live",
    "number_bound",
    "parse_expression",
    "value_at",
]
