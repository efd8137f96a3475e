"""The report says what its numbers cannot say: rates over too short a span, and which groups
the total's rows mix."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import summarize
from clientswarm.reports.caveats import SHORT, is_short
from clientswarm.reports.table import render_summary

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def chat(i: int, at_ms: int) -> Sample:
    """A streamed chat answer of 680 ms with 5 tokens."""
    sent = T0 + at_ms * MS
    return Sample(
        group="chat",
        client=i,
        worker=0,
        name="chat",
        scheduled_ns=sent,
        sent_ns=sent,
        end_ns=sent + 680 * MS,
        first_token_ns=sent + 100 * MS,
        last_token_ns=sent + 680 * MS,
        output_tokens=5,
        token_source="usage",
        itl_s=[0.145] * 4,
    )


def hello(i: int, at_ms: float) -> Sample:
    """A 1 ms hello."""
    sent = T0 + int(at_ms * MS)
    return Sample(
        group="hello",
        client=100 + i,
        worker=0,
        name="hello",
        scheduled_ns=sent,
        sent_ns=sent,
        end_ns=sent + MS,
        http_status=200,
    )


def render(summary: dict[str, Any]) -> str:
    console = Console(record=True, width=120, color_system=None)
    render_summary(summary, console)
    return console.export_text()


def row(text: str, label: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.split()[:1] == [label]][:1]
    return line.split()


def test_rates_over_a_short_span_are_a_dash_with_the_reason() -> None:
    # chat: 4 s of samples; hello: 5 requests within 4 ms (a burst, no rate to speak of)
    samples = [chat(i, 1000 * i) for i in range(4)] + [hello(i, 0.5 * i) for i in range(5)]
    summary = summarize(samples, cluster={"id": "c", "name": "n", "status": "completed"})
    hello_stats = summary["groups"]["hello"]
    assert hello_stats["duration_s"] < 0.01 and hello_stats["request_rate"] > 1000  # kept
    assert hello_stats["send_span_s"] == 0.002
    assert is_short(hello_stats, "request_rate") and is_short(hello_stats, "send_rate")
    assert not is_short(summary["groups"]["chat"], "request_rate")
    text = render(summary)
    assert row(text, "hello")[5:] == [SHORT] * 4  # req/s, send/s, out tok/s, goodput/s
    assert SHORT not in row(text, "chat")
    assert "a rate over less than 1 s of samples is not shown" in text
    assert "hello (over 3.0 ms, sends over 2.0 ms)" in " ".join(text.split())


def test_the_total_rows_say_which_groups_they_mix() -> None:
    samples = [chat(i, 1000 * i) for i in range(4)] + [hello(i, 300 * i) for i in range(10)]
    summary = summarize(samples, cluster={"id": "c", "name": "n", "status": "completed"})
    total = summary["total"]
    assert total["ttft_s"]["count"] == 4  # the chats only: a hello has no first token
    assert total["tpot_s"]["count"] == 4 and total["itl_s"]["count"] == 16
    assert total["e2e_s"]["count"] == 14  # every group
    assert total["ttft_s"]["p50"] == summary["groups"]["chat"]["ttft_s"]["p50"]
    text = " ".join(render(summary).split())
    assert "total rows mix: TTFT, ITL, TPOT: chat · E2E, sched lag: chat, hello" in text


def test_one_group_has_no_total_rows_to_explain() -> None:
    summary = summarize([chat(i, 1000 * i) for i in range(3)], cluster={"id": "c"})
    assert "total rows mix" not in render(summary)
