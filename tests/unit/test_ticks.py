"""Tick tallies: exact round trip, merging like the union of samples, the same live statistics
as the samples give, untrusted bytes refused with TickFormatError, and the size on the wire."""

from __future__ import annotations

import copy
import functools
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from clientswarm.config.models import SLOConfig
from clientswarm.metrics.columns import SampleColumns
from clientswarm.metrics.derive import measured_parts
from clientswarm.metrics.histogram import N_BUCKETS, Histogram
from clientswarm.metrics.live import LiveStats
from clientswarm.metrics.sample import Sample
from clientswarm.metrics.ticks import (
    MAX_PARTS,
    MAX_TICK_BYTES,
    TickFormatError,
    TickTallies,
    decode,
    encode,
    tick_tallies,
)
from clientswarm.metrics.wire import ColumnarBatch

T0_S = 1_700_000_000.0  # epoch seconds, like time.time()
SLO = SLOConfig(ttft_s=0.3, tpot_s=0.03)


def streamed_chat(n: int, seed: int = 1, t0_s: float = T0_S) -> list[Sample]:
    """``n`` successful streamed chat answers of one group, as a busy worker records them:
    TTFT around 150 ms, 64 to 256 output tokens 20 ms apart with jitter, usage counts."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        scheduled = round((t0_s + i / 1000) * 1e9)
        sent = scheduled + int(rng.integers(0, 200_000))
        ttft_s = float(rng.lognormal(np.log(0.15), 0.3))
        tokens = int(rng.integers(64, 257))
        itl = (0.02 * rng.lognormal(0.0, 0.25, tokens - 1)).tolist()
        first = sent + round(ttft_s * 1e9)
        end = first + round(sum(itl) * 1e9)
        out.append(
            Sample(
                group="chat",
                client=i % 64,
                worker=0,
                name="chat",
                scheduled_ns=scheduled,
                sent_ns=sent,
                end_ns=end,
                first_token_ns=first,
                last_token_ns=end,
                input_tokens=int(rng.integers(100, 1000)),
                output_tokens=tokens,
                token_source="usage",
                itl_s=itl,
                http_status=200,
            )
        )
    return out


def mixed(n: int, seed: int, t0_s: float = T0_S) -> list[Sample]:
    """Samples of every kind: two groups on two targets (one with two replicas), two stages,
    steps, warm-up, cut-off, failed (with and without a kind), non-streamed and one-token
    answers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        group = rng.choice(["chat", "chat", "rag"])
        target = "default" if group == "chat" else "other"
        step = group == "rag" and rng.random() < 0.4
        roll = rng.random()
        status, kind = "ok", None
        if roll < 0.08:
            status, kind = "error", "cancelled"
        elif roll < 0.16:
            status, kind = "error", rng.choice(["http_503", "timeout", None])
        streamed = rng.random() < 0.8
        tokens = rng.choice([1, 2, 17, 128]) if status == "ok" else None
        gaps = [rng.uniform(0.005, 0.05) for _ in range(tokens - 1)] if tokens and streamed else []
        scheduled = round((t0_s + i / 100) * 1e9)
        sent = scheduled + rng.randrange(-1000, 5_000_000)  # a hair early, or late
        ttft_ns = rng.randrange(20_000_000, 600_000_000)
        end = sent + ttft_ns + round(sum(gaps) * 1e9) + rng.randrange(1000)
        out.append(
            Sample(
                group=group,
                client=i % 5,
                worker=1,
                name=rng.choice(["search", "answer"]) if step else group,
                scheduled_ns=scheduled,
                sent_ns=sent,
                end_ns=end,
                status=status,  # type: ignore[arg-type]
                first_token_ns=sent + ttft_ns if status == "ok" and streamed else None,
                input_tokens=rng.choice([None, 40]) if status == "ok" else None,
                output_tokens=tokens,
                token_source=rng.choice(["usage", "chunks", None]) if status == "ok" else None,
                itl_s=gaps,
                error_kind=kind,
                stage=0 if i < n // 2 else 1,
                warmup=i < n // 10,
                step=step,
                target=target,
                replica=i % 2 if target == "other" and not step else 0,
            )
        )
    return out


def cols(samples: list[Sample]) -> SampleColumns:
    return SampleColumns.from_samples(samples)


def wire_form(h: Histogram) -> list[Any]:
    return h.to_wire()


def test_a_tick_round_trips_exactly() -> None:
    tallies = tick_tallies(cols(mixed(400, seed=3)), SLO)
    assert len(tallies.parts) >= 6  # groups, targets, replicas, stages and steps all split
    seq, back = decode(encode(7, tallies))
    assert seq == 7 and back == tallies
    for key, t in tallies.parts.items():
        for name, h in t.hist.items():  # sums, minima and maxima bit for bit
            assert wire_form(back.parts[key].hist[name]) == wire_form(h), (key, name)
    assert decode(encode(1, TickTallies())) == (1, TickTallies())


