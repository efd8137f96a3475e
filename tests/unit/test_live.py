"""Live statistics: windows by receive time, rates, exclusions, agreement with the final stats."""

from __future__ import annotations

import math
import threading

import numpy as np
import orjson
import pytest

from clientswarm.metrics.live import WINDOW_S, LiveStats, Tally
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import summarize

T0 = 1_700_000_000.0  # epoch seconds, like time.time()


def _sample(
    t_s: float,
    *,
    group: str = "chat",
    ttft_s: float | None = 0.1,
    e2e_s: float = 0.5,
    tokens: int = 5,
    status: str = "ok",
    error_kind: str | None = None,
    warmup: bool = False,
    lag_s: float = 0.0,
    step: str | None = None,
) -> Sample:
    """An interaction of ``group``, or (``step`` given) a step of that name inside one."""
    sent = round((t_s + lag_s) * 1e9)
    first = None if ttft_s is None else sent + round(ttft_s * 1e9)
    gaps = [] if ttft_s is None or tokens < 2 else [(e2e_s - ttft_s) / (tokens - 1)] * (tokens - 1)
    ok = status == "ok"
    return Sample(
        group=group,
        client=0,
        worker=0,
        name="chat" if step is None else step,
        scheduled_ns=round(t_s * 1e9),
        sent_ns=sent,
        end_ns=sent + round(e2e_s * 1e9),
        status="ok" if ok else "error",
        first_token_ns=first if ok else None,
        output_tokens=tokens if ok else None,
        input_tokens=3 if ok else None,
        itl_s=gaps if ok else [],
        error_kind=error_kind,
        warmup=warmup,
        step=step is not None,
    )


def test_a_sample_leaves_the_recent_window_after_ten_seconds() -> None:
    live = LiveStats("c1", "demo")
    live.add([_sample(T0 - 0.5)], T0 + 0.2)
    for now, inside in [(T0 + 0.2, 1), (T0 + 5, 1), (T0 + WINDOW_S - 0.01, 1), (T0 + WINDOW_S, 0)]:
        snap = live.snapshot(now)
        assert snap["window_10s"]["total"]["requests"] == inside, now
        assert snap["window_10s"]["groups"]["chat"]["ttft_s"]["count"] == inside
        assert snap["since_start"]["total"]["requests"] == 1
    assert live.snapshot(T0 + 100)["window_10s"]["total"]["e2e_s"]["p50"] is None


def test_rates_over_the_window_and_since_start() -> None:
    live = LiveStats("c1")
    for second in range(20):  # 10 requests a second, received half a second later
        t = T0 + second
        live.add([_sample(t + i / 10, tokens=5) for i in range(10)], t + 1.5)
    now = T0 + 21.0  # window: slots 12..21 s, i.e. what arrived from T0 + 12 on: 90 requests
    snap = live.snapshot(now)
    window, since = snap["window_10s"]["total"], snap["since_start"]["total"]
    assert window["requests"] == 90 and window["duration_s"] == pytest.approx(9.0)
    assert window["request_rate"] == pytest.approx(10.0)
    assert window["output_token_rate"] == pytest.approx(50.0)
    assert since["requests"] == 200 and since["duration_s"] == pytest.approx(21.0)
    assert since["request_rate"] == pytest.approx(200 / 21)
    assert snap["window_10s"]["groups"]["chat"]["request_rate"] == window["request_rate"]


def test_warmup_and_cancelled_are_counted_apart() -> None:
    live = LiveStats("c1")
    batch = [
        _sample(T0, warmup=True, e2e_s=9.0),
        _sample(T0, status="error", error_kind="cancelled", e2e_s=9.0),
        _sample(T0 + 1, e2e_s=0.5),
        _sample(T0 + 1, status="error", error_kind="timeout", ttft_s=None, e2e_s=60),
        _sample(T0 + 1, status="error", error_kind=None, ttft_s=None),
    ]
    live.add(batch, T0 + 2)
    for view in ("window_10s", "since_start"):
        s = live.snapshot(T0 + 2)[view]["total"]
        assert (s["requests"], s["succeeded"], s["failed"]) == (3, 1, 2)
        assert s["errors"] == {"timeout": 1, "unknown": 1}
        assert (s["warmup_excluded"], s["cancelled_excluded"]) == (1, 1)
        assert s["e2e_s"]["count"] == 1 and s["e2e_s"]["max"] == pytest.approx(0.5)
        assert s["schedule_lag_s"]["count"] == 3
        assert s["output_tokens"] == 5 and s["input_tokens"] == 3


def test_only_warmup_does_not_start_the_clock() -> None:
    live = LiveStats("c1")
    live.add([_sample(T0, warmup=True)], T0 + 1)
    since = live.snapshot(T0 + 5)["since_start"]["total"]
    assert since["requests"] == 0 and since["duration_s"] == 0 and since["request_rate"] == 0


