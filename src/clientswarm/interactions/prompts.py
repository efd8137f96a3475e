"""Where prompts come from: a fixed list, synthetic text of given token lengths, groups of
synthetic prompts that share a prefix (:mod:`.shared_prefix`), or a dataset.

Every source is built once, before a run, into a list of :class:`Prompt`; picking one during
the run is O(1). Without a tokenizer a token is one whitespace-separated word, which is how the
built-in simulator counts them; against a real model the server's ``usage`` gives the truth.
With ``tokenizer:`` (a Hugging Face tokenizer.json, see :mod:`.tokenizer`) synthetic prompts
encode to exactly the drawn lengths and dataset prompts are counted exactly.

Datasets are JSONL (``prompt`` or ``messages`` per line, optional ``output_tokens``),
ShareGPT-style JSON (the first human turn; the answer after it sets the output length) or CSV
(``column`` holds the prompt, ``output_tokens_column`` the output length; ``.tsv`` is
tab-separated). An entry may name images (a JSONL ``image`` field, a string or a list of
strings; a CSV ``image_column``): paths, read once into data URLs, or URLs. A bad file gives
one problem per bad line or entry, at most :data:`_MAX_PROBLEMS` of them and then how many more
there are.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from clientswarm.config.interactions import DatasetPrompts, SyntheticPrompts, _PromptSource
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError, FileProblems
from clientswarm.interactions.tokenizer import (
    TokenCounter,
    TokenLengths,
    WordCounter,
    load_token_counter,
)

Message = dict[str, Any]

_HUMAN_ROLES = frozenset({"human", "user"})
_GPT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bard", "model"})
_MAX_PROBLEMS = 5
_CSV_FIELD_LIMIT = 2**31 - 1  # long prompts: the csv module's default cell limit is 128 KiB
_INTEGER = re.compile(r"[+-]?\d+")
_POSITIVE_INT = re.compile(r"[0-9]+")
_UTF8_BOM = b"\xef\xbb\xbf"


def count_words(text: str) -> int:
    """Tokens of ``text`` when a token is one whitespace-separated word."""
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt: plain text or chat messages, with its known input and output lengths.

    ``output_tokens`` is the length to request (it overrides the interaction's max_tokens);
    None leaves max_tokens as configured.
    """

    text: str | None = None
    messages: tuple[Message, ...] | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    later_turns: tuple[str, ...] = ()
    """The user turns after this one in a multi-turn dataset entry (ShareGPT); only the
    ``conversation`` interaction uses them."""
    prefix: str | None = None
    """The start of ``text`` (before one space) that every prompt of its ``shared_prefix``
    group has, byte for byte; None for the other sources."""
    images: tuple[str, ...] = ()
    """A dataset entry's images, each an ``http(s)`` or data URL (files are read into data
    URLs when the dataset is loaded); chat sends them as ``image_url`` parts."""

    def as_text(self) -> str:
        """The prompt as one string (chat messages' text contents joined by newlines)."""
        if self.text is not None:
            return self.text
        return "\n".join(m["content"] for m in self.messages or () if isinstance(m["content"], str))

    def without_prefix(self) -> Prompt:
        """The prompt without its shared prefix: a conversation's later turn asks only the
        question. A prompt without a prefix is returned as it is."""
        if self.prefix is None or self.text is None:
            return self
        question = self.text.removeprefix(f"{self.prefix} ")
        return Prompt(text=question, output_tokens=self.output_tokens)

    def as_messages(self, system_prompt: str | None = None) -> list[Message]:
        """The prompt as chat messages, after ``system_prompt`` unless one is already first."""
        if self.messages is not None:
            messages = list(self.messages)
            if system_prompt is not None and messages[0].get("role") != "system":
                messages.insert(0, {"role": "system", "content": system_prompt})
            return messages
        user = {"role": "user", "content": self.text or ""}
        if system_prompt is None:
            return [user]
        return [{"role": "system", "content": system_prompt}, user]