def test_a_histogram_round_trips_its_wire_form() -> None:
    h = Histogram()
    h.record_many([-0.001, 0.0, 1e-7, 0.25, 0.25, 3.0, 1e4])  # underflow to overflow
    back = Histogram.from_wire(orjson.loads(orjson.dumps(h.to_wire())))
    assert (
        back == h and back.sum == h.sum and back.quantiles([0.5, 0.99]) == h.quantiles([0.5, 0.99])
    )
    assert Histogram.from_wire(Histogram().to_wire()) == Histogram()


def test_tallies_merge_like_the_union_of_their_samples() -> None:
    a, b = mixed(300, seed=4), mixed(500, seed=5, t0_s=T0_S + 2)
    merged = tick_tallies(cols(a), SLO).merge(tick_tallies(cols(b), SLO))
    union = tick_tallies(cols(a + b), SLO)
    assert merged == union
    assert merged.samples == 800
    for key, t in union.parts.items():
        for name, h in t.hist.items():
            assert wire_form(merged.parts[key].hist[name])[4:] == wire_form(h)[4:], (key, name)
    assert sum(t.goodput for t in union.parts.values()) > 0


def test_ticks_feed_the_live_statistics_as_the_samples_do() -> None:
    from_samples, from_ticks = LiveStats("c1", "demo"), LiveStats("c1", "demo")
    for i in range(12):  # batches received over 18 s: the recent window drops the early ones
        batch = cols(mixed(150, seed=10 + i, t0_s=T0_S + 1.5 * i))
        now_s = T0_S + 1.5 * i + 0.7
        from_samples.add_parts(measured_parts(batch, slo=SLO), now_s)
        _, tick = decode(encode(i + 1, tick_tallies(batch, SLO)))
        before = copy.deepcopy(tick)
        from_ticks.add_tallies(tick.live_tallies(), now_s)
        assert tick == before  # only read: the tick's own histograms are unchanged
    for now_s in (T0_S + 5, T0_S + 17.9, T0_S + 19, T0_S + 40):
        expected = from_samples.snapshot(now_s)
        assert from_ticks.snapshot(now_s) == expected, now_s
        assert from_ticks.recent(now_s, T0_S) == from_samples.recent(now_s, T0_S)
    snap = from_ticks.snapshot(T0_S + 19)["since_start"]
    assert set(snap["groups"]) == {"chat", "rag"} and set(snap["targets"]) == {"default", "other"}
    assert set(snap["groups"]["rag"]["steps"]) == {"search", "answer"}
    assert snap["total"]["warmup_excluded"] > 0 and snap["total"]["cancelled_excluded"] > 0
    assert {"http_503", "timeout", "unknown"} <= set(snap["total"]["errors"])


def body_of(raw: dict[str, Any]) -> bytes:
    return orjson.dumps(raw)


@functools.cache
def valid_body() -> bytes:
    return encode(3, tick_tallies(cols(mixed(200, seed=6)), SLO))


def valid() -> dict[str, Any]:
    raw: dict[str, Any] = orjson.loads(valid_body())
    return raw


def chat_part(raw: dict[str, Any]) -> dict[str, Any]:
    """The first part with requests and a TTFT histogram."""
    part: dict[str, Any] = next(
        p for p in raw["parts"] if p["counts"]["succeeded"] and "ttft_s" in p["hist"]
    )
    return part


def edit(change: Callable[[dict[str, Any]], None]) -> bytes:
    raw = valid()
    change(raw)
    return body_of(raw)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change of one field of the first chat part (``counts.requests``, ``hist.ttft_s.4``)."""

    def change(raw: dict[str, Any]) -> None:
        node: Any = chat_part(raw)
        *head, last = path.split(".")
        for name in head:
            node = node[int(name)] if isinstance(node, list) else node[name]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def _more(wire: list[Any]) -> None:
    """One more value in a histogram's first bucket than its count says."""
    wire[5][0] += 1


