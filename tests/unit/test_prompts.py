"""Prompt sources: fixed lists, synthetic lengths, JSONL and ShareGPT files, and bad files."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from clientswarm.config.interactions import ChatInteraction, EmbeddingInteraction
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions.prompts import Prompt, PromptSource, build_prompt_source


def chat(**fields: Any) -> ChatInteraction:
    return ChatInteraction.model_validate(fields)


def source(tmp_path: Path, seed: int = 0, **fields: Any) -> PromptSource:
    return build_prompt_source(chat(**fields), seed=seed, files=FileScope.anywhere(tmp_path))


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")
    return path


def test_default_prompt_when_no_source_given(tmp_path: Path) -> None:
    prompts = source(tmp_path).prompts
    assert [p.text for p in prompts] == ["Hello! Who are you?"]
    assert prompts[0].input_tokens == 4


def test_fixed_prompts_picked_uniformly_and_reproducibly(tmp_path: Path) -> None:
    src = source(tmp_path, prompts=["a", "b c", "d e f"])
    assert [p.input_tokens for p in src.prompts] == [1, 2, 3]
    picks = [src.pick(random.Random(1)).text for _ in range(3)]
    assert len(set(picks)) == 1  # same seed, same pick
    rng = random.Random(7)
    counts = {t: 0 for t in ("a", "b c", "d e f")}
    for _ in range(3000):
        counts[str(src.pick(rng).text)] += 1
    assert all(800 < n < 1200 for n in counts.values())


def test_synthetic_fixed_lengths(tmp_path: Path) -> None:
    src = source(tmp_path, synthetic={"input_tokens": 50, "output_tokens": 20, "count": 10})
    assert len(src) == 10
    for p in src.prompts:
        assert p.text is not None and len(p.text.split()) == 50 == p.input_tokens
        assert p.output_tokens == 20
    assert len({p.text for p in src.prompts}) == 10
    assert len(set(str(src.prompts[0].text).split())) > 20  # varied words, not one repeated


def test_synthetic_lengths_within_distribution(tmp_path: Path) -> None:
    synthetic = {
        "input_tokens": {"kind": "uniform", "min": 10, "max": 30},
        "output_tokens": {"kind": "normal", "mean": 100, "std": 10, "min": 50, "max": 150},
        "count": 500,
    }
    prompts = source(tmp_path, synthetic=synthetic).prompts
    inputs = [p.input_tokens or 0 for p in prompts]
    outputs = [p.output_tokens or 0 for p in prompts]
    assert min(inputs) >= 10 and max(inputs) <= 30 and len(set(inputs)) > 15
    assert all(len(str(p.text).split()) == p.input_tokens for p in prompts)
    assert min(outputs) >= 50 and max(outputs) <= 150
    assert 97 < sum(outputs) / len(outputs) < 103


def test_synthetic_without_output_lengths_leaves_max_tokens(tmp_path: Path) -> None:
    prompts = source(tmp_path, synthetic={"input_tokens": 5, "count": 3}).prompts
    assert [p.output_tokens for p in prompts] == [None, None, None]


def test_synthetic_is_deterministic_per_seed(tmp_path: Path) -> None:
    synthetic = {"input_tokens": {"kind": "lognormal", "mean": 40, "std": 20}, "count": 50}
    a = source(tmp_path, seed=3, synthetic=synthetic).prompts
    b = source(tmp_path, seed=3, synthetic=synthetic).prompts
    c = source(tmp_path, seed=4, synthetic=synthetic).prompts
    assert a == b
    assert a != c


def test_jsonl_prompts_and_messages(tmp_path: Path) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"prompt": "one two three", "output_tokens": 7},
            {"messages": messages},
        ],
    )
    (tmp_path / "data.jsonl").write_bytes((tmp_path / "data.jsonl").read_bytes() + b"\n  \n")
    prompts = source(tmp_path, dataset={"path": "data.jsonl"}).prompts
    assert prompts[0] == Prompt(text="one two three", input_tokens=3, output_tokens=7)
    assert prompts[1].messages == tuple(messages)
    assert prompts[1].input_tokens == 4
    assert prompts[1].as_messages("sys") == messages  # a system message is already first
    assert prompts[1].as_text() == "be brief\nhi there"


def test_as_messages_adds_system_prompt() -> None:
    assert Prompt(text="q").as_messages("s") == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
    ]
    assert Prompt(text="q").as_messages() == [{"role": "user", "content": "q"}]


def test_jsonl_limit_and_absolute_path(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"p{i}"} for i in range(10)])
    src = build_prompt_source(
        chat(dataset={"path": str(path), "limit": 4}),
        seed=0,
        files=FileScope.anywhere(Path("/nonexistent")),
    )
    assert [p.text for p in src.prompts] == ["p0", "p1", "p2", "p3"]


def sharegpt_entries() -> list[Any]:
    return [
        {
            "id": "a",
            "conversations": [
                {"from": "human", "value": "What is a GPU?"},
                {"from": "gpt", "value": "A graphics processing unit, good at math."},
                {"from": "human", "value": "And a TPU?"},
            ],
        },
        {"id": "no-human", "conversations": [{"from": "gpt", "value": "hello"}]},
        {"id": "empty", "conversations": []},
        {
            "id": "b",
            "conversations": [{"from": "system", "value": "x"}, {"from": "human", "value": "Hi"}],
        },
    ]


def test_sharegpt_first_human_turn_and_answer_length(tmp_path: Path) -> None:
    (tmp_path / "share.json").write_text(json.dumps(sharegpt_entries()))
    prompts = source(tmp_path, dataset={"path": "share.json"}).prompts
    assert prompts == [  # the later human turns are kept for conversations
        Prompt(text="What is a GPU?", input_tokens=4, output_tokens=7, later_turns=("And a TPU?",)),
        Prompt(text="Hi", input_tokens=1, output_tokens=None),
    ]


def test_auto_format_sniffs_content(tmp_path: Path) -> None:
    (tmp_path / "share.txt").write_text("\n  " + json.dumps(sharegpt_entries()))
    write_jsonl(tmp_path / "rows.data", [{"prompt": "x y"}])
    assert len(source(tmp_path, dataset={"path": "share.txt"})) == 2
    assert source(tmp_path, dataset={"path": "rows.data"}).prompts[0].text == "x y"


def test_explicit_format_and_limit_for_sharegpt(tmp_path: Path) -> None:
    (tmp_path / "s.data").write_text(json.dumps(sharegpt_entries()))
    src = source(tmp_path, dataset={"path": "s.data", "format": "sharegpt", "limit": 1})
    assert [p.text for p in src.prompts] == ["What is a GPU?"]


def test_embedding_config_is_a_prompt_source(tmp_path: Path) -> None:
    config = EmbeddingInteraction(prompts=["a b"], batch_size=4)
    assert (
        build_prompt_source(config, seed=0, files=FileScope.anywhere(tmp_path))
        .prompts[0]
        .input_tokens
        == 2
    )


def config_error(tmp_path: Path, name: str, **dataset: Any) -> str:
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": name, **dataset})
    return str(info.value)


def test_missing_file_names_it(tmp_path: Path) -> None:
    message = config_error(tmp_path, "nope.jsonl")
    assert str(tmp_path / "nope.jsonl") in message and "not found" in message


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    assert "not found" in config_error(tmp_path, "dir.jsonl")


def test_invalid_jsonl_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n\n{"prompt": oops}\n')
    message = config_error(tmp_path, "bad.jsonl")
    assert "bad.jsonl" in message and "line 3" in message


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([1, 2], "expected an object"),
        ({"text": "x"}, '"prompt"'),
        ({"prompt": "x", "output_tokens": 0}, "output_tokens"),
        ({"prompt": "x", "output_tokens": "5"}, "output_tokens"),
        ({"messages": [{"content": "no role"}]}, "messages[0]"),
        ({"messages": []}, "messages"),
    ],
)
def test_bad_jsonl_rows(tmp_path: Path, row: Any, expected: str) -> None:
    write_jsonl(tmp_path / "rows.jsonl", [{"prompt": "fine"}, row])
    message = config_error(tmp_path, "rows.jsonl")
    assert "line 2" in message and expected in message


def test_invalid_sharegpt_json_names_line(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('[\n  {"conversations": []},\n  oops\n]')
    message = config_error(tmp_path, "s.json")
    assert "s.json" in message and "line 3" in message


def test_sharegpt_wrong_shapes(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('[{"conversations": []}, {"dialog": []}]')
    assert "entry 1" in config_error(tmp_path, "s.json")
    (tmp_path / "t.json").write_text('{"conversations": []}')
    assert "JSON list" in config_error(tmp_path, "t.json", format="sharegpt")


def test_dataset_without_prompts(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert "no prompts" in config_error(tmp_path, "empty.jsonl")
    (tmp_path / "nohuman.json").write_text('[{"conversations": [{"from": "gpt", "value": "x"}]}]')
    assert "no prompts" in config_error(tmp_path, "nohuman.json")


def test_unknown_content_needs_a_format(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("just text\n")
    assert "set format" in config_error(tmp_path, "x.txt")


def test_invalid_utf8_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "u.jsonl").write_bytes(b'{"prompt": "\xff"}\n')
    assert "line 1" in config_error(tmp_path, "u.jsonl")


def test_csv_prompt_column_and_output_tokens_column(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text(
        'id,text,max_out\n1,"Hello, world",12\n2,"a ""quoted"" word",\n\n3,"two\nlines", 7 \n'
    )
    dataset = {"path": "d.csv", "column": "text", "output_tokens_column": "max_out"}
    assert source(tmp_path, dataset=dataset).prompts == [
        Prompt(text="Hello, world", input_tokens=2, output_tokens=12),
        Prompt(text='a "quoted" word', input_tokens=3, output_tokens=None),  # empty: max_tokens
        Prompt(text="two\nlines", input_tokens=2, output_tokens=7),
    ]


def test_csv_default_column_bom_and_limit(tmp_path: Path) -> None:
    rows = "".join(f"p{i},x\n" for i in range(5))
    (tmp_path / "d.csv").write_bytes(b"\xef\xbb\xbf" + f"prompt,other\n{rows}".encode())
    src = source(tmp_path, dataset={"path": "d.csv", "limit": 3})
    assert [p.text for p in src.prompts] == ["p0", "p1", "p2"]


def test_tsv_is_tab_separated_and_format_csv_reads_any_name(tmp_path: Path) -> None:
    (tmp_path / "d.tsv").write_text("prompt\tn\na, b c\t5\n")
    dataset = {"path": "d.tsv", "output_tokens_column": "n"}
    assert source(tmp_path, dataset=dataset).prompts == [
        Prompt(text="a, b c", input_tokens=3, output_tokens=5)
    ]
    (tmp_path / "rows.txt").write_text("prompt\none two\n")
    src = source(tmp_path, dataset={"path": "rows.txt", "format": "csv"})
    assert [p.text for p in src.prompts] == ["one two"]


def test_csv_missing_column_is_named_without_quoting_the_header(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id, text ,n\n1,hi,2\n")
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": "d.csv", "output_tokens_column": "max"})
    assert info.value.source == f"dataset {tmp_path / 'd.csv'}"
    assert info.value.problems == [
        # never the header's content: a file's text stays out of error messages
        'no column "prompt" (set by column); the header row has 3 columns',
        'no column "max" (set by output_tokens_column); the header row has 3 columns',
    ]


def test_csv_bad_cells_give_their_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text(
        'prompt,n\nok,1\n"",2\n"multi\nline",x\n   ,4\nfine,0\nok,-3\n,,\n'
    )
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": "d.csv", "output_tokens_column": "n"})
    assert info.value.problems == [
        'line 3: the "prompt" cell is empty',
        'line 4: "n" must be a positive integer, got other text',
        'line 6: the "prompt" cell is empty',
        'line 7: "n" must be a positive integer, got a whole number below 1',
        'line 8: "n" must be a positive integer, got a whole number below 1',
    ]


def test_csv_empty_file_and_bad_utf8(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("\n\n")
    assert "header row" in config_error(tmp_path, "e.csv")
    (tmp_path / "h.csv").write_text("prompt\n")
    assert "no prompts" in config_error(tmp_path, "h.csv")
    (tmp_path / "u.csv").write_bytes(b"prompt\nok\n\xff\n")
    assert "line 3: not valid UTF-8" in config_error(tmp_path, "u.csv")


def test_csv_columns_only_apply_to_csv(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "x"}])
    message = config_error(tmp_path, "d.jsonl", column="text")
    assert "CSV files only" in message


def test_jsonl_problems_each_with_their_line(tmp_path: Path) -> None:
    lines = [
        '{"prompt": "ok"}',
        '{"prompt": "x" "output_tokens": 3}',
        '{"text": "no prompt"}',
        '{"prompt": "x", "output_tokens": "x"}',
        "",
        '{"prompt": 5}',
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": "data.jsonl"})
    assert info.value.source == f"dataset {tmp_path / 'data.jsonl'}"
    assert info.value.problems == [
        "line 2: not valid JSON (Expecting ',' delimiter: column 16)",
        'line 3: needs "prompt" or "messages"',
        "line 4: output_tokens must be a positive integer, got a string",
        'line 6: "prompt" must be a string, got a number',
    ]


def test_problems_are_capped_with_a_count_of_the_rest(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "ok"}] + [{"prompt": ""}] * 9)
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": "d.jsonl"})
    assert info.value.problems == [
        *(f'line {n}: "prompt" is empty' for n in range(2, 7)),
        "… and 4 more",
    ]
    (tmp_path / "s.json").write_text(json.dumps([{"conversations": []}] + [{"x": 1}] * 7))
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": "s.json"})
    assert info.value.problems == [
        *(f'entry {n}: expected an object with a "conversations" list' for n in range(1, 6)),
        "… and 2 more",
    ]


def test_invalid_sharegpt_json_says_why(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('[\n  {"conversations": []},\n  oops\n]')
    assert info_problems(tmp_path, "s.json") == [
        "line 3: not valid JSON (Expecting value: column 3)"
    ]


def info_problems(tmp_path: Path, name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        source(tmp_path, dataset={"path": name})
    return info.value.problems