def test_since_start_agrees_with_the_exact_final_statistics() -> None:
    rng = np.random.default_rng(42)
    samples = []
    for i in range(3000):
        ok = rng.random() > 0.05
        samples.append(
            _sample(
                T0 + i * 0.01,
                group="chat" if i % 3 else "code",
                ttft_s=float(rng.lognormal(math.log(0.2), 0.5)),
                e2e_s=float(rng.lognormal(math.log(3.0), 0.3)) + 1.0,
                tokens=int(rng.integers(20, 200)),
                status="ok" if ok else "error",
                error_kind=None if ok else str(rng.choice(["timeout", "http_500"])),
                warmup=i < 100,
                lag_s=float(rng.exponential(0.002)),
            )
        )
    live = LiveStats("c1", groups=["code", "chat"])
    for start in range(0, len(samples), 250):
        live.add(samples[start : start + 250], T0 + 40)
    final = summarize(samples, cluster={"id": "c1"})
    snap = live.snapshot(T0 + 40)["since_start"]
    assert list(snap["groups"]) == ["code", "chat"]
    for got, want in [(snap["total"], final["total"])] + [
        (snap["groups"][g], final["groups"][g]) for g in ("chat", "code")
    ]:
        for key in ("requests", "succeeded", "failed", "errors", "output_tokens", "input_tokens"):
            assert got[key] == want[key], key
        for metric in ("ttft_s", "itl_s", "tpot_s", "e2e_s", "schedule_lag_s"):
            g, w = got[metric], want[metric]
            assert g["count"] == w["count"], metric
            assert (g["min"], g["max"]) == pytest.approx((w["min"], w["max"]))
            assert g["mean"] == pytest.approx(w["mean"], rel=1e-9)
            for p in ("p50", "p90", "p95", "p99"):  # exact ones interpolate: allow 2 %
                assert g[p] == pytest.approx(w[p], rel=0.02), (metric, p)


def test_snapshot_shape_gauges_and_empty_groups() -> None:
    live = LiveStats("c1", "demo", groups=["chat", "idle"], status="running")
    live.add([_sample(T0)], T0 + 1)
    live.set_workers({"running": 3, "lost": 1})
    live.set_active_clients("chat", 8)
    snap = orjson.loads(orjson.dumps(live.snapshot(T0 + 1)))  # JSON-ready: no NaN, no inf
    assert snap["cluster"] == "c1" and snap["cluster_name"] == "demo"
    assert snap["status"] == "running"
    assert snap["workers"] == {"running": 3, "lost": 1}
    assert snap["active_clients"] == {"chat": 8}
    idle = snap["since_start"]["groups"]["idle"]
    assert idle["requests"] == 0 and idle["request_rate"] == 0.0
    assert idle["ttft_s"] == {
        "count": 0, "mean": None, "min": None, "p50": None, "p90": None, "p95": None,
        "p99": None, "max": None,
    }  # fmt: skip
    for key in ("count", "mean", "p50", "p90", "p99", "max"):
        assert key in snap["window_10s"]["total"]["ttft_s"]


def test_total_is_a_merge_not_an_average_of_groups() -> None:
    live = LiveStats("c1")
    live.add([_sample(T0, group="fast", e2e_s=0.01, ttft_s=0.005) for _ in range(90)], T0 + 1)
    live.add([_sample(T0, group="slow", e2e_s=2.0, ttft_s=1.0) for _ in range(10)], T0 + 1)
    total = live.snapshot(T0 + 1)["since_start"]["total"]["e2e_s"]
    assert total["p50"] == pytest.approx(0.01, rel=0.01)
    assert total["p99"] == pytest.approx(2.0, rel=0.01)


def test_late_batches_join_the_window_without_erasing_newer_slots() -> None:
    live = LiveStats("c1")
    live.add([_sample(T0)], T0 + 5)
    live.add([_sample(T0)], T0 + 15)  # reuses the ring position of T0 + 5: replaces it
    live.add([_sample(T0)], T0 + 5.5)  # late (clock stepped back), same position: kept
    assert live.snapshot(T0 + 15)["window_10s"]["total"]["requests"] == 2
    assert live.snapshot(T0 + 15)["since_start"]["total"]["requests"] == 3


def test_concurrent_adds_are_all_counted() -> None:
    live = LiveStats("c1")

    def feed() -> None:
        for i in range(50):
            live.add([_sample(T0 + i * 0.1) for _ in range(10)], T0 + i * 0.1)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert live.snapshot(T0 + 5)["since_start"]["total"]["requests"] == 2000


