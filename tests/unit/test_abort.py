"""The abort rule and thresholds with ``abort``: when a run is given up on, and why."""

from __future__ import annotations

import time
from collections import Counter

from clientswarm.config.checks import AbortConfig
from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.ticks import StageOutcomes
from clientswarm.service.abort import AbortRule, LiveThresholds, RunGuard

REFUSED = "Cannot connect to host 127.0.0.1:9 ssl:default [Connect call failed ('127.0.0.1', 9)]"


def sample(
    kind: str | None = None,
    *,
    stage: int = 0,
    step: bool = False,
    message: str | None = None,
    status: int | None = None,
    e2e_ms: int = 10,
) -> Sample:
    """A successful hello, or one that failed with ``kind``."""
    return Sample(
        group="g",
        client=0,
        worker=0,
        name="hello",
        scheduled_ns=0,
        sent_ns=0,
        end_ns=e2e_ms * 10**6,
        status="ok" if kind is None else "error",
        error_kind=kind,
        error_message=message,
        http_status=status,
        stage=stage,
        step=step,
    )


def batch(*samples: Sample) -> SampleColumns:
    return SampleColumns.from_samples(list(samples))


def refused(n: int, stage: int = 0) -> SampleColumns:
    return batch(*[sample("connection", message=REFUSED, stage=stage) for _ in range(n)])


def http_503(n: int, stage: int = 0) -> SampleColumns:
    return batch(*[sample("http_503", status=503, message="HTTP 503", stage=stage)] * n)


def test_nearly_every_request_failing_to_connect_aborts_once_enough_were_seen() -> None:
    rule = AbortRule(AbortConfig())
    assert rule.observe(refused(9)) is None  # below min_requests
    reason = rule.observe(refused(1))
    assert reason is not None
    assert reason.startswith("aborted: 10 of the last 10 requests failed, most with connection")
    assert REFUSED in reason and "abort: false" in reason


def test_the_reason_names_the_dominant_kind_and_one_of_its_messages() -> None:
    rule = AbortRule(AbortConfig(min_requests=20))
    mixed = [sample("http_500", status=500, message="HTTP 500: boom")] * 6
    mixed += [sample("http_429", status=429, message="HTTP 429: slow down")] * 14
    reason = rule.observe(batch(*mixed))
    assert reason is not None
    assert "20 of the last 20 requests failed, most with http_429 (14): HTTP 429: slow down" in (
        reason
    )
    long = AbortRule(AbortConfig())
    reason = long.observe(batch(*[sample("connection", message="x" * 1000)] * 10))
    assert reason is not None and "x" * 199 + "…" in reason and "x" * 201 not in reason


def test_a_target_that_answers_some_requests_is_not_aborted() -> None:
    rule = AbortRule(AbortConfig())
    for _ in range(50):  # 90 % failures, over and over: under the 95 % of the rule
        assert rule.observe(batch(*[sample("http_500", status=500)] * 9, sample())) is None


def test_the_window_forgets_old_requests() -> None:
    rule = AbortRule(AbortConfig(window=20, min_requests=20))
    assert rule.observe(batch(*[sample()] * 100)) is None
    assert rule.observe(refused(18)) is None  # 2 successes still in the last 20
    assert rule.observe(refused(1)) is not None  # 19 of 20 = 95 %


def test_failures_of_other_kinds_steps_and_cut_off_requests_do_not_count() -> None:
    rule = AbortRule(AbortConfig())
    others = [sample("timeout"), sample("client"), sample("http_404", status=404)] * 10
    assert rule.observe(batch(*others)) is None
    rule = AbortRule(AbortConfig())
    ignored = [sample("connection", step=True), sample("cancelled")] * 20
    assert rule.observe(batch(*ignored)) is None
    assert rule.observe(refused(9)) is None  # the window holds 9 requests, not 49
    with_client = AbortRule(AbortConfig(kinds=["client"]))
    assert with_client.observe(batch(*[sample("client")] * 10)) is not None


def test_abort_false_never_aborts() -> None:
    rule = AbortRule(AbortConfig(enabled=False))
    assert rule.observe(refused(1000)) is None
    guard = RunGuard(validate_config_data(config(abort=False)))
    assert guard.idle


