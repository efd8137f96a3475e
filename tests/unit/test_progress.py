"""The live progress display of ``run``, ``submit --wait`` and ``calibrate``: what it says, that
it fits 80 columns on a terminal and 120 in a log, and that both sources (the in-process
service's snapshot, the service's progress stream) feed it the same numbers."""

from __future__ import annotations

import io
import math
from types import MappingProxyType

import pytest
from rich.cells import cell_len
from rich.console import Console

from clientswarm.config.loader import validate_config_data
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import Sample
from clientswarm.reports.progress import (
    PLAIN_WIDTH,
    ProgressDisplay,
    ProgressLine,
    plain_lines,
    progress_text,
)
from clientswarm.run.progress import progress_line
from clientswarm.service.lifecycle import ClusterStatus, WorkerState
from clientswarm.service.progress_events import Plan, plan_of, progress_of_event
from clientswarm.service.snapshot import ClusterSnapshot, WorkerSnapshot
from clientswarm.service.views import progress_view
from clientswarm.store import ClusterRecord

T0 = 1_700_000_000.0
LAG_WARNING = (
    "worker 3: event-loop lag p99 52 ms is over the 20 ms bound: its timings are late; "
    "run more workers or fewer clients per worker"
)

WARMUP = ProgressLine(
    "running", 3.2, 70.0, 0, 0, 8, 2, 2, 0,
    warmup_s=10.0, warmup_done=123, request_rate=40.0, output_token_rate=0.0, ttft_p50_s=0.04,
)  # fmt: skip
MEASURING = ProgressLine(
    "running", 32.5, 70.0, 1234, 2, 8, 2, 2, 0,
    warmup_s=10.0, warmup_done=400, request_rate=312.4, output_token_rate=18_234.0,
    ttft_p50_s=0.041,
)  # fmt: skip
BY_COUNT = ProgressLine(
    "running", 32.5, None, 1234, 2, 8, 2, 2, 0,
    request_rate=312.4, output_token_rate=18_234.0, ttft_p50_s=0.041,
)  # fmt: skip
WARNED = ProgressLine(
    "running", 32.5, 70.0, 1234, 2, 8, 4, 4, 0, warning=LAG_WARNING,
    request_rate=312.4, output_token_rate=18_234.0, ttft_p50_s=0.041,
)  # fmt: skip
MANY = ProgressLine(
    "running", 3725.5, 7200.0, 12_345_678, 12_345, 4096, 250, 256, 6,
    request_rate=12_345.6, output_token_rate=1_234_567.0, ttft_p50_s=1.234, warning=LAG_WARNING,
)  # fmt: skip


def render(line: ProgressLine) -> list[str]:
    """The display on an 80-column terminal, as its lines; none is wider than 80 cells."""
    console = Console(width=80, record=True, force_terminal=True)
    console.print(progress_text(line, console.width))
    lines = console.export_text().splitlines()
    assert lines and all(cell_len(text) <= 80 for text in lines), lines
    return lines


def test_the_warm_up_is_labelled_and_nothing_counts_as_measured() -> None:
    head, facts = render(WARMUP)
    assert head.startswith("running  3.2 / 70 s  ━") and "ETA 67 s" in head
    assert "workers 2/2" in head
    assert facts.startswith("warm-up 3.2 / 10 s  123 ended, not measured")
    assert "in flight 8" in facts and "40.0 req/s" in facts
    assert "ok " not in facts and "tok/s" not in facts and "TTFT" not in facts


def test_a_measuring_run_shows_time_bar_outcomes_and_recent_rates() -> None:
    head, facts = render(MEASURING)
    assert head.startswith("running  32.5 / 70 s  ━")
    for fact in ("46%", "ETA 38 s", "workers 2/2"):
        assert fact in head
    assert facts == "ok 1,234  failed 2  in flight 8  312 req/s  18.2k tok/s  TTFT p50 41 ms"