def test_tally_merge_and_copy() -> None:
    a = Tally.from_samples([_sample(T0), _sample(T0, status="error", error_kind="timeout")])
    b = a.copy().merge(a)
    assert (b.requests, b.failed, b.errors["timeout"]) == (4, 2, 2)
    assert b.hist["e2e_s"].count == 2 and a.hist["e2e_s"].count == 1
    b.clear()
    assert b.requests == 0 and b.hist["e2e_s"].count == 0 and math.isinf(b.start_s)


def test_tpot_needs_two_tokens_and_itl_needs_gaps() -> None:
    live = LiveStats("c1")
    live.add([_sample(T0, tokens=1), _sample(T0, tokens=3), _sample(T0, ttft_s=None)], T0 + 1)
    s = live.snapshot(T0 + 1)["since_start"]["total"]
    assert (s["ttft_s"]["count"], s["tpot_s"]["count"], s["itl_s"]["count"]) == (2, 1, 2)
    assert s["tpot_s"]["p50"] == pytest.approx(0.2, rel=0.01)  # (0.5 - 0.1) / (3 - 1)


def _journeys(t_s: float) -> list[Sample]:
    """A rag interaction: a retrieve span, a chat call (the second one failed), the whole."""
    return [
        _sample(t_s, group="rag", step="retrieve", ttft_s=None, e2e_s=0.04),
        _sample(t_s, group="rag", step="chat", e2e_s=0.5, tokens=5),
        _sample(t_s, group="rag", e2e_s=0.6, ttft_s=None, tokens=0),
        _sample(t_s + 1, group="rag", step="retrieve", ttft_s=None, e2e_s=0.06),
        _sample(t_s + 1, group="rag", step="chat", status="error", error_kind="http_503"),
        _sample(t_s + 1, group="rag", status="error", error_kind="client"),
        _sample(t_s + 1, group="rag", step="chat", warmup=True),
    ]


def test_steps_are_not_requests_of_their_group() -> None:
    live = LiveStats("c1", groups=["rag", "idle"])
    samples = [*_journeys(T0), _sample(T0)]
    live.add(samples, T0 + 2)
    snap = live.snapshot(T0 + 2)
    final = summarize(samples, cluster={"id": "c1"}, group_order=["rag", "idle"])
    for view in ("since_start", "window_10s"):
        groups, total = snap[view]["groups"], snap[view]["total"]
        assert (groups["rag"]["requests"], groups["rag"]["failed"]) == (2, 1), view
        assert groups["rag"]["errors"] == {"client": 1}
        assert total["requests"] == final["total"]["requests"] == 3
        assert "steps" not in groups["chat"] and "steps" not in groups["idle"]
        assert "steps" not in total
        steps = groups["rag"]["steps"]
        assert list(steps) == list(final["groups"]["rag"]["steps"]) == ["retrieve", "chat"]
        for name, want in final["groups"]["rag"]["steps"].items():
            got = steps[name]
            for key in ("requests", "succeeded", "failed", "errors", "output_tokens"):
                assert got[key] == want[key], (view, name, key)
            assert got["warmup_excluded"] == want["warmup_excluded"]
            assert got["e2e_s"]["count"] == want["e2e_s"]["count"]
            assert got["e2e_s"]["mean"] == pytest.approx(want["e2e_s"]["mean"])
    assert snap["since_start"]["groups"]["rag"]["steps"]["chat"]["warmup_excluded"] == 1
    since = live.steps_since_start()
    assert (since["rag"]["chat"].requests, since["rag"]["retrieve"].requests) == (2, 2)
    assert live.since_start()["rag"].requests == 2
    # the steps leave the recent window with their slot, like the groups
    later = live.snapshot(T0 + 2 + WINDOW_S)
    assert "steps" in later["since_start"]["groups"]["rag"]
    assert later["window_10s"]["groups"]["rag"]["steps"]["chat"]["requests"] == 0


def test_a_batch_of_steps_only_shows_the_group_without_requests() -> None:
    live = LiveStats("c1")
    live.add([_sample(T0, group="rag", step="retrieve")], T0 + 1)
    rag = live.snapshot(T0 + 1)["since_start"]["groups"]["rag"]
    assert rag["requests"] == 0 and rag["duration_s"] == 0.0
    assert rag["steps"]["retrieve"]["requests"] == 1
    assert rag["steps"]["retrieve"]["request_rate"] == pytest.approx(1.0)  # over 1 s


