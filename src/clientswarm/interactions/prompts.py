"""Where prompts come from: a fixed list, synthetic text of given token lengths, or a dataset.

Every source is built once, before a run, into a list of :class:`Prompt`; picking one during
the run is O(1). Without a tokenizer a token is one whitespace-separated word, which is how the
built-in simulator counts them; against a real model the server's ``usage`` gives the truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from clientswarm.config.interactions import DatasetPrompts, SyntheticPrompts, _PromptSource
from clientswarm.errors import ConfigError

Message = dict[str, Any]

# Short, common English words: most real tokenizers keep each (with its leading space) as one
# token, so "N words" stays close to "N tokens" against real models too.
_WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city name team minute idea kid body back parent "
    "face others level office door health person art war history party result change morning "
    "reason research girl guy moment air teacher force education foot boy age policy music "
    "market sense nation plan college interest death experience effect use class control care "
    "field development role effort rate heart drug show leader light voice wife police mind "
    "price report decision son view relationship town road arm difference value building action "
    "model season society tax director position player record paper space ground form event "
    "official matter center couple site project activity star table need court oil situation "
    "cost industry figure street image phone data picture practice piece land product doctor "
    "wall patient worker news test movie north love support technology step baby computer type "
    "attention film tree source organization hair window evidence population truth song river"
)

_HUMAN_ROLES = frozenset({"human", "user"})
_GPT_ROLES = frozenset({"gpt", "assistant", "chatgpt", "bard", "model"})
_MAX_PROBLEMS = 5


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

    def as_text(self) -> str:
        """The prompt as one string (chat messages' text contents joined by newlines)."""
        if self.text is not None:
            return self.text
        return "\n".join(m["content"] for m in self.messages or () if isinstance(m["content"], str))

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
    """A fixed, non-empty list of prompts to pick from at random."""

    __slots__ = ("_n", "_prompts")

    def __init__(self, prompts: list[Prompt]) -> None:
        if not prompts:
            raise ValueError("a prompt source needs at least one prompt")
        self._prompts = prompts
        self._n = len(prompts)

    def __len__(self) -> int:
        return self._n

    @property
    def prompts(self) -> list[Prompt]:
        """Every prompt, in source order."""
        return self._prompts

    def pick(self, rng: random.Random) -> Prompt:
        """One prompt chosen uniformly with ``rng``, in O(1)."""
        return self._prompts[int(rng.random() * self._n)]


def build_prompt_source(config: _PromptSource, *, seed: int, base_dir: Path) -> PromptSource:
    """Build the source an interaction config asks for; a bad dataset raises ConfigError.

    The same ``seed`` gives the same synthetic prompts on every worker; a relative dataset
    path is taken from ``base_dir`` (the folder of the configuration file).
    """
    if config.synthetic is not None:
        return PromptSource(synthetic_prompts(config.synthetic, seed=seed))
    if config.dataset is not None:
        return PromptSource(load_dataset(config.dataset, base_dir=base_dir))
    texts = config.prompts or []
    return PromptSource([Prompt(text=t, input_tokens=count_words(t)) for t in texts])


def synthetic_prompts(config: SyntheticPrompts, *, seed: int) -> list[Prompt]:
    """``config.count`` prompts of random words with lengths drawn from the distributions."""
    gen = np.random.default_rng(seed)
    inputs = config.input_tokens.sample(gen, config.count)
    outputs: list[int | None] = (
        list(config.output_tokens.sample(gen, config.count))
        if config.output_tokens is not None
        else [None] * config.count
    )
    vocabulary = np.array(_WORDS.split())
    words = vocabulary[gen.integers(0, len(vocabulary), size=sum(inputs))].tolist()
    prompts: list[Prompt] = []
    start = 0
    for n_in, n_out in zip(inputs, outputs, strict=True):
        text = " ".join(words[start : start + n_in])
        start += n_in
        prompts.append(Prompt(text=text, input_tokens=n_in, output_tokens=n_out))
    return prompts


def load_dataset(config: DatasetPrompts, *, base_dir: Path) -> list[Prompt]:
    """Read a JSONL or ShareGPT-style JSON file into prompts (at most ``config.limit``)."""
    path = Path(config.path).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    source = f"dataset {path}"
    if not path.is_file():
        raise ConfigError(
            ["file not found (a relative path is taken from the config's folder)"], source
        )
    try:
        fmt = config.format if config.format != "auto" else _sniff_format(path)
        prompts = (
            _read_jsonl(path, config.limit)
            if fmt == "jsonl"
            else _read_sharegpt(path, config.limit)
        )
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror or exc}"], source) from exc
    except _DatasetProblems as exc:
        raise ConfigError(exc.problems, source) from None
    if not prompts:
        raise ConfigError(["no prompts in the file"], source)
    return prompts