def test_a_run_bounded_by_a_request_count_has_no_eta() -> None:
    head, facts = render(BY_COUNT)
    assert head.startswith("running  32.5 s  ") and "━" in head  # a moving block
    assert "ETA" not in head and "%" not in head and "/ " not in head
    assert "TTFT p50 41 ms" in facts
    assert render(BY_COUNT) != render(ProgressLine(**{**BY_COUNT.__dict__, "elapsed_s": 33.0}))


def test_a_warning_gets_its_own_line_cut_to_the_width() -> None:
    head, facts, warning = render(WARNED)
    assert "workers 4/4" in head and facts.startswith("ok 1,234")
    assert warning.startswith("not trustworthy now: worker 3: event-loop lag") and warning.endswith(
        "..."
    )


def test_many_workers_and_big_numbers_still_fit() -> None:
    head, facts, warning = render(MANY)
    assert "1:02:05 / 2:00:00" in head and "workers 250/256" in head
    assert "6 lost or failed" in head
    assert "ok 12.35M" in facts and "failed 12,345" in facts and "in flight 4,096" in facts
    assert "12.3k req/s" in facts
    assert warning.startswith("not trustworthy now")


def test_before_the_start_and_after_the_end() -> None:
    starting = ProgressLine("starting", 0.0, 70.0, 0, 0, 0, 1, 2, 0)
    head, facts = render(starting)
    assert head.startswith("starting  0.0 / 70 s") and "workers 1/2" in head
    assert "ETA" not in head and facts == "waiting for the workers to start"
    assert render(progress_line(None, 70.0)) == ["finishing: writing the results"]


@pytest.mark.parametrize("line", [WARMUP, MEASURING, BY_COUNT, WARNED, MANY])
def test_plain_lines_carry_the_same_facts_under_120_characters(line: ProgressLine) -> None:
    lines = plain_lines(line)
    assert all(len(text) <= PLAIN_WIDTH < 120 for text in lines)
    assert "━" not in lines[0] and lines[0].startswith("running  ")
    assert f"workers {line.workers_running}/{line.workers_total}" in lines[0]
    assert (len(lines) == 2) == (line.warning is not None)


def test_a_plain_line_labels_the_warm_up() -> None:
    (line,) = plain_lines(WARMUP)
    assert line == (
        "running  3.2 / 70 s  ETA 67 s  workers 2/2  warm-up 3.2 / 10 s  "
        "123 ended, not measured  in flight 8  40.0 req/s"
    )
    (line,) = plain_lines(MEASURING)
    assert "ok 1,234  failed 2  in flight 8  312 req/s  18.2k tok/s  TTFT p50 41 ms" in line


def test_off_a_terminal_a_line_every_few_seconds_and_at_each_phase() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80)  # not a terminal: plain lines, never wrapped
    with ProgressDisplay(console) as display:
        display.update(WARMUP)
        display.update(WARMUP)  # too soon, same phase: nothing
        display.update(WARNED)  # measuring now: at once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "warm-up 3.2 / 10 s" in lines[0]
    assert "ok 1,234" in lines[1] and len(lines[1]) > 80  # one line, not wrapped at 80
    assert lines[2].startswith("  not trustworthy now: worker 3")


def test_on_a_terminal_the_display_is_drawn_in_place_and_throttled() -> None:
    console = Console(width=80, record=True, force_terminal=True, file=io.StringIO())
    with ProgressDisplay(console) as display:
        display.update(MEASURING)
        display.update(WARMUP)  # within a quarter of a second: not drawn
        drawn = console.export_text(clear=False)
    assert "ok 1,234" in drawn and "warm-up" not in drawn


# -- the two sources ---------------------------------------------------------------------------
def sample(t_s: float, *, warmup: bool = False, ttft_s: float = 0.05) -> Sample:
    sent = round(t_s * 1e9)
    return Sample(
        group="chat",
        client=0,
        worker=0,
        name="chat",
        scheduled_ns=sent,
        sent_ns=sent,
        end_ns=sent + round(0.2 * 1e9),
        status="ok",
        first_token_ns=sent + round(ttft_s * 1e9),
        output_tokens=5,
        input_tokens=3,
        itl_s=[0.03] * 4,
        warmup=warmup,
    )


