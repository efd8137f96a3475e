"""Per-stage results of a real run against the simulator: one block per load stage, with as
many requests as its set point asks for, its per-stage warm-up left out."""

from __future__ import annotations

from pathlib import Path

from test_run import cluster, mock_url, run_in_process

__all__ = ["mock_url"]  # the fixture, used by name


async def test_each_stage_is_measured_apart_at_its_set_point(mock_url: str, tmp_path: Path) -> None:
    sweep = {
        "name": "sweep",
        "clients": 2,
        "interaction": {"kind": "hello"},
        "load": {
            "kind": "open",
            "arrival": "constant",
            "stage_warmup_s": 0.5,
            "stages": [{"rate": 10, "duration_s": 1.5}, {"rate": 30, "duration_s": 1.5}],
        },
    }
    closed = {
        "name": "closed",
        "clients": 2,
        "interaction": {"kind": "hello"},
        "load": {
            "kind": "closed",
            "think_time_s": 0.1,
            "stages": [{"clients": 1, "duration_s": 1.5}, {"clients": 2, "duration_s": 1.5}],
        },
    }
    ran = await run_in_process(cluster(mock_url, sweep, closed, workers=2), tmp_path)
    assert ran.record.status == "completed"
    group = ran.summary["groups"]["sweep"]
    stages = group["stages"]
    assert [st["stage"] for st in stages] == [0, 1]
    # Constant arrivals: 1.5 s at 10/s then at 30/s, the first 0.5 s of each warm-up.
    assert [stages[k]["requests"] for k in (0, 1)] == [10, 30]
    assert [stages[k]["warmup_excluded"] for k in (0, 1)] == [5, 15]
    assert [stages[k]["set_point"] for k in (0, 1)] == [10.0, 30.0]
    assert [stages[k]["start_offset_s"] for k in (0, 1)] == [0.0, 1.5]
    assert [stages[k]["planned_s"] for k in (0, 1)] == [1.5, 1.5]
    assert (group["requests"], group["warmup_excluded"]) == (40, 20)  # the whole run
    warm = [s for s in ran.samples if s.group == "sweep" and s.warmup]
    assert {s.stage for s in warm} == {0, 1} and len(warm) == 20
    closed_stages = ran.summary["groups"]["closed"]["stages"]
    assert [closed_stages[k]["set_point_unit"] for k in (0, 1)] == ["clients", "clients"]
    assert [closed_stages[k]["set_point"] for k in (0, 1)] == [1.0, 2.0]
    # Two clients thinking 0.1 s send about twice as often as one.
    assert closed_stages[1]["requests"] > 1.5 * closed_stages[0]["requests"] > 0