class PromptSource:
    """A fixed, non-empty list of prompts to pick from at random.

    ``token_lengths`` says whether the prompts' ``input_tokens`` (and synthetic lengths) are a
    real tokenizer's (``"exact"``) or words (``"approximate"``).
    """

    __slots__ = ("_n", "_prompts", "token_lengths")

    def __init__(
        self, prompts: list[Prompt], *, token_lengths: TokenLengths = "approximate"
    ) -> None:
        if not prompts:
            raise ValueError("a prompt source needs at least one prompt")
        self._prompts = prompts
        self._n = len(prompts)
        self.token_lengths: TokenLengths = token_lengths

    def __len__(self) -> int:
        return self._n

    @property
    def prompts(self) -> list[Prompt]:
        """Every prompt, in source order."""
        return self._prompts

    def pick(self, rng: random.Random) -> Prompt:
        """One prompt chosen uniformly with ``rng``, in O(1)."""
        return self._prompts[int(rng.random() * self._n)]


def build_prompt_source(
    config: _PromptSource, *, seed: int, files: FileScope = ANYWHERE
) -> PromptSource:
    """Build the source an interaction config asks for; a bad dataset raises ConfigError.

    The same ``seed`` gives the same synthetic (and shared-prefix) prompts on every worker; the
    dataset and tokenizer paths resolve in ``files`` (relative ones from the folder of the
    configuration file; on a shared service only inside the folders its operator allowed).
    """
    counter = load_token_counter(config.tokenizer, files)
    if config.synthetic is not None:
        prompts = synthetic_prompts(config.synthetic, seed=seed, counter=counter)
    elif config.shared_prefix is not None:
        from clientswarm.interactions.shared_prefix import shared_prefix_prompts  # needs Prompt

        prompts = shared_prefix_prompts(config.shared_prefix, seed=seed, counter=counter)
    elif config.dataset is not None:
        prompts = load_dataset(config.dataset, files=files, counter=counter)
    else:
        texts = config.prompts or []
        prompts = [
            Prompt(text=t, input_tokens=n)
            for t, n in zip(texts, counter.count_batch(texts), strict=True)
        ]
    return PromptSource(prompts, token_lengths=counter.token_lengths)


def token_length_note(config: object) -> str | None:
    """One line on how exact an interaction's input token lengths are; None without prompts.

    ``config`` is an interaction's configuration; only those with prompts (completion, chat,
    embedding) get a note.
    """
    if not isinstance(config, _PromptSource):
        return None
    if token_lengths_of(config) == "exact":
        return f"input token lengths are exact (tokenizer {config.tokenizer})"
    return (
        "input token lengths are approximate (1 token = 1 word; set tokenizer: for exact lengths)"
    )


def token_lengths_of(config: object) -> Literal["exact", "approximate"] | None:
    """``exact`` when an interaction's prompts are counted by a tokenizer, ``approximate``
    when by words, None for an interaction without prompts."""
    if not isinstance(config, _PromptSource):
        return None
    return "exact" if config.tokenizer is not None else "approximate"


def synthetic_prompts(
    config: SyntheticPrompts, *, seed: int, counter: TokenCounter | None = None
) -> list[Prompt]:
    """``config.count`` prompts of random words with lengths drawn from the distributions.

    With a tokenizer ``counter`` each prompt encodes to exactly its drawn length; without one
    (or with :class:`WordCounter`) a prompt of n tokens is n words.
    """
    gen = np.random.default_rng(seed)
    inputs = config.input_tokens.sample(gen, config.count)
    outputs: list[int | None] = (
        list(config.output_tokens.sample(gen, config.count))
        if config.output_tokens is not None
        else [None] * config.count
    )
    texts = (counter or WordCounter()).texts_of_lengths(inputs, gen)
    return [
        Prompt(text=text, input_tokens=n_in, output_tokens=n_out)
        for text, n_in, n_out in zip(texts, inputs, outputs, strict=True)
    ]


