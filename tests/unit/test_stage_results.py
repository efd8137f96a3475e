"""Per-stage results: the plan of each load stage, the split of the exact statistics by stage,
the per-stage warm-up, and their rows in the printed tables."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from clientswarm.config.loader import validate_config_data
from clientswarm.errors import ConfigError
from clientswarm.load.stage_plan import StagePlan, stage_plans, stage_warmup_of
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import summarize
from clientswarm.reports.table import render_summary

T0 = 1_700_000_000_000_000_000
CLUSTER = {"id": "c1", "name": "demo", "status": "completed"}


def config(load: dict[str, Any], stop: dict[str, Any] | None = None, **extra: Any) -> Any:
    group: dict[str, Any] = {
        "name": "chat",
        "clients": 4,
        "interaction": {"kind": "hello"},
        "load": load,
    }
    if stop is not None:
        group["stop"] = stop
    return validate_config_data(
        {"name": "t", "target": {"url": "http://127.0.0.1:8000"}, "groups": [group], **extra}
    )


def one(offset_s: float, e2e_s: float, *, stage: int, warmup: bool = False) -> Sample:
    sched = T0 + round(offset_s * 1e9)
    return Sample(
        group="chat",
        client=0,
        worker=0,
        name="chat",
        scheduled_ns=sched,
        sent_ns=sched,
        end_ns=sched + round(e2e_s * 1e9),
        status="ok",
        stage=stage,
        warmup=warmup,
    )


OPEN = {
    "kind": "open",
    "arrival": "constant",
    "stages": [{"rate": 10, "duration_s": 2}, {"rate": 30, "duration_s": 3}],
}


def test_stage_plans_give_set_points_offsets_and_durations() -> None:
    cfg = config({**OPEN, "stage_warmup_s": 0.5}, warmup_s=1)
    assert stage_plans(cfg.groups[0], cfg.warmup_s) == [
        StagePlan(0, 10.0, 1.0, 2.0, 0.5, "req/s"),
        StagePlan(1, 30.0, 3.0, 3.0, 0.5, "req/s"),
    ]
    closed = config(
        {
            "kind": "closed",
            "stages": [{"clients": 1, "duration_s": 1}, {"clients": 4, "duration_s": 1}],
        },
        stop={"duration_s": 3},  # the last stage runs on to the end
    )
    plans = stage_plans(closed.groups[0], closed.warmup_s)
    assert [(p.set_point, p.start_offset_s, p.planned_s, p.set_point_unit) for p in plans] == [
        (1.0, 0.0, 1.0, "clients"),
        (4.0, 1.0, 2.0, "clients"),
    ]
    assert (
        stage_plans(config({"kind": "open", "rate": 5}, stop={"duration_s": 1}).groups[0], 0) == []
    )


def test_stage_warmup_covers_the_start_of_every_stage() -> None:
    cfg = config({**OPEN, "stage_warmup_s": 0.5}, warmup_s=1)
    in_warmup = stage_warmup_of(cfg)
    assert in_warmup is not None
    assert [in_warmup("chat", t) for t in (1.0, 1.49, 1.5, 2.99, 3.0, 3.49, 3.5)] == [
        True, True, False, False, True, True, False,
    ]  # fmt: skip
    assert not in_warmup("other", 1.0)
    assert stage_warmup_of(config(OPEN)) is None


@pytest.mark.parametrize(
    ("load", "stop", "message"),
    [
        ({"kind": "open", "rate": 5, "stage_warmup_s": 1}, {"duration_s": 5}, "needs stages"),
        ({**OPEN, "stage_warmup_s": 2}, None, "shorter than every stage"),
        ({**OPEN, "stage_warmup_s": 0.5}, {"requests": 10}, "stop.requests"),
    ],
)
def test_a_bad_stage_warmup_is_refused_in_one_line(
    load: dict[str, Any], stop: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        config(load, stop)


def test_each_stage_gets_its_own_exact_statistics_beside_the_group() -> None:
    cfg = config({**OPEN, "stage_warmup_s": 0.5})
    samples = [one(0.1 * i, 0.010, stage=0) for i in range(20)]  # 10/s over 2 s
    samples += [one(2 + i / 30, 0.100, stage=1) for i in range(90)]  # 30/s over 3 s
    samples[0].warmup = samples[20].warmup = True
    summary = summarize(
        samples,
        cluster=CLUSTER,
        stage_plans={"chat": stage_plans(cfg.groups[0], cfg.warmup_s)},
    )
    group = summary["groups"]["chat"]
    assert group["requests"] == 108 and group["warmup_excluded"] == 2  # the whole run, unchanged
    stages = group["stages"]
    assert [st["stage"] for st in stages] == [0, 1]
    first, second = stages[0], stages[1]
    assert (first["requests"], first["warmup_excluded"]) == (19, 1)
    assert (second["requests"], second["warmup_excluded"]) == (89, 1)
    assert first["e2e_s"]["p99"] == pytest.approx(0.010) and first["e2e_s"]["count"] == 19
    assert second["e2e_s"]["p50"] == pytest.approx(0.100)
    assert second["request_rate"] == pytest.approx(89 / (88 / 30 + 0.1))
    assert first["set_point"] == 10.0 and second["set_point"] == 30.0
    assert second["start_offset_s"] == 2.0 and second["planned_s"] == 3.0
    assert second["stage_warmup_s"] == 0.5 and second["set_point_unit"] == "req/s"
    assert "stages" not in summarize(samples, cluster=CLUSTER)["groups"]["chat"]


def test_a_stage_without_samples_still_has_its_block() -> None:
    cfg = config(OPEN)
    summary = summarize(
        [one(0.1, 0.01, stage=0)],
        cluster=CLUSTER,
        stage_plans={"chat": stage_plans(cfg.groups[0], cfg.warmup_s)},
    )
    empty = summary["groups"]["chat"]["stages"][1]
    assert empty["requests"] == 0 and empty["e2e_s"]["p50"] is None
    assert empty["set_point"] == 30.0


def test_the_tables_show_a_row_per_stage_under_its_group() -> None:
    cfg = config(OPEN)
    samples = [one(0.1 * i, 0.010, stage=0) for i in range(20)]
    samples += [one(2 + i / 30, 0.100, stage=1) for i in range(90)]
    summary = summarize(
        samples, cluster=CLUSTER, stage_plans={"chat": stage_plans(cfg.groups[0], 0.0)}
    )
    out = io.StringIO()
    render_summary(summary, Console(file=out, width=200))
    text = out.getvalue()
    assert text.count("chat · stage 0 (10 req/s)") == 2  # throughput and latency tables
    assert text.count("chat · stage 1 (30 req/s)") == 2


def test_a_finished_stage_gives_its_memory_back_and_stays_exact() -> None:
    from clientswarm.metrics.columns import SampleColumns
    from clientswarm.metrics.stats import ClusterStatistics
    from clientswarm.metrics.summary import ClusterInfo

    cfg = config(OPEN)
    first = [one(i / 1000, 0.001 * (i % 97), stage=0) for i in range(400)]
    second = [one(2 + i / 1000, 0.002 * (i % 89), stage=1) for i in range(300)]
    with ClusterStatistics(memory_values=1000) as stats:
        stats.add(SampleColumns.from_samples(first))
        cell = stats._cells[("default", "chat", 0, 0)].values["e2e_s"]
        assert cell.in_memory == 400 and not cell.spilled
        stats.add(SampleColumns.from_samples(second))  # stage 1 starts: stage 0 is retired
        assert cell.spilled and cell.in_memory == 0
        summary = stats.summary(
            ClusterInfo(id="c1"), stage_plans={"chat": stage_plans(cfg.groups[0], 0.0)}
        )
    exact = summarize(first + second, cluster=CLUSTER)["groups"]["chat"]
    group = summary.groups["chat"]
    assert group.e2e_s == exact["e2e_s"]  # exact, the mean too (an exact sum rounded once)
    assert group.stages is not None
    alone = summarize(first, cluster=CLUSTER)["total"]["e2e_s"]
    assert group.stages[0].e2e_s["p99"] == alone["p99"]