class _DatasetProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _sniff_format(path: Path) -> Literal["jsonl", "sharegpt"]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        return "sharegpt"
    if head.startswith(b"{"):
        return "jsonl"
    raise _DatasetProblems(
        ["cannot tell the format from the name or the content; set format: jsonl or sharegpt"]
    )


def _read_jsonl(path: Path, limit: int | None) -> list[Prompt]:
    prompts: list[Prompt] = []
    problems: list[str] = []
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                prompts.append(_jsonl_prompt(orjson.loads(line)))
            except (orjson.JSONDecodeError, ValueError) as exc:
                problems.append(f"line {lineno}: {exc}")
                if len(problems) >= _MAX_PROBLEMS:
                    break
            if limit is not None and len(prompts) >= limit:
                break
    if problems:
        raise _DatasetProblems(problems)
    return prompts


def _jsonl_prompt(entry: Any) -> Prompt:
    if not isinstance(entry, dict):
        raise ValueError('expected an object with "prompt" (a string) or "messages" (a list)')
    output_tokens = entry.get("output_tokens")
    if output_tokens is not None and (
        not isinstance(output_tokens, int) or isinstance(output_tokens, bool) or output_tokens < 1
    ):
        raise ValueError(f'"output_tokens" must be a positive integer, not {output_tokens!r}')
    prompt = entry.get("prompt")
    if isinstance(prompt, str):
        return Prompt(text=prompt, input_tokens=count_words(prompt), output_tokens=output_tokens)
    messages = entry.get("messages")
    if prompt is None and isinstance(messages, list) and messages:
        checked = tuple(_check_message(m, i) for i, m in enumerate(messages))
        return Prompt(
            messages=checked,
            input_tokens=_count_message_words(checked),
            output_tokens=output_tokens,
        )
    raise ValueError('expected "prompt" (a string) or "messages" (a non-empty list of messages)')


def _check_message(message: Any, index: int) -> Message:
    if (
        not isinstance(message, dict)
        or not isinstance(message.get("role"), str)
        or "content" not in message
    ):
        raise ValueError(f'messages[{index}] must be an object with "role" and "content"')
    return message


def _count_message_words(messages: tuple[Message, ...]) -> int:
    return sum(count_words(m["content"]) for m in messages if isinstance(m["content"], str))


def _read_sharegpt(path: Path, limit: int | None) -> list[Prompt]:
    try:
        entries = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise _DatasetProblems([f"line {exc.lineno}: invalid JSON: {exc.msg}"]) from None
    if not isinstance(entries, list):
        raise _DatasetProblems(['expected a JSON list of {"conversations": [...]} entries'])
    prompts: list[Prompt] = []
    for index, entry in enumerate(entries):
        conversations = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(conversations, list):
            raise _DatasetProblems(
                [f'entry {index}: expected an object with a "conversations" list']
            )
        prompt = _sharegpt_prompt(conversations)
        if prompt is not None:
            prompts.append(prompt)
            if limit is not None and len(prompts) >= limit:
                break
    return prompts


def _sharegpt_prompt(turns: list[Any]) -> Prompt | None:
    """The first human turn, with the word count of the answer after it; None without one."""
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in _HUMAN_ROLES:
            continue
        text = turn.get("value")
        if not isinstance(text, str) or not text.strip():
            return None
        output_tokens = None
        for answer in turns[i + 1 :]:
            if isinstance(answer, dict) and answer.get("from") in _GPT_ROLES:
                value = answer.get("value")
                output_tokens = count_words(value) if isinstance(value, str) else None
                break
        return Prompt(
            text=text, input_tokens=count_words(text), output_tokens=output_tokens or None
        )
    return None
