"""``clientswarm run --repeat N`` against the simulator: one directory per run, the aggregate
with intervals that hold the simulator's own TTFT, and ``compare`` of two sets of repeats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from service_process import CLI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CONFIG = (
    "name: repeated\n"
    "target: {url: 'http://127.0.0.1:1'}\n"
    "seed: 7\n"
    "warmup_s: 0\n"
    "groups:\n"
    "  - name: chat\n"
    "    clients: 2\n"
    "    interaction: {kind: chat, stream: true, max_tokens: 5}\n"
    "    stop: {duration_s: 1.5}\n"
)


def repeat(tmp: Path, name: str, count: int, ttft_ms: int, *extra: str) -> Path:
    config = tmp / "c.yaml"
    config.write_text(CONFIG)
    out = tmp / name
    done = subprocess.run(
        [
            *(CLI, "run", str(config), "-o", str(out), "--repeat", str(count), *extra),
            *("--mock", "--mock-args", f"--ttft-ms {ttft_ms} --itl-ms 4"),
        ],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"{count} runs, mean and" in done.stdout
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("repeats")
    return repeat(tmp, "a", 3, 30, "--confidence", "0.99"), repeat(tmp, "b", 3, 60)


def test_each_run_has_its_results_and_the_aggregate_its_interval(
    runs: tuple[Path, Path],
) -> None:
    a, _ = runs
    repeats = json.loads((a / "summary.json").read_text())["repeats"]
    assert repeats["count"] == 3 and repeats["seeds"] == [7, 8, 9] and repeats["confidence"] == 0.99
    summaries = [json.loads((a / f"run-{i}" / "summary.json").read_text()) for i in range(3)]
    seeds = [json.loads((a / f"run-{i}" / "config.json").read_text())["seed"] for i in range(3)]
    assert seeds == [7, 8, 9]
    ttft = repeats["total"]["ttft_s.mean"]
    assert ttft["values"] == [s["total"]["ttft_s"]["mean"] for s in summaries]
    assert ttft["low"] < ttft["mean"] < ttft["high"]
    # The simulator's own TTFT (its engine histogram, scraped during each run) lies in the
    # clients' 99 % interval, up to the loopback trip and the HTTP handling (2 ms here).
    engine = [s["server"]["default"]["ttft_s"]["mean"] for s in summaries]
    engine_mean = sum(engine) / len(engine)
    assert ttft["low"] - 0.002 <= engine_mean <= ttft["high"] + 0.002, (ttft, engine)


def test_compare_reads_repeats(runs: tuple[Path, Path]) -> None:
    a, b = runs
    done = subprocess.run(
        [CLI, "compare", str(a), str(b), "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)
    assert any("3 repeated runs" in note for note in comparison["notes"])
    part = next(p for p in comparison["parts"] if p["group"] == "chat")
    p50 = next(row for row in part["latency"] if row["metric"] == "ttft_s.p50")
    change = p50["changes"][0]
    assert change["direction"] == "slower" and change["verdict"].startswith("B slower")
    assert p50["values"][0] < p50["values"][1]  # the means of the runs' p50s