def test_prometheus_counts_steps_in_series_of_their_own() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from clientswarm.service.prometheus import LiveRegistry, render_metrics

    registry = LiveRegistry()
    live = registry.get_or_create("c1", "demo", groups=["rag"])
    live.add(_journeys(T0), T0 + 2)
    families = {
        f.name: f for f in text_string_to_metric_families(render_metrics(registry).decode())
    }

    def values(name: str, **labels: str) -> dict[tuple[str, ...], float]:
        shown = [s for s in families[name].samples if s.name == name + "_total"]
        assert {s.labels["target"] for s in shown} == {"default"}  # the samples' target
        return {
            tuple(s.labels[k] for k in sorted(s.labels) if k not in ("cluster", "cluster_name")
                  and k != "target"): s.value
            for s in shown
            if all(s.labels[k] == v for k, v in labels.items())
        }  # fmt: skip

    assert values("clientswarm_requests") == {("rag", "ok"): 1.0, ("rag", "error"): 1.0}
    assert values("clientswarm_errors") == {("rag", "client"): 1.0}
    assert values("clientswarm_step_requests", outcome="ok") == {
        ("rag", "ok", "retrieve"): 2.0,
        ("rag", "ok", "chat"): 1.0,
    }
    assert values("clientswarm_step_errors") == {("rag", "http_503", "chat"): 1.0}
    assert values("clientswarm_step_excluded_requests", reason="warmup") == {
        ("rag", "warmup", "retrieve"): 0.0,
        ("rag", "warmup", "chat"): 1.0,
    }
    e2e = families["clientswarm_step_e2e_seconds"].samples
    counts = {s.labels["step"]: s.value for s in e2e if s.name.endswith("_count")}
    assert counts == {"retrieve": 2.0, "chat": 1.0}
    assert "clientswarm_step_schedule_lag_seconds" not in families
    group_e2e = families["clientswarm_e2e_seconds"].samples
    assert [s.value for s in group_e2e if s.name.endswith("_count")] == [1.0]


def test_one_derivation_of_a_batch_feeds_the_live_and_the_exact_statistics() -> None:
    from clientswarm.config.models import SLOConfig
    from clientswarm.metrics.columns import SampleColumns
    from clientswarm.metrics.derive import measured_parts
    from clientswarm.metrics.stats import ClusterStatistics
    from clientswarm.metrics.summary import ClusterInfo

    batch = [_sample(T0 + i / 10, ttft_s=0.05 * (1 + i % 5)) for i in range(40)]
    batch += [_sample(T0, status="error", error_kind="timeout"), _sample(T0, step="retrieve")]
    cols = SampleColumns.from_samples(batch)
    slo = SLOConfig(ttft_s=0.15)
    parts = measured_parts(cols, slo=slo)  # what the service does with each committed batch
    assert set(parts) == {("default", "chat", None, 0, 0), ("default", "chat", "retrieve", None, 0)}
    live, exact = LiveStats("c1"), ClusterStatistics(slo=slo)
    live.add_parts(parts, T0 + 5)
    exact.add_parts(parts, len(cols))
    tally, final = live.since_start()["chat"], exact.summary(ClusterInfo(id="c1")).groups["chat"]
    assert exact.samples == 42
    assert (tally.requests, tally.succeeded, dict(tally.errors)) == (41, 40, {"timeout": 1})
    assert (final.requests, final.succeeded, final.errors) == (41, 40, {"timeout": 1})
    assert tally.hist["ttft_s"].count == final.ttft_s["count"] == 40
    assert final.goodput == 24  # ttft .05, .10 and .15 of every five meet the objective
    assert final.steps is not None and final.steps["retrieve"].requests == 1
    assert live.steps_since_start()["chat"]["retrieve"].requests == 1
    exact.close()


def test_recent_adds_up_the_window_for_a_progress_display() -> None:
    live = LiveStats("c1", "demo", groups=["chat", "other"])
    start = T0 - 20.0  # started long before: rates are over the window's span
    live.add([_sample(T0 - 1, warmup=True, ttft_s=9.0), _sample(T0 - 1, warmup=True)], T0 - 15)
    live.add([_sample(T0, ttft_s=0.1), _sample(T0, ttft_s=0.3)], T0 + 0.5)
    live.add([_sample(T0, group="other", ttft_s=0.2, status="error")], T0 + 0.5)
    recent = live.recent(T0 + 0.5, start)
    span_s = T0 + 0.5 - (math.floor(T0) - 9)
    assert recent.warmup == 2  # since the start, though out of the window
    assert recent.request_rate == pytest.approx(3 / span_s)
    assert recent.output_token_rate == pytest.approx(10 / span_s)
    assert recent.ttft_p50_s == pytest.approx(0.1, rel=0.01)  # the failed one has none
    # Just started: the rate is over the time since the start, not over the whole window.
    fresh = LiveStats("c2")
    fresh.add([_sample(T0, warmup=True)] * 4, T0 + 1.5)
    early = fresh.recent(T0 + 2.0, T0)
    assert early.request_rate == pytest.approx(2.0)
    assert early.ttft_p50_s is None and early.warmup == 4
    assert LiveStats("c3").recent(T0, T0).request_rate == 0.0