BROKEN: list[tuple[str, bytes, str]] = [
    ("truncated", encode(3, TickTallies(1))[:-7], "not JSON"),
    ("a list", b"[1, 2]", "a JSON object"),
    ("version", edit(lambda r: r.update(v=2)), "v: this service reads version 1"),
    ("layout", edit(lambda r: r.update(scheme="loglinear/32/-20/12")), "scheme: histogram"),
    ("seq", edit(lambda r: r.update(seq="7")), "seq: an integer"),
    ("unknown", edit(lambda r: r.update(extra=1)), "unknown fields ['extra']"),
    ("samples", edit(lambda r: r.update(samples=3)), "samples: 3, but the parts count"),
    ("too many parts", edit(lambda r: r.update(parts=[{}] * (MAX_PARTS + 1))), "at most 4096"),
    ("duplicate", edit(lambda r: r["parts"].append(r["parts"][0])), "appears twice"),
    ("key", edit(_set("key", ["default", "chat", None, 0])), ".key: [target, group"),
    ("step key", edit(_set("key.2", "search")), "a step's key"),
    ("stage type", edit(_set("key.3", "0")), "stage: an integer"),
    ("negative count", edit(_set("counts.input_tokens", -1)), "counts.input_tokens: an integer"),
    ("bool count", edit(_set("counts.warmup", True)), "counts.warmup: an integer"),
    ("float count", edit(_set("counts.goodput", 2.0)), "counts.goodput: an integer"),
    ("huge int", edit(_set("counts.requests", 2**64 - 1)), "counts.requests: an integer"),
    ("errors", edit(_set("errors", {"http_503": 10**6})), "errors must add up"),
    ("error count", edit(_set("errors", {"x": 0})), "errors.x: an integer from 1"),
    ("source", edit(_set("token_sources", {"guess": 1})), "'guess' is not a valid name"),
    ("no times", edit(_set("times", None)), "times: [start, end"),
    ("times order", edit(_set("times.2", 0)), "start <= first sent"),
    ("metric", edit(_set("hist.queue_s", [0, 0.0, None, None, [], []])), "an object of hist"),
    ("histogram", edit(_set("hist.ttft_s", {"count": 1})), "hist.ttft_s: a histogram is"),
    ("bucket range", edit(_set("hist.ttft_s.4.0", N_BUCKETS)), "increasing bucket indices"),
    ("bucket order", edit(_set("hist.ttft_s.4.1", 0)), "increasing bucket indices"),
    ("negative bucket", edit(_set("hist.ttft_s.5.0", -1)), "integers from 1 to 2**53"),
    ("bucket total", edit(lambda r: _more(chat_part(r)["hist"]["ttft_s"])), "but count is"),
    ("minimum", edit(_set("hist.ttft_s.2", 1e-6)), "do not lie in the first and last"),
    ("sum", edit(_set("hist.ttft_s.1", "1.5")), "sum must be a finite number"),
    ("mean", edit(_set("hist.ttft_s.1", 1e9)), "not between count * min"),
    ("buckets", edit(_set("hist.ttft_s.4", list(range(N_BUCKETS + 1)))), "lists of as many"),
    ("infinite", encode(3, TickTallies(1))[:-1] + b',"x":1e999}', "not JSON"),
    ("huge", b" " * (MAX_TICK_BYTES + 1), "at most 16777216 bytes"),
]


@pytest.mark.parametrize(("body", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_malformed_tick_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(TickFormatError) as info:
        decode(body)
    assert message in str(info.value)


def test_more_values_than_requests_are_refused() -> None:
    raw = valid()
    part = chat_part(raw)
    part["counts"]["succeeded"] = part["counts"]["goodput"] = 1
    part["errors"] = {"http_503": part["counts"]["requests"] - 1}
    part["token_sources"] = {}
    with pytest.raises(TickFormatError, match=r"hist\.\w+: \d+ values, more than 1"):
        decode(body_of(raw))


def _mutate(node: Any, rng: random.Random) -> Any:
    """``node`` with one value somewhere inside replaced by a random one."""
    choices: list[Any] = [None, True, -1, 0, 1, 2**63, 2**64 - 1, 0.5, -1e308, "x", [], {}, [0] * 7]
    if isinstance(node, dict) and node and rng.random() < 0.85:
        name = rng.choice(sorted(node))
        return {**node, name: _mutate(node[name], rng)}
    if isinstance(node, list) and node and rng.random() < 0.85:
        i = rng.randrange(len(node))
        return [*node[:i], _mutate(node[i], rng), *node[i + 1 :]]
    return rng.choice(choices)


def test_no_corruption_raises_anything_but_tick_format_error() -> None:
    rng = random.Random(11)
    raw = valid()
    body = body_of(raw)
    refused = 0
    for _ in range(3000):
        if rng.random() < 0.2:  # bytes: cut, or one flipped
            i = rng.randrange(len(body))
            bad = (
                body[:i]
                if rng.random() < 0.5
                else body[:i] + bytes([rng.randrange(256)]) + body[i + 1 :]
            )
        else:
            bad = body_of(_mutate(raw, rng))
        try:
            decode(bad)
        except TickFormatError:
            refused += 1
    assert refused > 2000  # most corruptions are caught; none raised anything else


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_a_tick_is_far_smaller_than_its_raw_samples(n: int) -> None:
    samples = streamed_chat(n)
    batch = ColumnarBatch()
    batch.add(samples)
    raw_bytes = len(batch.encode(1))
    tick_bytes = len(encode(1, tick_tallies(cols(samples), SLO)))
    print(f"{n} streamed chat samples: packed batch {raw_bytes} B, tick {tick_bytes} B")
    assert tick_bytes * 100 < raw_bytes
    assert tick_bytes < 8_000  # bounded by the buckets in use, not by the samples