def load_dataset(
    config: DatasetPrompts, *, files: FileScope = ANYWHERE, counter: TokenCounter | None = None
) -> list[Prompt]:
    """Read a JSONL, ShareGPT-style JSON or CSV file into prompts (at most ``config.limit``).

    ``counter`` counts the input tokens (and ShareGPT answers' tokens); words by default.
    """
    path = files.resolve(config.path, "dataset.path")
    source = f"dataset {path}"
    if not path.is_file():
        raise ConfigError(
            ["file not found (a relative path is taken from the config's folder)"], source
        )
    try:
        fmt = config.format if config.format != "auto" else _sniff_format(path)
        # By value, not by fields set: a worker gets the config back from its JSON, defaults
        # and all.
        if fmt != "csv" and (
            config.column != "prompt" or config.output_tokens_column or config.image_column
        ):
            raise _DatasetProblems(
                [
                    "column, output_tokens_column and image_column apply to CSV files only, "
                    f"not {fmt}"
                ]
            )
        if fmt == "csv":
            rows = _read_csv(path, config)
        elif fmt == "jsonl":
            rows = _read_jsonl(path, config.limit)
        else:
            rows = _read_sharegpt(path, config.limit)
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from exc
    except _DatasetProblems as exc:
        raise ConfigError(exc.problems, source) from None
    if not rows:
        raise ConfigError(["no prompts in the file"], source)
    if any(row.images for row in rows):
        rows = _with_images_read(rows, files, source)
    return _count_tokens(rows, counter or WordCounter())


def _with_images_read(rows: list[_Row], files: FileScope, source: str) -> list[_Row]:
    """The rows with their image paths read into data URLs (each file once)."""
    from dataclasses import replace

    from clientswarm.interactions.media import image_reference

    cache: dict[str, str] = {}
    try:
        return [
            replace(row, images=tuple(image_reference(i, files, cache) for i in row.images))
            for row in rows
        ]
    except ConfigError as exc:
        raise ConfigError(exc.problems, source) from None


class _DatasetProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _Problems(FileProblems):
    """Problems found in a dataset: the first :data:`_MAX_PROBLEMS` and how many in all."""

    def __init__(self) -> None:
        super().__init__(_MAX_PROBLEMS)

    def raise_any(self) -> None:
        """Raise _DatasetProblems when there are problems, ending with "… and N more"."""
        if self.total:
            raise _DatasetProblems(self.lines)


@dataclass(frozen=True, slots=True)
class _Row:
    """A dataset entry before counting: its prompt and its output length or answer text."""

    text: str | None = None
    messages: tuple[Message, ...] | None = None
    output_tokens: int | None = None
    answer: str | None = None  # ShareGPT: the answer whose length is the output length
    later_turns: tuple[str, ...] = ()  # ShareGPT: the human turns after the first
    images: tuple[str, ...] = ()  # paths or URLs, then (once read) URLs

    def input_texts(self) -> list[str]:
        if self.text is not None:
            return [self.text]
        return [m["content"] for m in self.messages or () if isinstance(m["content"], str)]


def _count_tokens(rows: list[_Row], counter: TokenCounter) -> list[Prompt]:
    """The rows as prompts, their inputs (and answers) counted in one batch each."""
    texts: list[str] = []
    ends: list[int] = []
    for row in rows:
        texts.extend(row.input_texts())
        ends.append(len(texts))
    counts = counter.count_batch(texts)
    answered = [i for i, row in enumerate(rows) if row.answer is not None]
    answer_counts = dict(
        zip(answered, counter.count_batch([rows[i].answer or "" for i in answered]), strict=True)
    )
    prompts: list[Prompt] = []
    start = 0
    for i, (row, end) in enumerate(zip(rows, ends, strict=True)):
        output_tokens = row.output_tokens if row.answer is None else answer_counts[i] or None
        prompts.append(
            Prompt(
                text=row.text,
                messages=row.messages,
                input_tokens=sum(counts[start:end]),
                output_tokens=output_tokens,
                later_turns=row.later_turns,
                images=row.images,
            )
        )
        start = end
    return prompts


