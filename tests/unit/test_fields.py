"""The sample's field table: read from ``Sample`` once, every format derived from it."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Annotated, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from clientswarm.config.models import DEFAULT_TARGET
from clientswarm.metrics.fields import (
    COLUMNS,
    FIELDS,
    NO_DEFAULT,
    SAMPLE_FIELDS,
    FieldKind,
    SampleField,
    fields_of,
)
from clientswarm.metrics.sample import INT32, Sample, Stored
from clientswarm.metrics.wire import (
    FIELD_TYPES,
    PACKED_MEDIA_TYPE,
    BatchFormatError,
    ColumnarBatch,
    decode_batch,
)
from clientswarm.reports.export import SampleFormat, read_samples, write_samples
from clientswarm.reports.parquet import PARQUET_SCHEMA
from clientswarm.store import schema

# The samples table as schema version 1 shipped it (with ``step`` and ``target``, added since
# with a default for the rows before): the table derived from the field table must be this one,
# or existing stores break.
SQLITE_SAMPLES = """
CREATE TABLE samples (
	id INTEGER NOT NULL,
	cluster_id VARCHAR(64) NOT NULL,
	"group" VARCHAR(255) NOT NULL,
	client INTEGER NOT NULL,
	worker INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	scheduled_ns BIGINT NOT NULL,
	sent_ns BIGINT NOT NULL,
	end_ns BIGINT NOT NULL,
	status VARCHAR(16) NOT NULL,
	first_token_ns BIGINT,
	last_token_ns BIGINT,
	input_tokens INTEGER,
	output_tokens INTEGER,
	token_source VARCHAR(16),
	itl_s BLOB NOT NULL,
	error_kind VARCHAR(64),
	error_message TEXT,
	http_status INTEGER,
	stage INTEGER NOT NULL,
	warmup BOOLEAN NOT NULL,
	step BOOLEAN DEFAULT 0 NOT NULL,
	target VARCHAR(255) DEFAULT 'default' NOT NULL,
	replica INTEGER DEFAULT 0 NOT NULL,
	PRIMARY KEY (id)
)"""

# What Parquet files were written with before the schema was derived (and ``target`` and
# ``replica``, added since at the end of the fields): readers rely on it.
PARQUET_COLUMNS = [
    ("group", pa.string()),
    ("client", pa.int64()),
    ("worker", pa.int64()),
    ("name", pa.string()),
    ("scheduled_ns", pa.int64()),
    ("sent_ns", pa.int64()),
    ("end_ns", pa.int64()),
    ("status", pa.string()),
    ("first_token_ns", pa.int64()),
    ("last_token_ns", pa.int64()),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("token_source", pa.string()),
    ("itl_s", pa.list_(pa.float64())),
    ("error_kind", pa.string()),
    ("error_message", pa.string()),
    ("http_status", pa.int64()),
    ("stage", pa.int64()),
    ("warmup", pa.bool_()),
    ("step", pa.bool_()),
    ("target", pa.string()),
    ("replica", pa.int64()),
    ("ttft_s", pa.float64()),
    ("e2e_s", pa.float64()),
    ("tpot_s", pa.float64()),
    ("schedule_lag_s", pa.float64()),
]


def ddl(dialect: object) -> str:
    text = str(CreateTable(schema.samples).compile(dialect=dialect))  # type: ignore[arg-type]
    return "\n".join(line.rstrip().rstrip(",") for line in text.strip().splitlines())


def test_the_store_table_is_the_one_schema_version_1_shipped() -> None:
    expected = "\n".join(line.rstrip(",") for line in SQLITE_SAMPLES.strip().splitlines())
    assert ddl(sqlite.dialect()) == expected
    pg = ddl(postgresql.dialect())
    assert "itl_s BYTEA NOT NULL" in pg and "step BOOLEAN DEFAULT false NOT NULL" in pg
    assert "target VARCHAR(255) DEFAULT 'default' NOT NULL" in pg
    assert "replica INTEGER DEFAULT 0 NOT NULL" in pg
    assert "client INTEGER NOT NULL" in pg and "sent_ns BIGINT NOT NULL" in pg


def test_the_parquet_schema_is_the_one_files_were_written_with() -> None:
    assert PARQUET_SCHEMA.equals(pa.schema(PARQUET_COLUMNS))


def test_every_format_has_every_field_in_the_declared_order() -> None:
    names = [f.name for f in dataclasses.fields(Sample)]
    assert [f.name for f in SAMPLE_FIELDS] == names
    assert list(COLUMNS) == [n for n in names if n != "itl_s"]
    assert [c.name for c in schema.samples.columns][2:] == names
    assert PARQUET_SCHEMA.names[: len(names)] == names
    assert list(FIELD_TYPES) == list(COLUMNS)


def test_statistics_dtypes_come_from_the_table() -> None:
    from clientswarm.metrics.columns import SampleColumns

    assert {f.name: f.dtype.kind for f in SAMPLE_FIELDS if f.dtype.kind != "O"} == {
        **{name: "i" for name in ("client", "worker", "scheduled_ns", "sent_ns", "end_ns")},
        **{name: "i" for name in ("first_token_ns", "last_token_ns", "input_tokens")},
        **{name: "i" for name in ("output_tokens", "http_status", "stage", "replica")},
        "itl_s": "f",
        "warmup": "b",
        "step": "b",
    }
    sample = Sample(group="g", client=1, worker=0, name="n", scheduled_ns=5, sent_ns=6, end_ns=9)
    cols = SampleColumns.from_samples([sample, sample])
    for f in SAMPLE_FIELDS:
        if f.name != "itl_s":
            values, _ = cols.array(f.name)
            assert values.dtype == f.dtype, f.name


def test_wire_types_come_from_the_table() -> None:
    assert FIELD_TYPES["status"].choices == {"ok", "error"}
    assert FIELD_TYPES["token_source"].choices == {"usage", "tokenizer", "chunks", None}
    assert FIELD_TYPES["first_token_ns"].kinds == {int, type(None)}
    assert FIELD_TYPES["client"].kinds == {int}  # 32-bit in the store, an integer on the wire
    assert FIELDS["client"].int32 and not FIELDS["sent_ns"].int32


def test_a_declaration_reads_into_the_table() -> None:
    @dataclasses.dataclass
    class Declared:
        label: Annotated[str, Stored(max_length=32)]
        count: Annotated[int, INT32]
        at_ns: int
        mode: Literal["a", "b"] = "a"
        note: str | None = None
        flag: bool = False
        itl_s: list[float] = dataclasses.field(default_factory=list)

    assert fields_of(Declared) == (
        SampleField("label", FieldKind.TEXT, nullable=False, max_length=32),
        SampleField("count", FieldKind.INT, nullable=False, int32=True),
        SampleField("at_ns", FieldKind.INT, nullable=False),
        SampleField("mode", FieldKind.TEXT, False, default="a", choices=frozenset({"a", "b"})),
        SampleField("note", FieldKind.TEXT, nullable=True, default=None),
        SampleField("flag", FieldKind.BOOL, nullable=False, default=False),
        SampleField("itl_s", FieldKind.SECONDS, nullable=False, default=()),
    )
    assert not fields_of(Declared)[0].has_default and fields_of(Declared)[0].default is NO_DEFAULT


def target_samples() -> list[Sample]:
    base = {"client": 0, "worker": 0, "name": "hello", "scheduled_ns": 5, "sent_ns": 6}
    return [
        Sample(group="to-a", end_ns=9, target="a", **base),
        Sample(group="to-b", end_ns=10, target="b", **base),
    ]


def test_the_target_is_a_field_with_the_one_targets_name_by_default() -> None:
    assert FIELDS["target"] == SampleField(
        "target", FieldKind.TEXT, nullable=False, default=DEFAULT_TARGET, max_length=255
    )
    assert FIELD_TYPES["target"].kinds == {str} and FIELD_TYPES["target"].choices is None
    assert PARQUET_SCHEMA.field("target").type == pa.string()
    sample = Sample(group="g", client=1, worker=0, name="n", scheduled_ns=5, sent_ns=6, end_ns=9)
    assert sample.target == DEFAULT_TARGET == "default"


def test_the_target_crosses_the_wire_and_a_batch_without_it_is_the_default() -> None:
    samples = target_samples()
    batch = ColumnarBatch()
    batch.add(samples)
    line, _, itl = batch.encode(1).partition(b"\n")
    head = orjson.loads(line)
    assert head["columns"]["target"] == ["a", "b"]
    assert decode_batch(orjson.dumps(head) + b"\n" + itl, PACKED_MEDIA_TYPE)[1] == samples
    del head["columns"]["target"]  # a worker that did not know targets: the one target's
    older = decode_batch(orjson.dumps(head) + b"\n" + itl, PACKED_MEDIA_TYPE)[1]
    assert [s.target for s in older] == ["default", "default"]
    head["columns"]["target"] = ["a", 7]
    with pytest.raises(BatchFormatError, match=r"columns\.target\[1\]: expected a string"):
        decode_batch(orjson.dumps(head) + b"\n" + itl, PACKED_MEDIA_TYPE)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_samples_file_has_the_target(tmp_path: Path, fmt: SampleFormat) -> None:
    samples = target_samples()
    path = write_samples(tmp_path / f"samples.{fmt}", samples, fmt)
    if fmt == "csv":
        with path.open(newline="") as f:
            assert [row["target"] for row in csv.DictReader(f)] == ["a", "b"]
    else:
        assert list(read_samples(path)) == samples


def test_files_written_before_the_target_read_as_the_default(tmp_path: Path) -> None:
    samples = target_samples()
    table = pq.read_table(write_samples(tmp_path / "new.parquet", samples, "parquet"))
    pq.write_table(table.drop_columns(["target"]), tmp_path / "old.parquet")
    assert [s.target for s in read_samples(tmp_path / "old.parquet")] == ["default"] * 2
    lines = [
        orjson.loads(line)
        for line in write_samples(tmp_path / "new.jsonl", samples, "jsonl")
        .read_bytes()
        .splitlines()
    ]
    old = tmp_path / "old.jsonl"
    old.write_bytes(
        b"".join(
            orjson.dumps({k: v for k, v in row.items() if k != "target"}) + b"\n" for row in lines
        )
    )
    assert [s.target for s in read_samples(old)] == ["default"] * 2
