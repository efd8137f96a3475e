"""Sample batches are checked against the types of Sample's fields before anything is stored."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from clientswarm.metrics.sample import Sample
from clientswarm.metrics.wire import (
    FIELD_TYPES,
    PACKED_MEDIA_TYPE,
    BatchFormatError,
    ColumnarBatch,
    decode_batch,
)

T0 = 1_700_000_000_000_000_000


def sample(i: int) -> Sample:
    return Sample(
        group="chat",
        client=i,
        worker=0,
        name="chat",
        scheduled_ns=T0 + i,
        sent_ns=T0 + i,
        end_ns=T0 + i + 10**9,
        first_token_ns=T0 + i + 10**8,
        output_tokens=3,
        token_source="usage",
        itl_s=[0.01, 0.02],
        http_status=200,
    )


def packed_with(name: str, value: Any, at: int = 1) -> bytes:
    batch = ColumnarBatch()
    batch.add([sample(0), sample(1), sample(2)])
    line, _, itl = batch.encode(7).partition(b"\n")
    head = orjson.loads(line)
    head["columns"][name][at] = value
    return orjson.dumps(head) + b"\n" + itl


def rows_with(name: str, value: Any) -> bytes:
    rows = [sample(0).to_dict(), sample(1).to_dict() | {name: value}]
    return orjson.dumps({"seq": 7, "samples": rows})


BAD = [
    ("scheduled_ns", "soon", 'expected an integer, got "soon"'),
    ("sent_ns", 1.5e18, "expected an integer, got 1.5e+18"),
    ("client", True, "expected an integer, got true"),
    ("first_token_ns", "x", 'expected an integer or null, got "x"'),
    ("status", "fine", 'expected one of "error", "ok", got "fine"'),
    ("token_source", "guess", 'expected one of "chunks", "tokenizer", "usage", null'),
    ("group", 5, "expected a string, got 5"),
    ("warmup", 1, "expected true or false, got 1"),
    ("error_message", {"a": 1}, "expected a string or null, got {'a': 1}"),
]


@pytest.mark.parametrize(("name", "value", "problem"), BAD)
def test_a_packed_column_of_the_wrong_type_is_refused_naming_it(
    name: str, value: Any, problem: str
) -> None:
    with pytest.raises(BatchFormatError) as refused:
        decode_batch(packed_with(name, value), PACKED_MEDIA_TYPE)
    assert str(refused.value).startswith(f"columns.{name}[1]: {problem}")


@pytest.mark.parametrize(("name", "value", "problem"), BAD)
def test_a_row_of_the_wrong_type_is_refused_naming_it(name: str, value: Any, problem: str) -> None:
    with pytest.raises(BatchFormatError) as refused:
        decode_batch(rows_with(name, value))
    assert str(refused.value).startswith(f"samples[1].{name}: {problem}")


def test_row_itls_must_be_numbers() -> None:
    with pytest.raises(BatchFormatError, match=r"samples\[1\]\.itl_s: expected a list"):
        decode_batch(rows_with("itl_s", [0.1, "slow"]))
    with pytest.raises(BatchFormatError, match=r"samples\[1\] must be an object"):
        decode_batch(orjson.dumps({"seq": 1, "samples": [sample(0).to_dict(), [1, 2]]}))


def test_the_extremes_of_every_type_pass_and_one_past_them_does_not() -> None:
    edge = sample(0)
    edge.sent_ns, edge.end_ns, edge.first_token_ns = -(2**63), 2**63 - 1, None
    edge.status, edge.token_source, edge.error_kind = "error", None, "timeout"
    batch = ColumnarBatch()
    batch.add([edge, sample(1)])
    assert decode_batch(batch.encode(3), PACKED_MEDIA_TYPE) == (3, [edge, sample(1)])
    assert decode_batch(orjson.dumps({"seq": 4, "samples": [edge.to_dict()]})) == (4, [edge])
    past = "expected an integer within 64 bits, got 9223372036854775808"
    with pytest.raises(BatchFormatError, match=rf"columns\.end_ns\[1\]: {past}"):
        decode_batch(packed_with("end_ns", 2**63), PACKED_MEDIA_TYPE)
    with pytest.raises(BatchFormatError, match=rf"samples\[1\]\.end_ns: {past}"):
        decode_batch(rows_with("end_ns", 2**63))


def test_every_field_but_the_itls_is_checked() -> None:
    names = set(Sample.__dataclass_fields__) - {"itl_s"}
    assert set(FIELD_TYPES) == names