def test_each_stage_is_judged_on_its_own_window() -> None:
    rule = AbortRule(AbortConfig(min_requests=10))
    assert rule.observe(refused(6, stage=0)) is None
    assert rule.observe(refused(6, stage=1)) is None  # 12 failures, but 6 in each stage
    reason = rule.observe(refused(4, stage=1))
    assert reason is not None and "requests of stage 1 failed" in reason


def test_a_saturated_stage_after_an_answered_one_is_a_result_unless_the_target_went_away() -> None:
    rule = AbortRule(AbortConfig())
    assert rule.observe(batch(*[sample(stage=0)] * 50)) is None
    assert rule.observe(http_503(300, stage=1)) is None  # saturated: the sweep goes on
    assert rule.observe(http_503(300, stage=2)) is None
    reason = rule.observe(refused(20, stage=3))  # the target went away
    assert reason is not None and "of stage 3 failed, most with connection" in reason
    # Without an answered stage before it, a stage failing with 503s aborts.
    fresh = AbortRule(AbortConfig())
    assert fresh.observe(http_503(10, stage=0)) is not None


def config(**extra: object) -> dict[str, object]:
    group = {"name": "g", "interaction": {"kind": "hello"}, "stop": {"requests": 1}}
    group.update(extra.pop("group", {}))  # type: ignore[arg-type]
    return {"name": "t", "target": {"url": "http://127.0.0.1:9"}, "groups": [group], **extra}


def test_a_threshold_with_abort_fails_the_run_once_enough_requests_were_measured() -> None:
    parsed = validate_config_data(
        config(
            thresholds=["error_rate < 0.01", {"expr": "error_rate < 0.5", "abort": True}],
            group={"thresholds": [{"expr": "e2e_s.p50 < 0.05", "abort": True, "min_requests": 5}]},
        )
    )
    checks = LiveThresholds(parsed)
    assert [c.scope for c in checks.checks] == ["total", "groups.g"]  # only those with abort
    live = LiveStats("c", groups=["g"])
    live.add([sample(e2e_ms=10)] * 4 + [sample("http_500")] * 4, time.time())
    assert checks.judge(live.snapshot(time.time())["since_start"]) is None  # 4 measured < 5
    live.add([sample(e2e_ms=100)] * 20, time.time())
    reason = checks.judge(live.snapshot(time.time())["since_start"])
    assert reason is not None
    assert reason.startswith(
        "aborted: threshold 'e2e_s.p50 < 0.05' (groups.g) failed on the live statistics after "
        "28 requests: e2e_s.p50 is 0.1"
    )
    live.add([sample("http_500")] * 80, time.time())
    reason = checks.judge(live.snapshot(time.time())["since_start"])
    assert reason is not None and "'error_rate < 0.5' (total)" in reason  # 108 requests


def test_the_guard_gives_its_reason_once() -> None:
    parsed = validate_config_data(config())
    guard = RunGuard(parsed)
    live = LiveStats("c", groups=["g"])
    assert guard.take() is None
    guard.observe(refused(10), live)
    reason = guard.take()
    assert reason is not None and "connection" in reason
    assert guard.take() is None
    guard.observe(refused(10), live)
    assert guard.take() is None


def test_a_large_tick_fills_the_window_in_its_proportions() -> None:
    """A tick of the high-rate path (or several merged) holds more requests than the window:
    1 % failures must read as 1 %, not as its failures entering the window last."""
    rule = AbortRule(AbortConfig())
    healthy = StageOutcomes(
        ok=49_500, failed=Counter({"http_500": 500}), examples={"http_500": "HTTP 500"}
    )
    for _ in range(3):
        assert rule.observe_outcomes({0: healthy}) is None
    failing = StageOutcomes(
        ok=100, failed=Counter({"http_500": 9_900}), examples={"http_500": "HTTP 500"}
    )
    reason = rule.observe_outcomes({0: failing})
    assert reason is not None and "most with http_500" in reason
    # a small tick mixes into the window as before: its failures weigh as many requests
    small = AbortRule(AbortConfig(window=20, min_requests=20))
    assert small.observe_outcomes({0: StageOutcomes(ok=20)}) is None
    assert small.observe_outcomes({0: StageOutcomes(failed=Counter({"connection": 18}))}) is None
    assert small.observe_outcomes({0: StageOutcomes(failed=Counter({"connection": 1}))}) is not None