def _sniff_format(path: Path) -> Literal["jsonl", "sharegpt", "csv"]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    with path.open("rb") as f:
        head = f.read(4096).removeprefix(_UTF8_BOM).lstrip()
    if head.startswith(b"["):
        return "sharegpt"
    if head.startswith(b"{"):
        return "jsonl"
    raise _DatasetProblems(
        ["cannot tell the format from the name or the content; set format: jsonl, sharegpt or csv"]
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def _described(value: Any) -> str:
    """What a JSON value is, without showing it (errors never quote a file's content)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "a number below 1"
    return _json_kind(value)


def _json_problem(data: bytes, exc: orjson.JSONDecodeError, *, with_line: bool) -> str:
    """Why ``data`` is not JSON, in the standard library's words (clearer than orjson's)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        lineno = data.count(b"\n", 0, bad.start) + 1
        return f"line {lineno}: not valid UTF-8" if with_line else "not valid UTF-8"
    msg, lineno, colno = exc.msg, exc.lineno, exc.colno
    try:
        json.loads(text)
    except json.JSONDecodeError as std:
        msg, lineno, colno = std.msg, std.lineno, std.colno
    except ValueError:
        pass  # orjson is stricter (NaN, huge integers): keep its words
    where = f"line {lineno}: " if with_line else ""
    return f"{where}not valid JSON ({msg}: column {colno})"


def _read_jsonl(path: Path, limit: int | None) -> list[_Row]:
    rows: list[_Row] = []
    problems = _Problems()
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1:
                line = line.removeprefix(_UTF8_BOM)
            if not line.strip():
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                problems.add(f"line {lineno}: {_json_problem(line, exc, with_line=False)}")
                continue
            try:
                rows.append(_jsonl_row(entry))
            except ValueError as exc:
                problems.add(f"line {lineno}: {exc}")
                continue
            if limit is not None and len(rows) >= limit:
                break
    problems.raise_any()
    return rows


def _jsonl_row(entry: Any) -> _Row:
    if not isinstance(entry, dict):
        raise ValueError(f'expected an object with "prompt" or "messages", got {_json_kind(entry)}')
    output_tokens = entry.get("output_tokens")
    if output_tokens is not None and (
        not isinstance(output_tokens, int) or isinstance(output_tokens, bool) or output_tokens < 1
    ):
        raise ValueError(
            f"output_tokens must be a positive integer, got {_described(output_tokens)}"
        )
    images = _jsonl_images(entry.get("image"))
    if "prompt" in entry:
        prompt = entry["prompt"]
        if not isinstance(prompt, str):
            raise ValueError(f'"prompt" must be a string, got {_json_kind(prompt)}')
        if not prompt.strip():
            raise ValueError('"prompt" is empty')
        return _Row(text=prompt, output_tokens=output_tokens, images=images)
    if "messages" in entry:
        messages = entry["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError('"messages" must be a non-empty list of chat messages')
        checked = tuple(_check_message(m, i) for i, m in enumerate(messages))
        return _Row(messages=checked, output_tokens=output_tokens, images=images)
    raise ValueError('needs "prompt" or "messages"')


def _jsonl_images(value: Any) -> tuple[str, ...]:
    """A JSONL line's ``image``: a path or URL, or a list of them."""
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(
            f'"image" must be a path or URL, or a list of them, got {_json_kind(value)}'
        )
    return tuple(v.strip() for v in values)


def _check_message(message: Any, index: int) -> Message:
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("role"), str)
        or "content" not in message
    ):
        raise ValueError(f'messages[{index}] must be an object with "role" and "content"')
    return message


def _read_sharegpt(path: Path, limit: int | None) -> list[_Row]:
    data = path.read_bytes()
    try:
        entries = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _DatasetProblems([_json_problem(data, exc, with_line=True)]) from None
    if not isinstance(entries, list):
        raise _DatasetProblems(['expected a JSON list of {"conversations": [...]} entries'])
    rows: list[_Row] = []
    problems = _Problems()
    for index, entry in enumerate(entries):
        conversations = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(conversations, list):
            problems.add(f'entry {index}: expected an object with a "conversations" list')
            continue
        row = _sharegpt_row(conversations)
        if row is not None:
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    problems.raise_any()
    return rows


