"""Exact token lengths with a local tokenizer.json: counting, synthetic lengths, errors.

The tokenizers are trained here on a few sentences; nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clientswarm.config.interactions import (
    ChatInteraction,
    CompletionInteraction,
    EmbeddingInteraction,
    HelloInteraction,
    HttpInteraction,
)
from clientswarm.config.paths import FileScope
from clientswarm.errors import ConfigError
from clientswarm.interactions import tokenizer as tokenizer_module
from clientswarm.interactions.prompts import PromptSource, build_prompt_source, token_length_note
from clientswarm.interactions.tokenizer import (
    WORDS,
    HfTokenizer,
    WordCounter,
    load_token_counter,
)

tokenizers = pytest.importorskip("tokenizers")

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "time year people way day man thing woman life child world school state family",
    "a model of the world is a computer program that answers a question",
    "research on government policy and education shows the value of data",
] * 3


def train_bpe() -> Any:
    """A byte-level BPE (GPT-2 style) with few merges: most words split into several pieces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=150,
        special_tokens=["[UNK]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(SENTENCES, trainer)
    return tok


def train_wordlevel() -> Any:
    """One token per word; words it never saw become [UNK]. Adds [CLS] ... [SEP] around texts."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(
        SENTENCES, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[CLS]", "[SEP]"])
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok


def train_metaspace() -> Any:
    """A SentencePiece-style (Llama-like) BPE: "▁" marks word starts, bytes as fallback."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(
        [*SENTENCES, " ".join(WORDS)], trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"])
    )
    return tok


TRAINERS = {"bpe": train_bpe, "wordlevel": train_wordlevel, "metaspace": train_metaspace}


