"""The wire form of sample batches (clientswarm.metrics.wire): packed and row forms."""

from __future__ import annotations

import math
import random

import orjson
import pytest

from clientswarm.metrics.sample import Sample
from clientswarm.metrics.wire import (
    COLUMNS,
    PACKED_MEDIA_TYPE,
    BatchFormatError,
    ColumnarBatch,
    decode_batch,
    decode_columns,
)

T0 = 1_700_000_000_000_000_000


def varied_samples(n: int, seed: int = 1) -> list[Sample]:
    """Samples with every kind of value: errors, steps, no tokens, odd ITLs."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ok = i % 5 != 0
        itl = [rng.random() / 10 for _ in range(rng.choice([0, 1, 3, 127]))]
        if i % 17 == 0 and itl:
            itl[0] = 0.0  # tokens that arrived together
        out.append(
            Sample(
                group=rng.choice(["chat", "émbed ✓"]),
                client=i % 7,
                worker=2,
                name="chat" if i % 3 else "turn-2",
                scheduled_ns=T0 + i,
                sent_ns=T0 + i + 5,
                end_ns=T0 + i + 10**9,
                status="ok" if ok else "error",
                first_token_ns=T0 + i + 10**6 if itl else None,
                last_token_ns=T0 + i + 10**8 if itl else None,
                input_tokens=rng.choice([None, 12]),
                output_tokens=len(itl) + 1 if itl else None,
                token_source="usage" if itl else None,
                itl_s=itl,
                error_kind=None if ok else "http_503",
                error_message=None if ok else 'busy "now"\n',
                http_status=200 if ok else 503,
                stage=i % 2,
                warmup=i < 3,
                step=i % 4 == 1,
            )
        )
    return out


def packed(samples: list[Sample], seq: int = 3) -> bytes:
    batch = ColumnarBatch()
    batch.add(samples[:10])
    batch.add(samples[10:])
    assert len(batch) == len(samples)
    return batch.encode(seq)


def test_the_packed_form_round_trips_every_field_exactly() -> None:
    samples = varied_samples(200)
    assert decode_batch(packed(samples), PACKED_MEDIA_TYPE) == (3, samples)


def test_the_packed_form_keeps_itls_bit_for_bit() -> None:
    values = [5e-324, 1 / 3, 1e-9, 123456.789, math.nextafter(0.05, 1)]
    sample = Sample(group="g", client=0, worker=0, name="n", scheduled_ns=0, sent_ns=0, end_ns=1)
    sample.itl_s = values
    _, (back,) = decode_batch(packed([sample]), PACKED_MEDIA_TYPE)
    assert [v.hex() for v in back.itl_s] == [v.hex() for v in values]


def test_decoded_columns_keep_the_itl_bytes_as_they_came() -> None:
    samples = varied_samples(60)
    body = packed(samples)
    seq, cols = decode_columns(body, PACKED_MEDIA_TYPE)
    tail = body[body.index(b"\n") + 1 :]
    packed_itl = cols.itl_packed()
    assert isinstance(packed_itl, memoryview) and packed_itl.obj is body  # not a copy
    assert bytes(packed_itl) == tail
    assert b"".join(cols.itl_blobs()) == tail  # what the store gets, sample by sample
    assert [len(b) // 8 for b in cols.itl_blobs()] == [len(s.itl_s) for s in samples]
    assert cols.itl_values().tolist() == [v for s in samples for v in s.itl_s]
    assert cols.columns["client"] == [s.client for s in samples]
    assert (seq, cols.to_samples()) == (3, samples)


def test_integer_columns_become_arrays_with_what_is_missing() -> None:
    _, cols = decode_columns(packed(varied_samples(30)), PACKED_MEDIA_TYPE)
    values, present = cols.ints("first_token_ns")
    assert present is not None
    assert values[~present].tolist() == [0] * int((~present).sum())
    assert [v if p else None for v, p in zip(values.tolist(), present, strict=True)] == (
        cols.columns["first_token_ns"]
    )
    sent, every = cols.ints("sent_ns")
    assert every is None and sent.dtype == "int64"
    cols.columns["end_ns"][4] = "soon"  # stored by a hand that skipped the wire's checks
    with pytest.raises(ValueError, match="soon"):
        cols.ints("end_ns")


def test_an_empty_batch_round_trips() -> None:
    assert decode_batch(ColumnarBatch().encode(9), PACKED_MEDIA_TYPE) == (9, [])


def test_the_batch_copies_values_so_samples_may_change_after_add() -> None:
    samples = varied_samples(5)
    batch = ColumnarBatch()
    batch.add(samples)
    frozen = decode_batch(batch.encode(1), PACKED_MEDIA_TYPE)[1]
    samples[0].client = 99
    samples[1].itl_s.append(1.0)
    assert decode_batch(batch.encode(1), PACKED_MEDIA_TYPE)[1] == frozen
    assert frozen[0].client != 99


def test_the_row_form_is_taken_as_json() -> None:
    samples = varied_samples(20)
    body = orjson.dumps({"seq": 4, "samples": samples})
    assert decode_batch(body) == (4, samples)


def test_columns_with_defaults_may_be_left_out() -> None:
    samples = varied_samples(4)
    line, _, itl = packed(samples).partition(b"\n")
    head = orjson.loads(line)
    for name in ("stage", "warmup", "step", "error_message"):
        del head["columns"][name]
    _, back = decode_batch(orjson.dumps(head) + b"\n" + itl, PACKED_MEDIA_TYPE)
    assert [(s.stage, s.warmup, s.step, s.error_message) for s in back] == [
        (0, False, False, None)
    ] * 4
    assert [s.itl_s for s in back] == [s.itl_s for s in samples]


def broken(change: str) -> bytes:
    """A packed body of two samples with one thing wrong."""
    line, _, itl = packed(varied_samples(2, seed=4)).partition(b"\n")
    head = orjson.loads(line)
    if change == "seq":
        head["seq"] = 0
    elif change == "missing column":
        del head["columns"]["sent_ns"]
    elif change == "unknown column":
        head["columns"]["colour"] = ["red", "blue"]
    elif change == "short column":
        head["columns"]["client"] = [1]
    elif change == "counts":
        head["itl_counts"] = [head["itl_counts"][0] + 1, head["itl_counts"][1]]
    elif change == "negative count":
        head["itl_counts"] = [-1, 1]
    elif change == "cut":
        itl = itl[:-3]
    elif change == "no newline":
        return orjson.dumps(head)
    return orjson.dumps(head) + b"\n" + itl


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("seq", "seq must be an integer >= 1, got 0"),
        ("missing column", "columns.sent_ns is missing; it has no default"),
        ("unknown column", "unknown columns ['colour']; valid: group, client"),
        ("short column", "columns.client must be a list of 2 values, got 1"),
        ("counts", "itl_counts say"),
        ("negative count", "itl_counts must be a list of 2 integers >= 0"),
        ("cut", "bytes of ITLs follow the JSON line"),
        ("no newline", "a JSON line, a newline, then the ITLs"),
    ],
)
def test_a_bad_packed_batch_says_what_is_wrong(change: str, message: str) -> None:
    with pytest.raises(BatchFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_batch(broken(change), PACKED_MEDIA_TYPE)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "a batch is a JSON object, got list"),
        (b"{nope", "not JSON"),
        (b'{"seq": 1}', "a JSON batch needs 'samples'"),
        (b'{"seq": 1, "samples": [{"group": "g"}]}', "samples: .*missing"),
        (b'{"seq": true, "samples": []}', "seq must be an integer >= 1, got True"),
    ],
)
def test_a_bad_json_batch_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BatchFormatError, match=message):
        decode_batch(body)


def test_the_columns_are_the_sample_fields_but_the_itls() -> None:
    assert "itl_s" not in COLUMNS
    assert set(COLUMNS) | {"itl_s"} == set(Sample.__dataclass_fields__)
