"""What judges a run: its ``thresholds`` (pass/fail checks of the final statistics) and its
``abort`` rule (stop a run whose requests nearly all fail), as configuration models.

The expressions' grammar and paths are :mod:`clientswarm.thresholds`'s; what evaluates them
is :mod:`clientswarm.service.verdicts` (the final summary) and
:mod:`clientswarm.service.abort` (the abort rule, thresholds judged live).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from clientswarm.config.base import StrictModel
from clientswarm.thresholds import (
    EXPRESSION_PATTERN,
    ThresholdError,
    judged_live,
    parse_expression,
)

THRESHOLD_ABORT_MIN_REQUESTS = 100
"""Requests a threshold with ``abort: true`` waits for before it is judged live."""


class ThresholdCheck(StrictModel):
    """One threshold: an expression, and whether it stops the run once it fails on the live
    statistics (a plain string in the file is ``{expr: <string>}``)."""

    expr: str = Field(
        json_schema_extra={"pattern": EXPRESSION_PATTERN},  # what _threshold checks
        description="'<statistic> <operator> <number>', e.g. 'ttft_s.p99 < 0.5'; the statistic "
        "is a dotted path into Stats (error_rate, output_token_rate, e2e_s.p90, errors.http_500)",
    )
    abort: bool = Field(
        default=False,
        description="Stop the run (status failed) as soon as the threshold fails on the live "
        "statistics since the start, once min_requests requests were measured",
    )
    min_requests: int = Field(
        default=THRESHOLD_ABORT_MIN_REQUESTS,
        ge=1,
        le=1_000_000_000,
        description="With abort: measured requests (of the threshold's scope) before it is "
        "judged live",
    )

    @model_serializer(mode="wrap")
    def _plain(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A threshold that only judges the end is written back as its plain string."""
        if not self.abort and self.min_requests == THRESHOLD_ABORT_MIN_REQUESTS:
            return self.expr
        return handler(self)


def _threshold(value: Any) -> Any:
    """A string is ``{expr: string}``; the expression is checked here so that an error names
    the item itself (``thresholds[1]: …``)."""
    if isinstance(value, ThresholdCheck):
        return value
    data = {"expr": value} if isinstance(value, str) else value
    if not isinstance(data, dict):
        raise ValueError(
            "expected an expression like 'ttft_s.p99 < 0.5' or "
            "{expr: 'error_rate < 0.05', abort: true}"
        )
    expr = data.get("expr")
    if isinstance(expr, str):
        try:
            parsed = parse_expression(expr)
        except ThresholdError as exc:
            raise ValueError(str(exc)) from None
        if data.get("abort") is True and not judged_live(parsed.path):
            raise ValueError(
                f"{parsed.name} is known only at the end of the run, so it cannot abort the run "
                "early; drop abort: true (it is still judged at the end)"
            )
    return data


_Expression = Annotated[str, WithJsonSchema({"type": "string", "pattern": EXPRESSION_PATTERN})]

ThresholdItem = Annotated[
    ThresholdCheck,
    BeforeValidator(_threshold, json_schema_input_type=_Expression | ThresholdCheck),
]

Thresholds = Annotated[
    list[ThresholdItem],
    Field(
        max_length=256,
        description="Pass/fail checks of the final statistics, e.g. ['ttft_s.p99 < 0.5', "
        "'error_rate < 0.01']; a failed one makes `clientswarm run` exit 3",
    ),
]
"""The ``thresholds`` of the cluster (scope ``total``) or of a group (scope ``groups.<g>``)."""


# -- the abort rule ---------------------------------------------------------------------------

FAILURE_KINDS: tuple[str, ...] = (
    "connection",
    "timeout",
    "http_5xx",
    "http_4xx",
    "stream_error",
    "protocol",
    "client",
    "unknown",
)
"""The failure kinds an abort rule counts, besides one HTTP status (``http_429``):
``http_5xx`` / ``http_4xx`` are every status of that class, the others the error kinds of
samples (:mod:`clientswarm.metrics.sample`)."""

_HTTP_KIND = re.compile(r"^http_([1-5]\d\d|[45]xx)$")


def _check_kind(kind: str) -> str:
    if kind in FAILURE_KINDS or _HTTP_KIND.match(kind):
        return kind
    close = difflib.get_close_matches(kind, FAILURE_KINDS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown failure kind {kind!r}{hint}; valid: {', '.join(FAILURE_KINDS)}, or one "
        "HTTP status like http_429"
    )


FAILURE_KIND_PATTERN = f"^({'|'.join(FAILURE_KINDS)}|http_([1-5][0-9][0-9]|[45]xx))$"
"""The failure kinds of :data:`FAILURE_KINDS` and the HTTP ones, for the JSON Schema."""

FailureKind = Annotated[
    str,
    BeforeValidator(lambda v: _check_kind(v) if isinstance(v, str) else v),
    WithJsonSchema({"type": "string", "pattern": FAILURE_KIND_PATTERN}),
]


class AbortConfig(StrictModel):
    """Stop the run (status ``failed``) when nearly all of its last requests, across the
    cluster, failed with one of ``kinds``: the target is down or refuses everything. In the
    file, ``abort: false`` turns it off (``enabled: false``), ``abort: true`` is the defaults."""

    enabled: bool = Field(default=True, description="false: never stop the run so")
    window: int = Field(
        default=200, ge=1, le=100_000, description="The last this many requests are judged"
    )
    min_requests: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Requests the window must hold before it is judged (at most window; "
        "a window smaller than the default is judged once full)",
    )
    failed_fraction: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="The run stops when at least this fraction of the window failed with one "
        "of kinds",
    )
    kinds: list[FailureKind] = Field(
        default_factory=lambda: ["connection", "http_5xx", "http_429"],
        min_length=1,
        description="The failures counted: connection, timeout, http_5xx, http_4xx, "
        "stream_error, protocol, client, unknown, or one status like http_429",
    )

    @model_validator(mode="after")
    def _judged_within_the_window(self) -> AbortConfig:
        if self.min_requests > self.window and "min_requests" in self.model_fields_set:
            raise ValueError(
                f"min_requests ({self.min_requests}) must be <= window ({self.window})"
            )
        return self

    def counts(self, kind: str) -> bool:
        """Whether a failure of error kind ``kind`` counts (``http_503`` counts for
        ``http_5xx`` and for ``http_503``)."""
        if kind in self.kinds:
            return True
        return kind.startswith("http_") and f"http_{kind[5:6]}xx" in self.kinds


def _abort_setting(value: Any) -> Any:
    if value is True or value is None:
        return {}
    if value is False:
        return {"enabled": False}
    if not isinstance(value, dict | AbortConfig):
        raise ValueError(
            "expected false (never abort) or the rule {window, min_requests, failed_fraction, "
            "kinds}"
        )
    return value


AbortSetting = Annotated[
    AbortConfig,
    BeforeValidator(_abort_setting, json_schema_input_type=AbortConfig | bool),
]
"""The ``abort`` of a cluster: the rule (``true`` or ``{}``: its defaults; ``false``: off)."""


__all__ = [
    "FAILURE_KINDS",
    "THRESHOLD_ABORT_MIN_REQUESTS",
    "AbortConfig",
    "AbortSetting",
    "ThresholdCheck",
    "ThresholdItem",
    "Thresholds",
]
