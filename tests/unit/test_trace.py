"""Trace replay: reading Mooncake and Azure traces, the schedule they give, and the prompts
synthesised for their requests (lengths exact, equal hash_ids → equal prefix bytes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_shared_prefix import train

from clientswarm.config import validate_config_data
from clientswarm.config.load import TraceLoadConfig
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.registry import build_group_interactions
from clientswarm.interactions.tokenizer import HfTokenizer
from clientswarm.interactions.trace_prompts import TracePrompts
from clientswarm.load.trace import (
    parse_azure,
    parse_mooncake,
    read_trace,
    replayed,
    trace_format,
    trace_group_schedule,
    trace_schedule,
)

MOONCAKE = [
    {"timestamp": 1000, "input_length": 20, "output_length": 3, "hash_ids": [7, 8, 9]},
    {"timestamp": 1000, "input_length": 12, "output_length": 0, "hash_ids": [7, 8]},
    {"timestamp": 1500, "input_length": 30, "output_length": 5, "hash_ids": [7, 8, 10, 11]},
    {"timestamp": 1250, "input_length": 5, "output_length": 2, "hash_ids": [12]},
]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def load(**fields: Any) -> TraceLoadConfig:
    return TraceLoadConfig.model_validate({"kind": "trace", **fields})


def cluster(load_fields: dict[str, Any], **group: Any) -> Any:
    return validate_config_data(
        {
            "name": "t",
            "target": {"url": "http://127.0.0.1:1"},
            "warmup_s": group.pop("warmup_s", 0),
            "groups": [
                {
                    "name": "g",
                    "clients": group.pop("clients", 3),
                    "interaction": group.pop("interaction", {"kind": "chat"}),
                    "load": {"kind": "trace", **load_fields},
                    **group,
                }
            ],
        }
    )


def test_mooncake_rows_are_sorted_by_time_relative_to_the_first() -> None:
    trace = parse_mooncake(jsonl(MOONCAKE), "path")
    assert trace.times_s.tolist() == [0.0, 0.0, 0.25, 0.5]  # ms → s; ties keep file order
    assert trace.input_tokens.tolist() == [20, 12, 5, 30]
    assert trace.output_tokens.tolist() == [3, 1, 2, 5]  # no token generated: ask for one
    assert trace.hash_ids == ((7, 8, 9), (7, 8), (12,), (7, 8, 10, 11))


def test_azure_csv_with_dates_or_seconds() -> None:
    text = (
        b"TIMESTAMP,ContextTokens,GeneratedTokens\n"
        b"2023-11-16 18:15:46.6805900,374,44\n"
        b"2023-11-16 18:15:46.1805900,396,109\n"
        b"\n"
        b"2023-11-16 18:15:47.6805900,879,20\n"
    )
    trace = parse_azure(text, "path")
    assert trace.times_s.tolist() == pytest.approx([0.0, 0.5, 1.5])
    assert trace.input_tokens.tolist() == [396, 374, 879]
    assert trace.output_tokens.tolist() == [109, 44, 20]
    assert trace.hash_ids is None
    seconds = parse_azure(b"timestamp,contexttokens,generatedtokens\n3.5,10,2\n1.5,11,3\n", "p")
    assert seconds.times_s.tolist() == [0.0, 2.0]


def test_bad_lines_are_named_five_at_most() -> None:
    rows = [b'{"timestamp": 1, "input_length": 0, "output_length": 1}', b"not json", b"[1]"]
    rows += [b'{"timestamp": "x", "input_length": 3, "output_length": 1}']
    rows += [b'{"timestamp": 2, "input_length": 3}'] * 4
    with pytest.raises(ConfigError) as caught:
        parse_mooncake(b"\n".join(rows), "path")
    problems = caught.value.problems
    assert problems[0] == "line 1: input_length: expected a whole number >= 1, got 0"
    assert problems[1].startswith("line 2: not JSON")
    assert problems[2] == "line 3: expected a JSON object, got list"
    assert problems[3].startswith("line 4: timestamp: expected a number (milliseconds)")
    assert problems[4] == "line 5: missing output_length"
    assert problems[5] == "… and 3 more"
    with pytest.raises(ConfigError, match="the header must name TIMESTAMP, ContextTokens"):
        parse_azure(b"time,in,out\n1,2,3\n", "path")
    with pytest.raises(ConfigError, match="line 3: ContextTokens: expected a whole number"):
        parse_azure(b"TIMESTAMP,ContextTokens,GeneratedTokens\n1,2,3\n2,2.5,3\n", "path")


def test_format_from_field_extension_or_data() -> None:
    assert trace_format(load(path="t.csv")) == "azure"
    assert trace_format(load(path="t.jsonl")) == "mooncake"
    assert trace_format(load(path="t.txt", format="azure")) == "azure"
    assert trace_format(load(data='{"timestamp": 0}')) == "mooncake"
    assert trace_format(load(data="TIMESTAMP,ContextTokens,GeneratedTokens\n")) == "azure"


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match=r"exactly one of path .* or data"):
        cluster({})
    with pytest.raises(ConfigError, match=r"exactly one of path .* or data"):
        cluster({"path": "t.jsonl", "data": "{}"})
    with pytest.raises(ConfigError, match="needs a chat, completion, responses, messages "):
        cluster({"path": "t.jsonl"}, interaction={"kind": "embedding"})
    for kind in ("responses", "messages"):  # the other generation APIs take a trace too
        assert cluster({"path": "t.jsonl"}, interaction={"kind": kind}).groups[0].load
    config = cluster({"path": "t.jsonl", "window_s": 10, "speedup": 4})
    assert config.groups[0].duration_s == 2.5  # the window, replayed 4 times faster
    assert cluster({"path": "t.jsonl"}).groups[0].duration_s is None  # to the trace's end


def test_schedule_keeps_the_gaps_scaled_by_speedup_and_slices_by_client() -> None:
    trace = parse_mooncake(jsonl(MOONCAKE), "path")
    schedule = trace_schedule(
        load(data="x", speedup=2.0),
        trace,
        first_client=10,
        clients=3,
        warmup_s=0.1,
        duration_s=None,
        requests=None,
    )
    assert schedule.offsets_s.tolist() == [0.0, 0.0, 0.125, 0.25]
    assert schedule.warmup.tolist() == [True, True, False, False]
    assert schedule.client.tolist() == [10, 11, 12, 10]
    parts = schedule.split(2)
    assert sorted(i for p in parts for i in p.index.tolist()) == [0, 1, 2, 3]
    assert parts[0].index.tolist() == [0, 2, 3]  # clients 10 and 12 (even) live on worker 0
    capped = trace_schedule(
        load(data="x"), trace, first_client=0, clients=1, warmup_s=0, duration_s=0.3, requests=2
    )
    assert capped.offsets_s.tolist() == [0.0, 0.0]
    timed = trace_schedule(
        load(data="x"), trace, first_client=0, clients=1, warmup_s=0, duration_s=0.3, requests=None
    )
    assert timed.offsets_s.tolist() == [0.0, 0.0, 0.25]


def test_window_and_reading_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_bytes(jsonl(MOONCAKE))
    files = FileScope.anywhere(tmp_path)
    window = replayed(load(path="t.jsonl", start_s=0.2, window_s=0.2), files)
    assert window.times_s.tolist() == pytest.approx([0.05])
    assert window.input_tokens.tolist() == [5]
    with pytest.raises(ConfigError, match="no request of the trace falls in the window") as e:
        replayed(load(path="t.jsonl", start_s=9), files)
    assert e.value.source == "start_s"
    with pytest.raises(ConfigError, match=r"missing\.jsonl: cannot read the trace") as e:
        read_trace(load(path="missing.jsonl"), files)
    assert e.value.source == "path"
    confined = FileScope.confined([tmp_path / "allowed"])
    (tmp_path / "allowed").mkdir()
    with pytest.raises(ConfigError, match="resolves outside the folders"):
        read_trace(load(path=str(tmp_path / "t.jsonl")), confined)


def test_building_a_cluster_names_the_trace_field(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"timestamp": 1, "input_length": 2}\n')
    config = cluster({"path": "bad.jsonl"})
    with pytest.raises(ConfigError) as caught:
        build_group_interactions(config, files=FileScope.anywhere(tmp_path))
    assert caught.value.problems == [
        "groups[0].load.path: bad.jsonl: line 1: missing output_length"
    ]
    inline = cluster({"data": '{"timestamp": 1, "input_length": 2, "output_length": 1}\n'})
    schedule, window = trace_group_schedule(inline, 0)
    assert len(schedule) == len(window) == 1


def prompts(counter: Any = None, seed: int = 3, block: int = 8) -> TracePrompts:
    return TracePrompts(
        parse_mooncake(jsonl(MOONCAKE), "path"), seed=seed, block_tokens=block, counter=counter
    )


def test_prompts_have_the_trace_lengths_and_share_prefix_blocks() -> None:
    made = prompts()
    texts = [made.prompt(i) for i in range(4)]
    assert [p.input_tokens for p in texts] == [20, 12, 5, 30]
    assert [p.output_tokens for p in texts] == [3, 1, 2, 5]
    assert [len(str(p.text).split()) for p in texts] == [20, 12, 5, 30]
    first, second, fourth = (str(texts[i].text).split() for i in (0, 1, 3))
    assert first[:12] == second  # ids 7, 8: block 7 whole, block 8 cut at 4 tokens
    assert first[:16] == fourth[:16]  # blocks 7 and 8 whole in both
    assert first[16:] != fourth[16:20]  # block 9 against block 10
    again = prompts()
    assert [again.prompt(i).text for i in (3, 0)] == [texts[3].text, texts[0].text]
    assert prompts(seed=4).prompt(0).text != texts[0].text


def test_requests_without_blocks_get_their_own_words() -> None:
    trace = parse_azure(b"TIMESTAMP,ContextTokens,GeneratedTokens\n0,40,2\n1,40,2\n", "p")
    made = TracePrompts(trace, seed=1, block_tokens=8)
    one, two = (str(made.prompt(i).text) for i in (0, 1))
    assert len(one.split()) == len(two.split()) == 40 and one != two
    assert made.prompt(0).text == one  # the same every time (and on every worker)


@pytest.mark.parametrize("kind", ["bpe", "metaspace"])
def test_exact_lengths_and_shared_prefix_with_a_tokenizer(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("tokenizers")
    path = tmp_path / "tok.json"
    train(kind).save(str(path))
    counter = HfTokenizer.from_file(path)
    made = prompts(counter, block=8)
    texts = [str(made.prompt(i).text) for i in range(4)]
    assert [counter.count(t) for t in texts] == [20, 12, 5, 30]
    # Blocks 7 and 8 are whole in requests 0 and 3: their first two blocks are the same text.
    block_7_8 = " ".join([made._block_text(7, 8), made._block_text(8, 8)])
    assert texts[0].startswith(block_7_8) and texts[3].startswith(block_7_8)
    common = len(block_7_8)
    assert texts[0][:common] == texts[3][:common]
    assert np.all([counter.count(made._block_text(b, 8)) == 8 for b in (7, 8, 9)])