def cluster_snapshot(now_s: float, warning_lag_s: float = 0.001) -> ClusterSnapshot:
    states = (WorkerState.RUNNING, WorkerState.RUNNING, WorkerState.LOST)
    return ClusterSnapshot(
        id="c1",
        name="demo",
        status=ClusterStatus.RUNNING,
        start_ns=int(T0 * 1e9),
        stopping=False,
        workers=tuple(WorkerSnapshot(i, s, 3, warning_lag_s) for i, s in enumerate(states)),
        succeeded=4,
        failed=0,
        schedule_lag_p99_s=MappingProxyType({"chat": 0.001}),
        taken_at_s=now_s,
    )


def test_run_and_submit_show_the_same_numbers() -> None:
    live = LiveStats("c1", "demo", groups=["chat"])
    live.add([sample(T0 + 0.5, warmup=True)] * 6, T0 + 1.0)
    live.add([sample(T0 + 2.5, ttft_s=0.04)] * 3 + [sample(T0 + 2.5, ttft_s=0.08)], T0 + 3.0)
    now_s = T0 + 3.5
    snap = cluster_snapshot(now_s)
    in_process = progress_line(snap, 12.0, live.recent(now_s, T0), warmup_s=2.0)

    record = ClusterRecord(
        id="c1",
        name="demo",
        status="running",
        reason=None,
        config_json="{}",
        token_hash="",
        spawner_kind="local",
        spawner_state_json=None,
        created_at=T0 - 1,
        started_at=T0,
        finished_at=None,
        start_ns=int(T0 * 1e9),
        summary_json=None,
    )
    event = progress_view(record, snap, live.snapshot(now_s), now_s)
    streamed = progress_of_event(event, Plan(planned_s=12.0, warmup_s=2.0))
    assert streamed.request_rate == pytest.approx(in_process.request_rate)
    assert streamed.output_token_rate == pytest.approx(in_process.output_token_rate)
    assert streamed.ttft_p50_s == pytest.approx(in_process.ttft_p50_s, rel=1e-9)
    assert streamed == ProgressLine(
        **{
            **in_process.__dict__,
            "request_rate": streamed.request_rate,
            "output_token_rate": streamed.output_token_rate,
            "ttft_p50_s": streamed.ttft_p50_s,
        }
    )
    assert in_process.request_rate == pytest.approx(10 / 3.5)  # warm-up ones too, since start
    assert in_process.warmup_done == 6 and in_process.succeeded == 4
    assert in_process.ttft_p50_s is not None and math.isclose(
        in_process.ttft_p50_s, 0.04, rel_tol=0.01
    )
    assert (in_process.workers_running, in_process.workers_total) == (2, 3)
    assert in_process.workers_failed == 1 and in_process.phase == "running"


def test_an_event_before_the_start_or_of_an_unknown_shape_still_shows() -> None:
    line = progress_of_event({"status": "pending", "elapsed_s": None}, Plan())
    assert render(line)[0].startswith("pending  0.0 s")
    odd = progress_of_event({"status": "running", "workers": {"sleeping": 2}}, Plan(60.0))
    assert (odd.workers_running, odd.workers_total) == (0, 2)


def test_the_plan_comes_from_the_cluster_views_config() -> None:
    def group(name: str, duration_s: float) -> dict[str, object]:
        stop = {"duration_s": duration_s}
        return {"name": name, "clients": 1, "interaction": {"kind": "hello"}, "stop": stop}

    target = {"url": "http://127.0.0.1:1", "model": "m"}
    groups = [group("a", 30), group("b", 60)]
    config = validate_config_data({"name": "p", "target": target, "warmup_s": 5, "groups": groups})
    assert plan_of(config.model_dump(mode="json")) == Plan(planned_s=65.0, warmup_s=5.0)
    assert plan_of({"name": "from a newer service", "groups": "?"}) == Plan()
