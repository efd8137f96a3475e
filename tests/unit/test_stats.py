"""Exact statistics against values computed by hand from small, chosen sample sets."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from clientswarm.config.models import SLOConfig
from clientswarm.metrics.dist import DIST_KEYS, distribution
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import DEFAULT_LAG_BOUND_S, summarize

T0 = 1_700_000_000_000_000_000  # an epoch-ns origin, as a worker's clock gives
CLUSTER = {"id": "c1", "name": "demo", "status": "finished"}


def at(ms: float) -> int:
    """Epoch ns of ``ms`` milliseconds after T0."""
    return T0 + round(ms * 1_000_000)


def sample(
    group: str,
    sched: float,
    sent: float,
    end: float,
    *,
    first: float | None = None,
    out: int | None = None,
    inp: int | None = None,
    itl: list[float] | None = None,
    error: str | None = None,
    warmup: bool = False,
) -> Sample:
    return Sample(
        group=group,
        client=0,
        worker=0,
        name=group,
        scheduled_ns=at(sched),
        sent_ns=at(sent),
        end_ns=at(end),
        status="error" if error else "ok",
        first_token_ns=None if first is None else at(first),
        output_tokens=out,
        input_tokens=inp,
        itl_s=itl or [],
        error_kind=error,
        warmup=warmup,
    )


def chat() -> list[Sample]:
    """Five streamed chat samples; per-sample values in the comments (seconds)."""
    return [
        # ttft .1, e2e 1.0, tpot .9/9 = .1, mean ITL .1, lag 0
        sample("chat", 0, 0, 1000, first=100, out=10, inp=20, itl=[0.1, 0.1]),
        # ttft .2, e2e 1.2, tpot 1.0/5 = .2, mean ITL .2, lag .01
        sample("chat", 100, 110, 1310, first=310, out=6, inp=20, itl=[0.2, 0.2]),
        # ttft .3, e2e 2.0, tpot 1.7/17 = .1, mean ITL .2, lag 0
        sample("chat", 200, 200, 2200, first=500, out=18, inp=20, itl=[0.1, 0.3]),
        # ttft .4, e2e 1.0, one token: no TPOT, no gaps, lag .03
        sample("chat", 300, 330, 1330, first=730, out=1, inp=20),
        # failed: lag 0
        sample("chat", 400, 400, 900, error="timeout"),
    ]


def embed() -> list[Sample]:
    """Three non-streamed samples: no first token, no TPOT, no ITL."""
    return [
        sample("embed", 1000, 1000, 1050, inp=8),  # e2e .05
        sample("embed", 1100, 1120, 1200, error="http_500"),  # lag .02
        sample("embed", 1200, 1200, 1240, inp=8),  # e2e .04
    ]


def warmup() -> list[Sample]:
    """Would widen the duration and add a request if it were not excluded."""
    return [sample("chat", -500, -500, 5000, first=-400, out=50, itl=[9.0], warmup=True)]


def run(samples: list[Sample], **kwargs: Any) -> dict[str, Any]:
    return summarize(samples, cluster=CLUSTER, **kwargs)


def dist(count: int, *values: float) -> dict[str, Any]:
    """A Dist from its count and (mean, min, p50, p90, p95, p99, max)."""
    return {"count": count, **dict(zip(DIST_KEYS[1:], values, strict=True))}


def assert_dist(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert list(actual) == list(DIST_KEYS)
    assert actual["count"] == expected["count"]
    for key in DIST_KEYS[1:]:
        assert actual[key] == pytest.approx(expected[key], abs=1e-12), key


def test_group_counts_rates_and_duration() -> None:
    stats = run(chat() + warmup())["groups"]["chat"]
    assert stats["requests"] == 5
    assert stats["succeeded"] == 4
    assert stats["failed"] == 1
    assert stats["errors"] == {"timeout": 1}
    assert stats["warmup_excluded"] == 1
    assert stats["duration_s"] == pytest.approx(2.2)  # scheduled 0 ms .. end 2200 ms
    assert stats["request_rate"] == pytest.approx(5 / 2.2)
    assert stats["succeeded_rate"] == pytest.approx(4 / 2.2)
    assert stats["output_tokens"] == 10 + 6 + 18 + 1
    assert stats["input_tokens"] == 80
    assert stats["output_token_rate"] == pytest.approx(35 / 2.2)
    assert stats["send_rate"] == pytest.approx(4 / 0.4)  # 5 sends from 0 to 400 ms
    assert stats["error_rate"] == pytest.approx(0.2)
    assert stats["goodput"] == 4  # no SLO: every success counts
    assert stats["goodput_rate"] == pytest.approx(4 / 2.2)


def test_group_distributions() -> None:
    stats = run(chat() + warmup())["groups"]["chat"]
    # ttft [.1 .2 .3 .4]: p90 at index 2.7 -> .3 + .7 * .1
    assert_dist(stats["ttft_s"], dist(4, 0.25, 0.1, 0.25, 0.37, 0.385, 0.397, 0.4))
    # itl sorted [.1 .1 .1 .2 .2 .3]: p90 at index 4.5 -> .25
    assert_dist(stats["itl_s"], dist(6, 1.0 / 6, 0.1, 0.15, 0.25, 0.275, 0.295, 0.3))
    # tpot [.1 .2 .1] (the one-token answer has none): p90 at index 1.8 -> .18
    assert_dist(stats["tpot_s"], dist(3, 0.4 / 3, 0.1, 0.1, 0.18, 0.19, 0.198, 0.2))
    # e2e of successes [1.0 1.0 1.2 2.0]: p90 at index 2.7 -> 1.2 + .7 * .8
    assert_dist(stats["e2e_s"], dist(4, 1.3, 1.0, 1.1, 1.76, 1.88, 1.976, 2.0))
    # lag of every measured sample [0 0 0 .01 .03]: p90 at index 3.6 -> .022
    assert_dist(stats["schedule_lag_s"], dist(5, 0.008, 0.0, 0.0, 0.022, 0.026, 0.0292, 0.03))
    # end - scheduled of successes [1.0 1.21 2.0 1.03]
    assert stats["e2e_from_schedule_s"]["mean"] == pytest.approx((1.0 + 1.21 + 2.0 + 1.03) / 4)


def test_non_stream_samples_have_no_ttft_tpot_itl() -> None:
    stats = run(embed())["groups"]["embed"]
    assert (stats["requests"], stats["succeeded"], stats["failed"]) == (3, 2, 1)
    assert stats["errors"] == {"http_500": 1}
    assert stats["duration_s"] == pytest.approx(0.24)
    assert stats["request_rate"] == pytest.approx(12.5)
    for key in ("ttft_s", "tpot_s", "itl_s"):
        assert stats[key] == {k: (0 if k == "count" else None) for k in DIST_KEYS}
    assert_dist(stats["e2e_s"], dist(2, 0.045, 0.04, 0.045, 0.049, 0.0495, 0.0499, 0.05))
    assert stats["output_tokens"] == 0
    assert stats["output_token_rate"] == 0.0
    assert stats["input_tokens"] == 16


def test_total_spans_all_groups() -> None:
    summary = run(embed() + chat() + warmup())
    assert list(summary["groups"]) == ["embed", "chat"]  # order of first appearance
    total = summary["total"]
    assert (total["requests"], total["succeeded"], total["failed"]) == (8, 6, 2)
    assert total["errors"] == {"http_500": 1, "timeout": 1}
    assert total["warmup_excluded"] == 1
    assert total["duration_s"] == pytest.approx(2.2)
    assert total["request_rate"] == pytest.approx(8 / 2.2)
    assert_dist(total["ttft_s"], summary["groups"]["chat"]["ttft_s"])
    # e2e of all successes sorted [.04 .05 1.0 1.0 1.2 2.0]: p50 at index 2.5 -> 1.0
    assert_dist(total["e2e_s"], dist(6, 5.29 / 6, 0.04, 1.0, 1.6, 1.8, 1.96, 2.0))
    assert total["schedule_lag_s"]["count"] == 8
    assert summary["cluster"] == {**CLUSTER, "reason": None, "started_at": None, "ended_at": None}
    assert summary["slo"] is None
    assert summary["lag_bound_s"] == DEFAULT_LAG_BOUND_S
    assert summary["trustworthy"] is True
    assert summary["warnings"] == []


@pytest.mark.parametrize(
    ("slo", "chat_good", "embed_good"),
    [
        # Token objectives do not bind embeddings (no output tokens): E2E alone judges them.
        (SLOConfig(ttft_s=0.25), 2, 2),  # 1, 2; non-stream chat cannot meet a TTFT SLO
        (SLOConfig(tpot_s=0.15), 3, 2),  # 1, 3 and the one-token answer 4
        (SLOConfig(ttft_s=0.25, tpot_s=0.15), 1, 2),  # only 1
        (SLOConfig(itl_s=0.15), 2, 2),  # 1 (mean .1) and 4 (no gaps)
        (SLOConfig(e2e_s=1.1), 2, 2),  # 1 and 4 (1.0 s); both embed successes
        (SLOConfig(e2e_s=1.0), 2, 2),  # a value equal to the objective meets it
        (SLOConfig(e2e_s=0.045), 0, 1),  # only the 0.04 s embed
        (SLOConfig(), 4, 2),  # no objective: every success
    ],
)
def test_goodput_with_slo(slo: SLOConfig, chat_good: int, embed_good: int) -> None:
    summary = run(chat() + embed(), slo=slo)
    chat_stats, embed_stats = summary["groups"]["chat"], summary["groups"]["embed"]
    assert chat_stats["goodput"] == chat_good
    assert chat_stats["goodput_rate"] == pytest.approx(chat_good / 2.2)
    assert embed_stats["goodput"] == embed_good
    assert embed_stats["goodput_rate"] == pytest.approx(embed_good / 0.24)
    assert summary["total"]["goodput"] == chat_good + embed_good


def test_failed_samples_never_count_towards_goodput() -> None:
    stats = run([sample("g", 0, 0, 10, first=1, out=5, error="stream_error")])["total"]
    assert stats["goodput"] == 0
    assert stats["ttft_s"]["count"] == 0
    assert stats["errors"] == {"stream_error": 1}


def test_all_failed_group_is_reported_with_a_note() -> None:
    bad = [sample("bad", 0, 0, 100, error="connection"), sample("bad", 50, 50, 60, error=None)]
    bad[1].status = "error"  # an error without a kind
    summary = run(chat() + bad)
    stats = summary["groups"]["bad"]
    assert (stats["requests"], stats["succeeded"], stats["failed"]) == (2, 0, 2)
    assert stats["errors"] == {"connection": 1, "unknown": 1}
    assert stats["e2e_s"]["count"] == 0
    assert stats["duration_s"] == pytest.approx(0.1)
    assert stats["request_rate"] == pytest.approx(20.0)
    assert any("'bad'" in w and "all 2 requests failed" in w for w in summary["warnings"])
    assert summary["trustworthy"] is True  # a failing target is not a measuring problem


def test_group_order_and_empty_groups() -> None:
    summary = run(chat() + embed() + warmup(), group_order=["idle", "embed", "chat"])
    assert list(summary["groups"]) == ["idle", "embed", "chat"]
    idle = summary["groups"]["idle"]
    assert idle["requests"] == 0
    assert idle["duration_s"] == 0.0
    assert idle["request_rate"] == 0.0
    assert idle["send_rate"] is None
    assert idle["ttft_s"]["count"] == 0
    assert any("'idle'" in w and "no measured samples" in w for w in summary["warnings"])


def test_only_warmup_samples() -> None:
    summary = run(warmup())
    assert summary["groups"]["chat"]["requests"] == 0
    assert summary["groups"]["chat"]["warmup_excluded"] == 1
    assert summary["total"]["requests"] == 0
    assert summary["total"]["e2e_s"]["mean"] is None


def test_no_samples_at_all() -> None:
    summary = run([])
    assert summary["groups"] == {}
    assert summary["total"]["requests"] == 0
    assert summary["trustworthy"] is True


def test_schedule_lag_warning_when_the_generator_falls_behind() -> None:
    late = [sample("late", i * 10, i * 10 + 200, i * 10 + 300) for i in range(10)]
    summary = run(chat() + late)
    assert summary["trustworthy"] is False
    [warning] = summary["warnings"]
    assert "'late'" in warning
    assert "200.0 ms" in warning
    assert "fewer clients per worker" in warning
    assert "lower the rate" in warning
    # the same lag under a looser bound is fine
    assert run(chat() + late, lag_bound_s=0.5)["trustworthy"] is True


def test_no_lag_warning_for_small_lag() -> None:
    summary = run(chat())  # p99 lag 29.2 ms
    assert summary["groups"]["chat"]["schedule_lag_s"]["p99"] < DEFAULT_LAG_BOUND_S
    assert summary["trustworthy"] is True
    assert summary["warnings"] == []
    assert run(chat(), lag_bound_s=0.01)["trustworthy"] is False


def test_extra_warnings_make_the_run_untrustworthy() -> None:
    summary = run(chat(), extra_warnings=["worker 3: event-loop lag p99 120 ms"])
    assert summary["warnings"] == ["worker 3: event-loop lag p99 120 ms"]
    assert summary["trustworthy"] is False


def test_matches_sample_properties_on_random_samples() -> None:
    """Vectorised values equal the per-sample definitions in Sample, on messy data."""
    rng = random.Random(7)
    samples = []
    for _ in range(500):
        sent = rng.uniform(0, 10_000)
        first = sent + rng.uniform(1, 500) if rng.random() < 0.8 else None
        end = (first or sent) + rng.uniform(1, 3000)
        samples.append(
            sample(
                rng.choice(["a", "b"]),
                sent - rng.uniform(0, 5),
                sent,
                end,
                first=first,
                out=rng.choice([None, 0, 1, 2, 50]),
                itl=[rng.uniform(0, 0.1) for _ in range(rng.randrange(4))],
                error=rng.choice([None, None, None, "timeout"]),
                warmup=rng.random() < 0.05,
            )
        )
    total = run(samples)["total"]
    measured = [s for s in samples if not s.warmup]
    ok = [s for s in measured if s.ok]
    expected: dict[str, list[float]] = {
        "ttft_s": [t for s in ok if (t := s.ttft_s) is not None],
        "tpot_s": [t for s in ok if (t := s.tpot_s) is not None],
        "e2e_s": [s.e2e_s for s in ok],
        "itl_s": [x for s in ok for x in s.itl_s],
        "schedule_lag_s": [s.schedule_lag_s for s in measured],
    }
    for key, values in expected.items():
        assert total[key]["count"] == len(values)
        assert total[key]["p90"] == pytest.approx(float(np.percentile(values, 90)), rel=1e-12)
        assert total[key]["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12)


def test_distribution_ignores_nan_and_handles_empty() -> None:
    assert distribution([float("nan"), 1.0, 3.0]) == dist(2, 2.0, 1.0, 2.0, 2.8, 2.9, 2.98, 3.0)
    assert distribution([])["count"] == 0
    assert distribution([])["p99"] is None


def test_requests_cut_off_by_a_stop_are_excluded_not_failures() -> None:
    samples = [
        *chat(),
        sample("chat", 1500, 1500, 9000, first=1600, error="cancelled"),
        sample("chat", 1600, 1600, 9500, error="cancelled", warmup=True),
    ]
    with_cut = run(samples)["groups"]["chat"]
    without = run(chat())["groups"]["chat"]
    assert with_cut["cancelled_excluded"] == 1
    assert with_cut["warmup_excluded"] == 1
    assert "cancelled" not in with_cut["errors"]
    for key in ("requests", "failed", "duration_s", "e2e_s"):
        assert with_cut[key] == without[key]


# steps of user-defined interactions


def as_step(s: Sample, name: str, group: str = "rag") -> Sample:
    """``s`` as a step named ``name`` inside an interaction of ``group``."""
    s.group, s.name, s.step = group, name, True
    return s


def journeys() -> list[Sample]:
    """Two runs of a ``rag`` interaction, each a retrieve span then a chat call, in record order.

    Steps end before their interaction, so they are recorded first; the second run's chat
    failed, which failed the interaction too.
    """
    return [
        as_step(sample("x", 0, 0, 40), "retrieve"),
        as_step(sample("x", 40, 40, 1040, first=140, out=10, itl=[0.1, 0.1]), "chat"),
        sample("rag", 0, 0, 1050),
        as_step(sample("x", 500, 500, 580), "retrieve"),
        as_step(sample("x", 580, 580, 900, error="http_503"), "chat"),
        sample("rag", 500, 500, 910, error="client"),
    ]


def test_group_stats_count_interactions_and_steps_are_summarised_by_name() -> None:
    samples = journeys() + chat()
    summary = run(samples)
    rag = summary["groups"]["rag"]
    assert list(summary["groups"]) == ["rag", "chat"]
    assert (rag["requests"], rag["succeeded"], rag["failed"]) == (2, 1, 1)
    assert rag["errors"] == {"client": 1}
    assert rag["output_tokens"] == 0
    # the group's Stats are those of its interactions alone
    interactions = [s for s in samples if not s.step]
    without_steps = run(interactions)
    assert {k: v for k, v in rag.items() if k != "steps"} == without_steps["groups"]["rag"]
    assert summary["total"] == without_steps["total"]
    assert summary["total"]["requests"] == 2 + 5

    steps = rag["steps"]
    assert list(steps) == ["retrieve", "chat"]  # order of first appearance
    retrieve, llm = steps["retrieve"], steps["chat"]
    assert (retrieve["requests"], retrieve["succeeded"]) == (2, 2)
    assert_dist(retrieve["e2e_s"], dist(2, 0.06, 0.04, 0.06, 0.076, 0.078, 0.0796, 0.08))
    assert (llm["requests"], llm["succeeded"], llm["failed"]) == (2, 1, 1)
    assert llm["errors"] == {"http_503": 1}
    assert llm["output_tokens"] == 10
    assert llm["ttft_s"]["mean"] == pytest.approx(0.1)
    assert llm["tpot_s"]["mean"] == pytest.approx(0.1)
    assert llm["itl_s"]["count"] == 2
    # a step's Stats have the shape of a group's, computed the same way
    alone = [s for s in samples if s.step and s.name == "chat"]
    for s in alone:
        s.step = False
    as_group = run(alone)["groups"]["rag"]
    assert as_group.pop("target") == "default"  # a group names its target, a step does not
    assert llm == as_group
    assert "steps" not in summary["groups"]["chat"]  # a group without steps has no key
    assert "steps" not in summary["total"]


def test_steps_take_the_same_exclusions_and_slo() -> None:
    samples = [
        *journeys(),
        as_step(sample("x", -500, -500, -300, first=-450, out=3, warmup=True), "chat"),
        as_step(sample("x", 1000, 1000, 9000, first=1100, error="cancelled"), "chat"),
    ]
    summary = run(samples, slo=SLOConfig(ttft_s=0.05))
    rag = summary["groups"]["rag"]
    llm = rag["steps"]["chat"]
    assert (llm["requests"], llm["warmup_excluded"], llm["cancelled_excluded"]) == (2, 1, 1)
    assert (rag["warmup_excluded"], rag["cancelled_excluded"]) == (0, 0)
    assert llm["goodput"] == 0  # TTFT of 100 ms misses the 50 ms objective
    assert rag["steps"]["retrieve"]["goodput"] == 2  # tokenless: E2E alone judges it
    assert rag["goodput"] == 1


def test_a_group_whose_steps_come_first_keeps_its_place_and_empty_groups_have_no_steps() -> None:
    steps_only = [as_step(sample("x", 0, 0, 10), "retrieve", group="early")]
    summary = run(steps_only + chat(), group_order=["idle"])
    assert list(summary["groups"]) == ["idle", "early", "chat"]
    early = summary["groups"]["early"]
    assert early["requests"] == 0
    assert early["steps"]["retrieve"]["requests"] == 1
    assert "steps" not in summary["groups"]["idle"]
    assert summary["total"]["requests"] == 5


def test_values_kept_in_a_file_give_the_same_statistics() -> None:
    from clientswarm.metrics.columns import SampleColumns
    from clientswarm.metrics.stats import ClusterStatistics
    from clientswarm.metrics.summary import ClusterInfo

    rng = random.Random(4)
    samples = [
        sample(
            rng.choice(["chat", "code"]),
            i,
            i + rng.random(),
            i + 500 + rng.random() * 100,
            first=i + 50 + rng.random() * 20,
            out=8,
            itl=[rng.random() / 100 for _ in range(7)],
        )
        for i in range(300)
    ]
    summaries = []
    for memory_values in (1 << 18, 0):  # all in memory; every value in a file at once
        with ClusterStatistics(group_order=["chat", "code"], memory_values=memory_values) as st:
            for start in range(0, 300, 70):
                st.add(SampleColumns.from_samples(samples[start : start + 70]))
            summaries.append(st.summary(ClusterInfo(id="c1")).document())
    in_memory, in_files = summaries
    for scope in ("total", "chat", "code"):
        a = in_memory["total"] if scope == "total" else in_memory["groups"][scope]
        b = in_files["total"] if scope == "total" else in_files["groups"][scope]
        for metric in ("ttft_s", "itl_s", "tpot_s", "e2e_s", "schedule_lag_s"):
            assert a[metric] == b[metric], (scope, metric)  # the means too, to the bit
        assert a["requests"] == b["requests"] and a["goodput"] == b["goodput"]
