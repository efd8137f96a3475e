"""summary.json, the terminal table and the raw-sample exports, written and read back."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from clientswarm.config.models import SLOConfig
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.stats import summarize
from clientswarm.metrics.wire import PACKED_MEDIA_TYPE, decode_batch
from clientswarm.reports.export import (
    DERIVED_FIELDS,
    SAMPLE_FIELDS,
    read_samples,
    read_samples_jsonl,
    stream_samples,
    write_samples,
)
from clientswarm.reports.parquet import PARQUET_SCHEMA, read_samples_parquet, stream_parquet
from clientswarm.reports.summary import read_summary, write_summary
from clientswarm.reports.table import render_summary
from clientswarm.worker.service_client import encode_batch

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def make_samples() -> list[Sample]:
    """A streamed success, a non-streamed success, a failure and a warm-up sample."""
    return [
        Sample(
            group="chat",
            client=0,
            worker=1,
            name="chat",
            scheduled_ns=T0,
            sent_ns=T0 + 2 * MS,
            end_ns=T0 + 1002 * MS,
            first_token_ns=T0 + 102 * MS,
            last_token_ns=T0 + 1000 * MS,
            input_tokens=12,
            output_tokens=10,
            token_source="usage",
            itl_s=[0.1, 0.09, 0.11],
        ),
        Sample(
            group="embed",
            client=1,
            worker=0,
            name="embedding",
            scheduled_ns=T0 + 10 * MS,
            sent_ns=T0 + 10 * MS,
            end_ns=T0 + 60 * MS,
            input_tokens=8,
            http_status=200,
        ),
        Sample(
            group="chat",
            client=2,
            worker=1,
            name="chat",
            scheduled_ns=T0 + 20 * MS,
            sent_ns=T0 + 21 * MS,
            end_ns=T0 + 500 * MS,
            status="error",
            error_kind="http_503",
            error_message="Service Unavailable",
            http_status=503,
            stage=1,
        ),
        Sample(
            group="chat",
            client=0,
            worker=1,
            name="chat",
            scheduled_ns=T0 - 900 * MS,
            sent_ns=T0 - 900 * MS,
            end_ns=T0 - 100 * MS,
            first_token_ns=T0 - 800 * MS,
            output_tokens=3,
            itl_s=[0.2, 0.3],
            warmup=True,
        ),
    ]


def make_summary(**kwargs: Any) -> dict[str, Any]:
    cluster = {"id": "c-42", "name": "quickstart", "status": "finished"}
    return summarize(make_samples(), cluster=cluster, slo=SLOConfig(ttft_s=0.5), **kwargs)


# summary.json


def test_summary_round_trip(tmp_path: Path) -> None:
    summary = make_summary()
    path = write_summary(tmp_path / "out" / "summary.json", summary)
    assert read_summary(path) == summary
    text = path.read_text()
    assert text.startswith("{\n  ")  # indented for people
    assert "NaN" not in text


def test_summary_has_no_nan(tmp_path: Path) -> None:
    path = write_summary(tmp_path / "s.json", {"x": math.nan, "y": [math.inf, 1.0]})
    assert read_summary(path) == {"x": None, "y": [None, 1.0]}


# samples: JSONL, Parquet, CSV


def test_jsonl_writes_and_reads_back(tmp_path: Path) -> None:
    samples = make_samples()
    path = write_samples(tmp_path / "samples.jsonl", iter(samples), "jsonl")
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(samples)
    first = orjson.loads(lines[0])
    assert list(first) == [*SAMPLE_FIELDS, *DERIVED_FIELDS]
    assert first["ttft_s"] == pytest.approx(0.1)
    assert first["e2e_s"] == pytest.approx(1.0)
    assert first["tpot_s"] == pytest.approx(0.9 / 9)
    assert first["schedule_lag_s"] == pytest.approx(0.002)
    assert orjson.loads(lines[1])["ttft_s"] is None
    assert list(read_samples_jsonl(path)) == samples
    assert list(read_samples(path)) == samples


def test_jsonl_resummarises_to_the_same_summary(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "samples.jsonl", make_samples(), "jsonl")
    cluster = {"id": "c-42", "name": "quickstart", "status": "finished"}
    again = summarize(read_samples_jsonl(path), cluster=cluster, slo=SLOConfig(ttft_s=0.5))
    assert again == make_summary()


def test_jsonl_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text('{"group": "g"}\n')
    with pytest.raises(ValueError, match=r"samples\.jsonl:1: not a sample"):
        list(read_samples_jsonl(path))


def test_parquet_streams_one_row_group_per_chunk_and_reads_back(tmp_path: Path) -> None:
    samples = make_samples() * 3  # 12 rows
    path = tmp_path / "samples.parquet"
    chunks = list(stream_parquet(iter(samples), chunk=5))
    assert len(chunks) >= 3  # handed on as each row group is written, not all at the end
    path.write_bytes(b"".join(chunks))
    assert pq.ParquetFile(path).metadata.num_row_groups == 3  # 5 + 5 + 2
    table = pq.read_table(path)
    assert table.schema.equals(PARQUET_SCHEMA)
    assert table.num_rows == 12
    rows = table.to_pylist()
    assert rows[0]["itl_s"] == [0.1, 0.09, 0.11]
    assert rows[0]["ttft_s"] == pytest.approx(0.1)
    assert rows[0]["tpot_s"] == pytest.approx(0.1)
    assert rows[1]["ttft_s"] is None
    assert rows[1]["itl_s"] == []
    assert rows[2]["error_kind"] == "http_503"
    assert rows[2]["stage"] == 1
    assert rows[3]["warmup"] is True
    assert table.column("sent_ns").to_pylist() == [s.sent_ns for s in samples]
    assert list(read_samples_parquet(path)) == samples
    assert list(read_samples(path)) == samples


def test_parquet_without_samples_is_a_valid_empty_file(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "empty.parquet", [], "parquet")
    table = pq.read_table(path)
    assert table.num_rows == 0
    assert table.schema.equals(PARQUET_SCHEMA)


def test_csv_has_a_header_and_one_row_per_sample(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "samples.csv", make_samples(), "csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*SAMPLE_FIELDS, *DERIVED_FIELDS]
    assert len(rows) == 4
    assert rows[0]["itl_s"] == "[0.1,0.09,0.11]"
    assert rows[1]["first_token_ns"] == ""


def test_unknown_format_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="jsonl, csv, parquet"):
        stream_samples(make_samples(), "xml")


# terminal table


def render(summary: dict[str, Any], width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    render_summary(summary, console)
    return console.export_text()


def test_table_shows_groups_totals_and_numbers() -> None:
    text = render(make_summary())
    for word in ("quickstart", "c-42", "finished", "chat", "embed", "total", "TTFT", "ITL"):
        assert word in text
    assert "100" in text  # chat TTFT of 100 ms
    assert "1,000" in text  # chat E2E of 1000 ms
    assert "50.0" in text  # embed E2E of 50 ms
    assert "http_503 x1" in text
    assert "TTFT = send" in text
    assert "SLO: TTFT <= 500 ms" in text
    assert "warning" not in text


def test_table_fits_in_100_columns() -> None:
    text = render(make_summary(), width=100)
    assert "…" not in text  # nothing truncated
    assert max(len(line) for line in text.splitlines()) <= 100


def test_table_shows_warnings_and_untrustworthy_runs() -> None:
    text = render(make_summary(lag_bound_s=0.0001))
    assert "warning: group 'chat'" in text
    assert "NOT trustworthy" in text


def test_table_with_empty_summary() -> None:
    summary = summarize([], cluster={"id": "x", "name": "empty", "status": "failed"})
    text = render(summary)
    assert "empty" in text
    assert "total" in text
    assert "no SLO" in text


def test_table_says_what_was_excluded() -> None:
    from rich.console import Console

    from clientswarm.reports.table import render_summary

    summary = {
        "cluster": {"id": "x", "name": "n", "status": "cancelled"},
        "total": {"warmup_excluded": 3, "cancelled_excluded": 2},
        "groups": {},
    }
    console = Console(record=True, width=120)
    render_summary(summary, console)
    assert "excluded: 3 warm-up, 2 cut off by the stop" in console.export_text()


# steps of user-defined interactions


def make_journey() -> list[Sample]:
    """One run of a ``rag`` interaction: a retrieve span, a streamed chat call, the whole."""
    return [
        Sample(
            group="rag",
            client=3,
            worker=0,
            name="retrieve",
            scheduled_ns=T0,
            sent_ns=T0,
            end_ns=T0 + 40 * MS,
            step=True,
        ),
        Sample(
            group="rag",
            client=3,
            worker=0,
            name="chat",
            scheduled_ns=T0 + 40 * MS,
            sent_ns=T0 + 40 * MS,
            end_ns=T0 + 1040 * MS,
            first_token_ns=T0 + 140 * MS,
            output_tokens=10,
            token_source="usage",
            itl_s=[0.1, 0.1],
            http_status=200,
            step=True,
        ),
        Sample(
            group="rag",
            client=3,
            worker=0,
            name="rag",
            scheduled_ns=T0,
            sent_ns=T0,
            end_ns=T0 + 1050 * MS,
        ),
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_the_step_flag_round_trips_through_files(tmp_path: Path, fmt: str) -> None:
    samples = make_journey() + make_samples()
    path = write_samples(tmp_path / f"samples.{fmt}", samples, fmt)
    back = list(read_samples(path))
    assert back == samples
    assert [s.step for s in back] == [True, True, False, False, False, False, False]
    if fmt == "parquet":
        assert pq.read_table(path).column("step").to_pylist()[:3] == [True, True, False]
    else:
        assert orjson.loads(path.read_bytes().splitlines()[0])["step"] is True


def test_the_step_flag_is_a_csv_column(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "samples.csv", make_journey(), "csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert "step" in rows[0]
    assert [r["step"] for r in rows] == ["True", "True", "False"]


def test_files_written_before_the_step_flag_read_as_interactions(tmp_path: Path) -> None:
    samples = make_samples()
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_bytes(
        b"".join(
            orjson.dumps({k: v for k, v in orjson.loads(orjson.dumps(s)).items() if k != "step"})
            + b"\n"
            for s in samples
        )
    )
    assert list(read_samples_jsonl(jsonl)) == samples
    old = tmp_path / "old.parquet"
    table = pq.read_table(write_samples(tmp_path / "new.parquet", samples, "parquet"))
    pq.write_table(table.drop_columns(["step"]), old)
    back = list(read_samples_parquet(old))
    assert back == samples
    assert not any(s.step for s in back)


async def test_batches_are_encoded_a_slice_at_a_time_into_one_packed_body() -> None:
    samples = make_journey() * 200  # 600: three slices
    for batch in (samples, samples[:1], []):
        body = await encode_batch(7, batch)
        assert decode_batch(body, PACKED_MEDIA_TYPE) == (7, batch)


async def test_the_step_flag_crosses_the_wire() -> None:
    """The worker→service encoding, decoded as the service does."""
    samples = make_journey()
    body = await encode_batch(1, samples)  # as ServiceSink.send_batch
    line, _, itl = body.partition(b"\n")
    head = orjson.loads(line)
    assert head["columns"]["step"] == [True, True, False]
    assert decode_batch(body, PACKED_MEDIA_TYPE)[1] == samples
    del head["columns"]["step"]  # an older worker: interactions
    older = orjson.dumps(head) + b"\n" + itl
    assert not any(s.step for s in decode_batch(older, PACKED_MEDIA_TYPE)[1])


def test_table_shows_steps_under_their_group() -> None:
    summary = summarize(
        make_journey() + make_samples(), cluster={"id": "c", "name": "demo", "status": "finished"}
    )
    assert list(summary["groups"]["rag"]["steps"]) == ["retrieve", "chat"]
    lines = render(summary).splitlines()
    throughput = [line.split()[:3] for line in lines if line.lstrip().startswith(("rag", "↳"))]
    assert throughput[:3] == [
        ["rag", "1", "1"],  # one interaction, not three samples
        ["↳", "retrieve", "1"],
        ["↳", "chat", "1"],
    ]
    # indented under the group: in the throughput table and as a latency block of their own
    assert [line.index("↳") for line in lines if "↳ retrieve" in line] == [4, 4]
    assert [line.index("rag") for line in lines if line.lstrip().startswith("rag")] == [2, 2]
    assert next(line for line in lines if line.lstrip().startswith("total")).split()[1] == "4"
    assert max(len(line) for line in render(summary, width=100).splitlines()) <= 100


def test_table_names_the_errors_of_steps() -> None:
    journey = make_journey()
    journey[1].status, journey[1].error_kind = "error", "http_503"
    summary = summarize(journey, cluster={"id": "c", "name": "demo", "status": "finished"})
    assert "errors: rag ↳ chat: http_503 x1" in render(summary)
