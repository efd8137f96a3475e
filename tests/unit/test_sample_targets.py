"""The target's name travels with every sample: statistics per target, labels, tables."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import summarize
from clientswarm.reports.table import render_summary
from clientswarm.service.prometheus import LiveRegistry, render_metrics

T0 = 1_700_000_000.0  # epoch seconds
CLUSTER = {"id": "c1", "name": "ab", "status": "completed"}


def sample(target: str, group: str, i: int, *, e2e_s: float = 0.5, ok: bool = True) -> Sample:
    sent = round((T0 + i / 100) * 1e9)
    return Sample(
        group=group,
        client=i % 3,
        worker=0,
        name="chat",
        scheduled_ns=sent,
        sent_ns=sent,
        end_ns=sent + round(e2e_s * 1e9),
        status="ok" if ok else "error",
        first_token_ns=sent + 50_000_000 if ok else None,
        output_tokens=4 if ok else None,
        itl_s=[0.1, 0.1, 0.1] if ok else [],
        error_kind=None if ok else "http_503",
        target=target,
    )


def two_targets() -> list[Sample]:
    """Target a: groups to-a (5, 0.1 s) and also-a (3, 0.3 s); target b: to-b (4, 2 s, one
    failed)."""
    return [
        *(sample("a", "to-a", i, e2e_s=0.1) for i in range(5)),
        *(sample("b", "to-b", i, e2e_s=2.0, ok=i != 0) for i in range(4)),
        *(sample("a", "also-a", i, e2e_s=0.3) for i in range(3)),
    ]


def test_the_summary_has_the_stats_of_each_target_and_each_group_names_its_own() -> None:
    summary = summarize(two_targets(), cluster=CLUSTER, target_order=["b", "a", "idle"])
    targets = summary["targets"]
    assert list(targets) == ["b", "a", "idle"]  # as asked, then any other, even without samples
    a, b = targets["a"], targets["b"]
    assert (a["requests"], a["succeeded"], b["requests"], b["failed"]) == (8, 8, 4, 1)
    assert b["errors"] == {"http_503": 1}
    # a's distributions are the union of its groups' values, not an average of theirs
    assert a["e2e_s"]["count"] == 8 and a["e2e_s"]["max"] == pytest.approx(0.3)
    assert a["e2e_s"]["p50"] == pytest.approx(0.1)
    assert b["e2e_s"]["min"] == pytest.approx(2.0) and b["e2e_s"]["count"] == 3
    assert targets["idle"]["requests"] == 0 and targets["idle"]["e2e_s"]["count"] == 0
    assert summary["total"]["requests"] == 12 == a["requests"] + b["requests"]
    groups = summary["groups"]
    assert {g: s["target"] for g, s in groups.items()} == {
        "to-a": "a",
        "to-b": "b",
        "also-a": "a",
    }


def test_one_target_is_the_total() -> None:
    samples = [sample("default", "chat", i) for i in range(4)] + [
        sample("default", "hello", i, e2e_s=0.01) for i in range(2)
    ]
    summary = summarize(samples, cluster=CLUSTER)
    assert summary["targets"] == {"default": summary["total"]}
    assert summary["groups"]["chat"]["target"] == "default"


def test_live_stats_name_each_groups_target_and_add_up_each_target() -> None:
    live = LiveStats("c1", "ab", groups=["to-a", "to-b", "idle"], group_targets={"idle": "b"})
    live.add(two_targets(), T0 + 1)
    since = live.snapshot(T0 + 1)["since_start"]
    assert {g: s["target"] for g, s in since["groups"].items()} == {
        "to-a": "a",  # from its samples
        "to-b": "b",
        "idle": "b",  # given: no sample says it
        "also-a": "a",
    }
    assert {t: s["requests"] for t, s in since["targets"].items()} == {"a": 8, "b": 4}
    assert since["targets"]["a"]["e2e_s"]["count"] == 8
    assert since["total"]["requests"] == 12


def test_prometheus_series_are_labelled_by_target() -> None:
    registry = LiveRegistry()
    live = registry.get_or_create(
        "c1", "ab", groups=["to-a", "to-b", "idle"], group_targets={"idle": "b"}
    )
    live.add(two_targets(), T0 + 1)
    live.set_active_clients("idle", 2)
    families = {
        f.name: f for f in text_string_to_metric_families(render_metrics(registry).decode())
    }
    ok = {
        (s.labels["target"], s.labels["group"]): s.value
        for s in families["clientswarm_requests"].samples
        if s.labels["outcome"] == "ok"
    }
    assert ok == {("a", "to-a"): 5, ("b", "to-b"): 3, ("b", "idle"): 0, ("a", "also-a"): 3}
    counts = {
        (s.labels["target"], s.labels["group"]): s.value
        for s in families["clientswarm_e2e_seconds"].samples
        if s.name.endswith("_count")
    }
    assert counts == {("a", "to-a"): 5, ("b", "to-b"): 3, ("b", "idle"): 0, ("a", "also-a"): 3}
    active = families["clientswarm_active_clients"].samples
    assert [(s.labels["target"], s.labels["group"], s.value) for s in active] == [("b", "idle", 2)]


def render(summary: dict[str, Any]) -> str:
    console = Console(record=True, width=120, color_system=None)
    render_summary(summary, console)
    return console.export_text()


def test_the_tables_show_a_row_per_target_when_there_are_several() -> None:
    text = render(summarize(two_targets(), cluster=CLUSTER, target_order=["a", "b"]))
    throughput, latency = text.split("Latency (ms)")
    for table in (throughput, latency):
        lines = table.splitlines()
        rows = [i for i, line in enumerate(lines) if line.lstrip().startswith("target ")]
        assert [lines[i].split()[1] for i in rows] == ["a", "b"]
        total = next(i for i, line in enumerate(lines) if line.lstrip().startswith("total"))
        assert rows[-1] < total  # between the groups and the total
    assert "target a" in throughput and " 8 " in throughput.split("target a")[1].splitlines()[0]


def test_one_target_changes_nothing_the_tables_show() -> None:
    samples = [sample("default", "chat", i) for i in range(4)] + [
        sample("default", "hello", i, e2e_s=0.01, ok=i != 1) for i in range(3)
    ]
    summary = summarize(samples, cluster=CLUSTER)
    before = {k: v for k, v in summary.items() if k != "targets"}  # a summary before targets
    before["groups"] = {
        g: {k: v for k, v in s.items() if k != "target"} for g, s in summary["groups"].items()
    }
    assert render(summary) == render(before)
    assert "target" not in render(summary)