@pytest.fixture(params=sorted(TRAINERS))
def tok_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A trained tokenizer saved as tmp_path/models/<kind>/tokenizer.json."""
    kind: str = request.param
    path = tmp_path / "models" / kind / "tokenizer.json"
    path.parent.mkdir(parents=True)
    TRAINERS[kind]().save(str(path))
    return path


def encoded_length(path: Path, text: str) -> int:
    tok = tokenizers.Tokenizer.from_file(str(path))
    return len(tok.encode(text, add_special_tokens=False).ids)


def source(tmp_path: Path, tok: Path | None, seed: int = 0, **fields: Any) -> PromptSource:
    if tok is not None:
        fields["tokenizer"] = str(tok.relative_to(tmp_path))  # relative: from the config's folder
    config = ChatInteraction.model_validate(fields)
    return build_prompt_source(config, seed=seed, files=FileScope.anywhere(tmp_path))


def test_counts_match_encode_without_special_tokens(tok_path: Path) -> None:
    counter = load_token_counter(
        str(tok_path), FileScope.anywhere(Path("/nonexistent"))
    )  # absolute path
    texts = [*SENTENCES[:4], "unseen words: zebra, quokka!", "  spaced   out  ", "x", ""]
    for text in texts:
        assert counter.count(text) == encoded_length(tok_path, text)
    assert counter.count_batch(texts) == [encoded_length(tok_path, t) for t in texts]
    assert counter.token_lengths == "exact"


def test_wordlevel_count_leaves_out_the_template(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    train_wordlevel().save(str(path))
    tok = tokenizers.Tokenizer.from_file(str(path))
    assert len(tok.encode("the quick fox").ids) == 5  # [CLS] the quick fox [SEP]
    assert load_token_counter(str(path), FileScope.anywhere(tmp_path)).count("the quick fox") == 3


@pytest.mark.parametrize(
    "lengths",
    [
        17,
        {"kind": "uniform", "min": 1, "max": 60},
        {"kind": "normal", "mean": 40, "std": 15, "min": 1, "max": 90},
        {"kind": "lognormal", "mean": 30, "std": 20, "max": 200},
    ],
    ids=["fixed", "uniform", "normal", "lognormal"],
)
def test_synthetic_prompts_encode_to_exactly_the_drawn_lengths(
    tmp_path: Path, tok_path: Path, lengths: Any
) -> None:
    synthetic = {"input_tokens": lengths, "output_tokens": 8, "count": 60}
    exact = source(tmp_path, tok_path, seed=5, synthetic=synthetic)
    by_words = source(tmp_path, None, seed=5, synthetic=synthetic)
    drawn = [p.input_tokens for p in by_words.prompts]
    assert [p.input_tokens for p in exact.prompts] == drawn  # the tokenizer keeps the lengths
    for prompt in exact.prompts:
        assert encoded_length(tok_path, str(prompt.text)) == prompt.input_tokens
        assert prompt.output_tokens == 8
    assert exact.token_lengths == "exact" and by_words.token_lengths == "approximate"
    assert len({p.text for p in exact.prompts}) > 1


def test_synthetic_with_tokenizer_is_deterministic_per_seed(tmp_path: Path, tok_path: Path) -> None:
    synthetic = {"input_tokens": {"kind": "uniform", "min": 5, "max": 50}, "count": 20}
    a = source(tmp_path, tok_path, seed=1, synthetic=synthetic).prompts
    b = source(tmp_path, tok_path, seed=1, synthetic=synthetic).prompts
    c = source(tmp_path, tok_path, seed=2, synthetic=synthetic).prompts
    assert a == b
    assert a != c


def test_text_of_length_every_small_length_and_a_long_one(tok_path: Path) -> None:
    counter = load_token_counter(str(tok_path), FileScope.anywhere(Path(".")))
    rng = np.random.default_rng(0)
    for n in [*range(1, 41), 500]:
        assert encoded_length(tok_path, counter.text_of_length(n, rng)) == n
    with pytest.raises(ValueError):
        counter.text_of_length(0, rng)


class DecodeDropsLastWord:
    """A tokenizer whose decoding loses the last word, so that every cut at n tokens misses."""

    def __init__(self, tok: Any) -> None:
        self._tok = tok

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    @staticmethod
    def _drop(text: str) -> str:
        return text.rstrip().rsplit(" ", 1)[0] if " " in text.strip() else ""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._drop(self._tok.decode(ids, skip_special_tokens=skip_special_tokens))

    def decode_batch(self, ids: list[list[int]], skip_special_tokens: bool = True) -> list[str]:
        texts = self._tok.decode_batch(ids, skip_special_tokens=skip_special_tokens)
        return [self._drop(t) for t in texts]


@pytest.mark.parametrize("cut_tries", [8, 0])
def test_missed_cuts_are_moved_or_padded_to_exact(
    tok_path: Path, monkeypatch: pytest.MonkeyPatch, cut_tries: int
) -> None:
    """Step 2 moves a missed cut; with no tries left step 3 pads a token at a time."""
    monkeypatch.setattr(tokenizer_module, "_CUT_TRIES", cut_tries)
    counter = HfTokenizer.from_file(tok_path)
    counter._tok = DecodeDropsLastWord(counter._tok)  # type: ignore[assignment]
    rng = np.random.default_rng(3)
    lengths = [int(n) for n in rng.integers(1, 80, size=40)]
    texts = counter.texts_of_lengths(lengths, rng)
    assert [encoded_length(tok_path, t) for t in texts] == lengths


def test_tokenizer_without_a_decoder_still_exact(tmp_path: Path) -> None:
    """Without a decoder, decoded pieces are joined by spaces and re-encode longer: padding."""
    tok = train_bpe()
    tok.decoder = None
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    counter = load_token_counter(str(path), FileScope.anywhere(tmp_path))
    rng = np.random.default_rng(0)
    lengths = [1, 2, 3, 10, 33, 200]
    assert [encoded_length(path, t) for t in counter.texts_of_lengths(lengths, rng)] == lengths


def test_dataset_and_fixed_prompts_are_counted_by_the_tokenizer(
    tmp_path: Path, tok_path: Path
) -> None:
    rows = [
        {"prompt": "the quick brown fox", "output_tokens": 3},
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
            ]
        },
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    prompts = source(tmp_path, tok_path, dataset={"path": "d.jsonl"}).prompts
    assert prompts[0].input_tokens == encoded_length(tok_path, "the quick brown fox")
    assert prompts[0].output_tokens == 3
    assert prompts[1].input_tokens == encoded_length(tok_path, "be brief") + encoded_length(
        tok_path, "hi"
    )
    share = [
        {
            "conversations": [
                {"from": "human", "value": "a model of the world"},
                {"from": "gpt", "value": "a computer program"},
            ]
        }
    ]
    (tmp_path / "s.json").write_text(json.dumps(share))
    (prompt,) = source(tmp_path, tok_path, dataset={"path": "s.json"}).prompts
    assert prompt.input_tokens == encoded_length(tok_path, "a model of the world")
    assert prompt.output_tokens == encoded_length(tok_path, "a computer program")
    (tmp_path / "d.csv").write_text("prompt\nresearch on government policy\n")
    (prompt,) = source(tmp_path, tok_path, dataset={"path": "d.csv"}).prompts
    assert prompt.input_tokens == encoded_length(tok_path, "research on government policy")
    fixed = source(tmp_path, tok_path, prompts=["the lazy dog jumps"])
    assert fixed.prompts[0].input_tokens == encoded_length(tok_path, "the lazy dog jumps")
    assert fixed.token_lengths == "exact"


def test_word_counter() -> None:
    counter = load_token_counter(None, FileScope.anywhere(Path(".")))
    assert isinstance(counter, WordCounter) and counter.token_lengths == "approximate"
    assert counter.count(" a  b\tc\n") == 3 and counter.count_batch(["a b", ""]) == [2, 0]
    text = counter.text_of_length(12, np.random.default_rng(0))
    assert len(text.split()) == 12 and set(text.split()) <= set(WORDS)


def test_token_length_note() -> None:
    exact = ChatInteraction(tokenizer="models/tok.json")
    assert token_length_note(exact) == "input token lengths are exact (tokenizer models/tok.json)"
    for config in (ChatInteraction(), CompletionInteraction(), EmbeddingInteraction()):
        assert token_length_note(config) == (
            "input token lengths are approximate "
            "(1 token = 1 word; set tokenizer: for exact lengths)"
        )
    assert token_length_note(HelloInteraction()) is None
    assert token_length_note(HttpInteraction()) is None


def test_tokenizer_is_a_field_of_prompt_interactions_only() -> None:
    assert EmbeddingInteraction(tokenizer="t.json").tokenizer == "t.json"
    assert CompletionInteraction().tokenizer is None
    with pytest.raises(ValueError, match="tokenizer"):
        HelloInteraction.model_validate({"tokenizer": "t.json"})


def test_missing_tokenizer_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        source(tmp_path, None, tokenizer="models/missing.json")
    assert info.value.source == f"tokenizer {tmp_path / 'models' / 'missing.json'}"
    assert "not found" in str(info.value)


def test_unreadable_tokenizer_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ConfigError) as info:
        load_token_counter("bad.json", FileScope.anywhere(tmp_path))
    message = str(info.value)
    assert str(tmp_path / "bad.json") in message and "tokenizer.json" in message


def test_missing_tokenizers_package_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokenizer.json"
    train_wordlevel().save(str(path))
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ConfigError) as info:
        source(tmp_path, path, prompts=["hi"])
    assert "pip install 'clientswarm[tokenizers]'" in str(info.value)
    assert str(path) in str(info.value)


def test_truncation_and_padding_in_the_file_are_ignored(tmp_path: Path) -> None:
    tok = train_wordlevel()
    tok.enable_truncation(max_length=4)
    tok.enable_padding(length=64, pad_id=0, pad_token="[UNK]")
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    counter = load_token_counter(str(path), FileScope.anywhere(tmp_path))
    assert counter.count("the quick brown fox jumps over the lazy dog") == 9
    assert counter.count_batch(["the quick", "a b c d e f"]) == [2, 6]
    assert counter.count(counter.text_of_length(30, np.random.default_rng(0))) == 30


def test_hf_tokenizer_from_file(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    train_bpe().save(str(path))
    counter = HfTokenizer.from_file(path)
    assert counter.path == path
    assert counter.texts_of_lengths([], np.random.default_rng(0)) == []