def _sharegpt_row(turns: list[Any]) -> _Row | None:
    """The first human turn, with the answer after it; None without one."""
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in _HUMAN_ROLES:
            continue
        text = turn.get("value")
        if not isinstance(text, str) or not text.strip():
            return None
        answer = ""  # no answer: no output length (max_tokens applies)
        for reply in turns[i + 1 :]:
            if isinstance(reply, dict) and reply.get("from") in _GPT_ROLES:
                value = reply.get("value")
                answer = value if isinstance(value, str) else ""
                break
        later = tuple(
            str(t["value"])
            for t in turns[i + 1 :]
            if isinstance(t, dict)
            and t.get("from") in _HUMAN_ROLES
            and isinstance(t.get("value"), str)
            and t["value"].strip()
        )
        return _Row(text=text, answer=answer, later_turns=later)
    return None


@contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    old = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _read_csv(path: Path, config: DatasetPrompts) -> list[_Row]:
    """A CSV (``.tsv``: tab-separated) file with a header row naming its columns."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # -sig: spreadsheets often start with a byte-order mark
    except UnicodeDecodeError as bad:
        lineno = data.count(b"\n", 0, bad.start) + 1
        raise _DatasetProblems([f"line {lineno}: not valid UTF-8"]) from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[_Row] = []
    problems = _Problems()
    with _csv_field_limit(_CSV_FIELD_LIMIT):
        try:
            header = _csv_header(reader)
            column, out_column = _csv_columns(header, config)
            image_at = header.index(config.image_column) if config.image_column else None
            while config.limit is None or len(rows) < config.limit:
                lineno = reader.line_num + 1  # where the row starts: a cell may span lines
                cells = next(reader, None)
                if cells is None:
                    break
                if not any(c.strip() for c in cells):
                    continue  # a blank line, or only separators
                try:
                    rows.append(_csv_row(cells, column, out_column, config, image_at))
                except ValueError as exc:
                    problems.add(f"line {lineno}: {exc}")
        except csv.Error as exc:
            problems.add(f"line {reader.line_num}: not valid CSV ({exc})")
    problems.raise_any()
    return rows


def _csv_header(reader: Iterator[list[str]]) -> list[str]:
    for cells in reader:
        if any(c.strip() for c in cells):
            return [c.strip() for c in cells]
    raise _DatasetProblems(["the file is empty (a CSV file needs a header row)"])


def _csv_columns(header: list[str], config: DatasetPrompts) -> tuple[int, int | None]:
    """Where the prompt and output-length columns are; a missing one lists the columns."""
    wanted = {
        "column": config.column,
        "output_tokens_column": config.output_tokens_column,
        "image_column": config.image_column,
    }
    missing = [
        f'no column "{name}" (set by {field})'
        for field, name in wanted.items()
        if name is not None and name not in header
    ]
    if missing:
        count = f"the header row has {len(header)} column{'s' if len(header) != 1 else ''}"
        raise _DatasetProblems([f"{m}; {count}" for m in missing])
    out = config.output_tokens_column
    return header.index(config.column), header.index(out) if out is not None else None


def _csv_row(
    cells: list[str],
    column: int,
    out_column: int | None,
    config: DatasetPrompts,
    image_at: int | None = None,
) -> _Row:
    text = cells[column] if column < len(cells) else ""
    if not text.strip():
        raise ValueError(f'the "{config.column}" cell is empty')
    output_tokens = None
    if out_column is not None:
        cell = cells[out_column].strip() if out_column < len(cells) else ""
        if cell:
            if not _POSITIVE_INT.fullmatch(cell) or int(cell) < 1:
                name = config.output_tokens_column
                got = "a whole number below 1" if _INTEGER.fullmatch(cell) else "other text"
                raise ValueError(f'"{name}" must be a positive integer, got {got}')
            output_tokens = int(cell)
    images: tuple[str, ...] = ()
    if image_at is not None:
        cell = cells[image_at].strip() if image_at < len(cells) else ""
        images = (cell,) if cell else ()
    return _Row(text=text, output_tokens=output_tokens, images=images)
