"""Thresholds: the expression parser, its paths and messages, the configuration's checks, and
their judgement on a final summary."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from rich.console import Console

from clientswarm.config.checks import AbortConfig
from clientswarm.config.loader import config_json_schema, validate_config_data
from clientswarm.errors import ConfigError
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.dist import DIST_KEYS as DIST_KEYS_OF_DIST
from clientswarm.metrics.live import Tally
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import ClusterStatistics
from clientswarm.metrics.summary import ClusterInfo, Stats, Summary
from clientswarm.reports.table import render_summary
from clientswarm.service.verdicts import threshold_results
from clientswarm.thresholds import (
    COUNTS,
    DIST_KEYS,
    DISTRIBUTIONS,
    EXPRESSION_PATTERN,
    LIVE_PATHS,
    NUMBERS,
    Expression,
    ThresholdError,
    check,
    parse_expression,
    value_at,
)


def config(**extra: Any) -> dict[str, Any]:
    group = {"name": "chat", "interaction": {"kind": "chat"}, "stop": {"requests": 1}}
    group.update(extra.pop("group", {}))
    return {"name": "t", "target": {"url": "http://127.0.0.1:9"}, "groups": [group], **extra}


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        validate_config_data(data)
    return str(caught.value)


# -- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "op", "bound"),
    [
        ("ttft_s.p99 < 0.5", ("ttft_s", "p99"), "<", 0.5),
        ("  error_rate<=0.01 ", ("error_rate",), "<=", 0.01),
        ("output_token_rate > 2000", ("output_token_rate",), ">", 2000.0),
        ("requests >= 1e3", ("requests",), ">=", 1000.0),
        ("errors.http_500 == 0", ("errors", "http_500"), "==", 0.0),
        ("token_sources.chunks != -1.5", ("token_sources", "chunks"), "!=", -1.5),
        ("e2e_s.max<.25", ("e2e_s", "max"), "<", 0.25),
    ],
)
def test_expressions_parse_into_path_operator_and_bound(
    text: str, path: tuple[str, ...], op: str, bound: float
) -> None:
    parsed = parse_expression(text)
    assert (parsed.path, parsed.op, parsed.bound) == (path, op, bound)
    assert parsed.text == text.strip()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ttft_s.p98 < 1", "unknown statistic 'p98' of ttft_s (did you mean 'p99'?)"),
        ("ttf_s.p99 < 1", "unknown statistic 'ttf_s' (did you mean 'ttft_s'?)"),
        ("error_rat < 1", "(did you mean 'error_rate'?)"),
        ("ttft_s < 1", "ttft_s is a distribution: name one of its statistics, e.g. ttft_s.p99"),
        ("error_rate.p99 < 1", "error_rate is a number"),
        ("errors < 1", "errors counts by name: name one, e.g. errors.http_500"),
        ("token_sources.usages > 1", "(did you mean 'usage'?)"),
        ("error_rate = 0.1", "expected '<statistic> <operator> <number>'"),
        ("error_rate <", "expected '<statistic> <operator> <number>'"),
        ("< 0.5", "expected '<statistic> <operator> <number>'"),
        ("error_rate < 5%", "the right-hand side must be a plain number"),
        ("ttft_s.p99 < 500ms", "the right-hand side must be a plain number"),
        ("error_rate < nan", "the right-hand side must be a plain number"),
        ("ttft_s..p99 < 1", "is not a dotted path"),
    ],
)
def test_bad_expressions_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_expression(text)
    assert message in str(caught.value)


def test_the_bound_reader_is_pluggable_for_relative_bounds() -> None:
    # What a comparison of two runs will pass: the grammar and paths stay the parser's.
    def relative(text: str) -> float:
        match = re.fullmatch(r"([+-]\d+)%", text)
        if match is None:
            raise ThresholdError("expected ±N%")
        return float(match[1]) / 100

    parsed: Expression[float] = parse_expression("ttft_s.p99 < +10%", relative)
    assert (parsed.path, parsed.op, parsed.bound) == (("ttft_s", "p99"), "<", 0.1)
    with pytest.raises(ThresholdError, match="unknown statistic"):
        parse_expression("ttft.p99 < +10%", relative)


def test_the_paths_are_those_of_the_stats_model() -> None:
    # The parser declares them without importing the model (no numpy when validating).
    fields = set(Stats.model_fields)
    assert set(NUMBERS) | set(DISTRIBUTIONS) | set(COUNTS) == fields
    assert DIST_KEYS == DIST_KEYS_OF_DIST
    assert set(Tally().stats(1.0)) & fields == LIVE_PATHS


def test_values_are_read_from_a_stats_document() -> None:
    stats = {
        "error_rate": 0.25,
        "ttft_s": {"p99": None, "mean": 0.1},
        "errors": {"http_500": 3},
        "send_rate": None,
    }
    assert value_at(stats, ("error_rate",)) == 0.25
    assert value_at(stats, ("ttft_s", "mean")) == 0.1
    assert value_at(stats, ("ttft_s", "p99")) is None
    assert value_at(stats, ("send_rate",)) is None
    assert value_at(stats, ("errors", "http_500")) == 3
    assert value_at(stats, ("errors", "http_429")) == 0  # never counted
    assert check("errors.http_429 == 0", stats) == (0, True)
    assert check("ttft_s.p99 < 1", stats) == (None, False)  # no value: fails
    assert check("ttft_s.mean < 0.1", stats) == (0.1, False)
    assert check("ttft_s.mean <= 0.1", stats) == (0.1, True)


# -- the configuration ----------------------------------------------------------------------


def test_thresholds_are_checked_item_by_item_naming_the_field() -> None:
    text = problems(config(thresholds=["ttft_s.p99 < 0.5", "ttft_s.p98 < 1"]))
    assert text.startswith("thresholds[1]: unknown statistic 'p98' of ttft_s")
    text = problems(config(group={"thresholds": ["e2e_s.p99 < x"]}))
    assert text.startswith("groups[0].thresholds[0]: the right-hand side must be a plain number")
    assert "\n" not in text


def test_a_threshold_may_abort_only_on_what_the_live_statistics_have() -> None:
    data = config(thresholds=["error_rate < 0.1", {"expr": "error_rate < 0.2", "abort": True}])
    parsed = validate_config_data(data)
    assert [(t.expr, t.abort) for t in parsed.thresholds] == [
        ("error_rate < 0.1", False),
        ("error_rate < 0.2", True),
    ]
    # Written back as given: plain strings stay strings, and it validates again.
    dumped = parsed.model_dump(mode="json")
    assert dumped["thresholds"][0] == "error_rate < 0.1"
    assert validate_config_data(dumped) == parsed
    text = problems(config(thresholds=[{"expr": "goodput_rate > 1", "abort": True}]))
    assert text.startswith("thresholds[0]: goodput_rate is known only at the end of the run")
    assert problems(config(thresholds=[7])).startswith("thresholds[0]: expected an expression")


def test_the_abort_rule_is_on_by_default_and_can_be_turned_off() -> None:
    assert validate_config_data(config()).abort == AbortConfig()
    assert AbortConfig().enabled and AbortConfig().kinds == ["connection", "http_5xx", "http_429"]
    off = validate_config_data(config(abort=False))
    assert not off.abort.enabled
    assert not validate_config_data(off.model_dump(mode="json")).abort.enabled
    assert validate_config_data(config(abort=True)).abort == AbortConfig()
    small = validate_config_data(config(abort={"window": 5})).abort
    assert (small.window, small.min_requests) == (5, 10)  # judged once its 5 are in


@pytest.mark.parametrize(
    ("abort", "message"),
    [
        ({"kinds": ["conection"]}, "abort.kinds[0]: unknown failure kind 'conection' (did you "),
        ({"kinds": ["http_6xx"]}, "abort.kinds[0]: unknown failure kind 'http_6xx'"),
        ({"failed_fraction": 1.5}, "abort.failed_fraction: too large"),
        ({"window": 10, "min_requests": 20}, "abort: min_requests (20) must be <= window (10)"),
        ("no", "abort: expected false (never abort) or the rule"),
    ],
)
def test_bad_abort_rules_are_one_line_each(abort: Any, message: str) -> None:
    text = problems(config(abort=abort))
    assert text.startswith(message), text
    assert "\n" not in text


def test_failure_kinds_match_by_status_class_or_status() -> None:
    rule = AbortConfig(kinds=["connection", "http_5xx", "http_429"])
    assert [rule.counts(k) for k in ("connection", "http_503", "http_429", "http_404")] == [
        True,
        True,
        True,
        False,
    ]
    assert not rule.counts("timeout") and not rule.counts("client")


# -- judged on the final summary ------------------------------------------------------------


def summary_of(samples: list[Sample]) -> Summary:
    with ClusterStatistics(group_order=["chat"]) as statistics:
        statistics.add(SampleColumns.from_samples(samples))
        return statistics.summary(ClusterInfo(id="c"))


def _samples(n_ok: int, n_failed: int) -> list[Sample]:
    out = []
    for i in range(n_ok + n_failed):
        ok = i < n_ok
        out.append(
            Sample(
                group="chat",
                client=0,
                worker=0,
                name="hello",
                scheduled_ns=i * 10**8,
                sent_ns=i * 10**8,
                end_ns=i * 10**8 + 10**7,
                status="ok" if ok else "error",
                error_kind=None if ok else "http_500",
            )
        )
    return out


def test_thresholds_are_judged_on_the_final_statistics_with_their_scope() -> None:
    parsed = validate_config_data(
        config(
            thresholds=["error_rate < 0.01", "e2e_s.p99 < 1", "errors.http_429 == 0"],
            group={"thresholds": ["ttft_s.p99 < 0.5", "requests >= 10"]},
        )
    )
    summary = summary_of(_samples(8, 2))
    results = [r.model_dump() for r in threshold_results(parsed, summary)]
    assert results == [
        {"scope": "total", "expr": "error_rate < 0.01", "value": 0.2, "passed": False},
        {"scope": "total", "expr": "e2e_s.p99 < 1", "value": pytest.approx(0.01), "passed": True},
        {"scope": "total", "expr": "errors.http_429 == 0", "value": 0, "passed": True},
        # A hello has no TTFT: no value, which fails.
        {"scope": "groups.chat", "expr": "ttft_s.p99 < 0.5", "value": None, "passed": False},
        {"scope": "groups.chat", "expr": "requests >= 10", "value": 10, "passed": True},
    ]
    summary.thresholds = threshold_results(parsed, summary)
    document = summary.document()
    assert document["thresholds"][3] == results[3]
    out = io.StringIO()
    render_summary(document, Console(file=out, width=120))
    text = out.getvalue()
    assert "Thresholds: 2 of 5 failed" in text
    assert re.search(r"total\s+error_rate < 0\.01\s+0\.2\s+FAIL", text)
    assert re.search(r"groups\.chat\s+ttft_s\.p99 < 0\.5\s+no value\s+FAIL", text)
    assert re.search(r"groups\.chat\s+requests >= 10\s+10\s+pass", text)


def test_a_summary_without_thresholds_prints_none() -> None:
    summary = summary_of(_samples(1, 0))
    assert summary.document()["thresholds"] == []
    out = io.StringIO()
    render_summary(summary.document(), Console(file=out, width=120))
    assert "Thresholds" not in out.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        "ttft_s.p99 < 0.5",
        " error_rate<=1e-3\n",
        "errors.http_500 == 0",
        "token_sources.usage >= 1",
        "goodput > 1",
        "send_span_s != .5",
        "ttft_s.p98 < 1",
        "error_rate < 5%",
        "x < 1",
        "ttft_s < 1",
        "error_rate\ufeff< 1",
        "error_rate < \u0661",  # an Arabic-Indic digit one
    ],
)
def test_the_json_schema_pattern_takes_what_the_parser_takes(text: str) -> None:
    try:
        parse_expression(text)
        parsed = True
    except ThresholdError:
        parsed = False
    assert bool(re.match(EXPRESSION_PATTERN, text)) is parsed
    schema = config_json_schema()
    (pattern,) = [
        choice["pattern"]
        for choice in schema["properties"]["thresholds"]["items"]["anyOf"]
        if "pattern" in choice
    ]
    assert pattern == EXPRESSION_PATTERN
