"""Counting tokens: by words (the default) or exactly, with a local Hugging Face tokenizer.

Without a tokenizer a token is one whitespace-separated word, which is how the built-in
simulator counts them and roughly how real tokenizers count short English words. With
``tokenizer: path/to/tokenizer.json`` (the optional ``tokenizers`` package reads it) dataset
prompts are counted exactly and synthetic prompts are made to encode to exactly the drawn
number of tokens.

How :meth:`HfTokenizer.text_of_length` hits an exact length, in bounded steps:

1. Random words from :data:`WORDS` are joined until the text encodes to at least ``n`` tokens.
2. The token ids are cut to ``k = n``, decoded and the text re-encoded. Cutting inside a word
   or decoding can change the count (a word's pieces merge differently, spaces move), so ``k``
   moves by the miss (``k += n - count``) and the cut is tried again, a few times at most.
3. If no cut lands exactly, the closest text with fewer than ``n`` tokens is padded with one
   short word (or a punctuation mark) at a time, each checked to add exactly one token.

Every step re-encodes the text it returns, so the result is exact or an error says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

INSTALL_HINT = "pip install 'clientswarm[tokenizers]'"

TokenLengths = Literal["exact", "approximate"]

# Short, common English words: most real tokenizers keep each (with its leading space) as one
# token, so "N words" stays close to "N tokens" against real models too.
_WORD_LIST = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city name team minute idea kid body back parent "
    "face others level office door health person art war history party result change morning "
    "reason research girl guy moment air teacher force education foot boy age policy music "
    "market sense nation plan college interest death experience effect use class control care "
    "field development role effort rate heart drug show leader light voice wife police mind "
    "price report decision son view relationship town road arm difference value building "
    "action model season society tax director position player record paper space ground form "
    "event official matter center couple site project activity star table need court oil "
    "situation cost industry figure street image phone data picture practice piece land "
    "product doctor wall patient worker news test movie north love support technology step "
    "baby computer type attention film tree source organization hair window evidence "
    "population truth song river"
)
WORDS: tuple[str, ...] = tuple(_WORD_LIST.split())

_GROW_ROUNDS = 16  # step 1: rounds of adding words before giving up
_CUT_TRIES = 8  # step 2: cuts tried before padding
_PUNCTUATION = (".", ",", "!", "?", ";", ":")


class TokenCounter(Protocol):
    """Counts the tokens of a text and makes texts of a given number of tokens."""

    @property
    def token_lengths(self) -> TokenLengths:
        """``"exact"`` when counts are a real tokenizer's, ``"approximate"`` for words."""
        ...

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens such as BOS)."""
        ...

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """``count`` of each text, in order (a tokenizer encodes them in parallel)."""
        ...

    def text_of_length(self, n: int, rng: np.random.Generator) -> str:
        """Random text of ``n`` tokens, the same for the same ``rng`` state."""
        ...

    def texts_of_lengths(self, lengths: Sequence[int], rng: np.random.Generator) -> list[str]:
        """A random text for each length (faster than one ``text_of_length`` at a time)."""
        ...

    def fit_text(self, text: str, n: int) -> str:
        """``text`` cut or padded at its end to exactly ``n`` tokens (its start kept)."""
        ...


def random_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` words drawn uniformly from :data:`WORDS` with ``rng``."""
    return [WORDS[i] for i in rng.integers(0, len(WORDS), size=n)]


class WordCounter:
    """A token is one whitespace-separated word: what the built-in simulator counts."""

    token_lengths: TokenLengths = "approximate"

    def count(self, text: str) -> int:
        """Whitespace-separated words in ``text``."""
        return len(text.split())

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """Whitespace-separated words in each text."""
        return [len(t.split()) for t in texts]

    def text_of_length(self, n: int, rng: np.random.Generator) -> str:
        """``n`` random words joined by spaces."""
        return self.texts_of_lengths([n], rng)[0]

    def texts_of_lengths(self, lengths: Sequence[int], rng: np.random.Generator) -> list[str]:
        """Texts of the given numbers of random words, the words drawn in one go."""
        words = random_words(rng, sum(lengths))
        texts: list[str] = []
        start = 0
        for n in lengths:
            texts.append(" ".join(words[start : start + n]))
            start += n
        return texts

    def fit_text(self, text: str, n: int) -> str:
        """The first ``n`` words of ``text``, padded with filler words when it has fewer."""
        words = text.split()
        if len(words) < n:
            words += [WORDS[i % len(WORDS)] for i in range(n - len(words))]
        return " ".join(words[:n])


class HfTokenizer:
    """A Hugging Face ``tokenizer.json`` (read with the ``tokenizers`` package): exact counts."""

    token_lengths: TokenLengths = "exact"

    def __init__(self, tokenizer: Tokenizer, path: Path) -> None:
        self._tok = tokenizer
        self.path = path
        # Step 3's last good filler, tried first. It depends on earlier calls, so a prompt
        # source uses a fresh instance: the same seed then gives the same texts.
        self._filler: str | None = None

    @classmethod
    def from_file(cls, path: Path) -> HfTokenizer:
        """Load ``path``; ConfigError when ``tokenizers`` is missing or the file is unusable."""
        source = f"tokenizer {path}"
        if not path.is_file():
            raise ConfigError(
                ["file not found (a relative path is taken from the config's folder)"], source
            )
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ConfigError(
                [f"reading a tokenizer needs the tokenizers package: {INSTALL_HINT}"], source
            ) from None
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises plain Exception on bad files
            reason = str(exc).strip() or type(exc).__name__
            raise ConfigError(
                [f"cannot read it as a Hugging Face tokenizer.json: {reason}"], source
            ) from None
        # A tokenizer.json may ask to truncate or pad every encoding: counts need neither.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(tokenizer, path)

    def _ids(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def _decode(self, ids: list[int]) -> str:
        # Keep special tokens (an unknown-word token decodes to e.g. "[UNK]", which encodes
        # back to one token); dropping them would shorten the text.
        return self._tok.decode(ids, skip_special_tokens=False)

    def count(self, text: str) -> int:
        """Tokens in ``text`` without special tokens (no BOS/EOS, no chat template)."""
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def count_batch(self, texts: Sequence[str]) -> list[int]:
        """``count`` of each text, encoded in parallel."""
        if not texts:
            return []
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def text_of_length(self, n: int, rng: np.random.Generator) -> str:
        """Random words that encode to exactly ``n`` tokens (see the module's docstring)."""
        return self.texts_of_lengths([n], rng)[0]

    def texts_of_lengths(self, lengths: Sequence[int], rng: np.random.Generator) -> list[str]:
        """A text of exactly each length; the usual first tries are encoded in parallel."""
        if any(n < 1 for n in lengths):
            raise ValueError(f"a text needs at least one token, not {min(lengths)}")
        if not lengths:
            return []
        # 1. Enough words for at least n tokens: n words, and more where they fall short.
        words = [random_words(rng, n) for n in lengths]
        ids = [list(e.ids) for e in self._encode_batch([" ".join(w) for w in words])]
        for i, n in enumerate(lengths):
            if len(ids[i]) < n:
                ids[i] = self._grow(words[i], ids[i], n, rng)
        # 2. The first cut, at n, of every text at once; the few misses go on one by one.
        cuts = self._tok.decode_batch(
            [x[:n] for x, n in zip(ids, lengths, strict=True)], skip_special_tokens=False
        )
        counts = self.count_batch(cuts)
        return [
            text if got == n else self._fit(x, n, text, got)
            for x, n, text, got in zip(ids, lengths, cuts, counts, strict=True)
        ]

    def fit_text(self, text: str, n: int) -> str:
        """``text`` cut at ``n`` tokens (checked, as in step 2) or padded to them (step 3)."""
        if n < 1:
            raise ValueError(f"a text needs at least one token, not {n}")
        ids = self._ids(text)
        if len(ids) == n:
            return text
        if len(ids) < n:
            return self._pad(text, len(ids), n)
        cut = self._decode(ids[:n])
        got = self.count(cut)
        return cut if got == n else self._fit(ids, n, cut, got)

    def _encode_batch(self, texts: list[str]) -> list[Encoding]:
        return self._tok.encode_batch(texts, add_special_tokens=False)

    def _grow(
        self, words: list[str], ids: list[int], n: int, rng: np.random.Generator
    ) -> list[int]:
        """Step 1 for words that encode to fewer than ``n`` tokens: add words, a few rounds."""
        for _ in range(_GROW_ROUNDS):
            if len(ids) >= n:
                return ids
            words.extend(random_words(rng, n - len(ids)))
            ids = self._ids(" ".join(words))
        if len(ids) < n:
            raise self._cannot(n, f"{len(words)} words encode to only {len(ids)} tokens")
        return ids

    def _fit(self, ids: list[int], n: int, text: str, got: int) -> str:
        """Steps 2 and 3 after a first cut at ``n`` gave ``text`` of ``got`` tokens."""
        best_text, best_count = (text, got) if got < n else ("", 0)  # longest still under n
        tried = {n}
        k = n + (n - got)
        for _ in range(_CUT_TRIES):
            if k < 1 or k > len(ids) or k in tried:
                break
            tried.add(k)
            text = self._decode(ids[:k])
            got = self.count(text)
            if got == n:
                return text
            if best_count < got < n:
                best_text, best_count = text, got
            k += n - got
        # 3. Pad the closest shorter text one checked token at a time.
        return self._pad(best_text, best_count, n)

    def _pad(self, text: str, have: int, n: int) -> str:
        """``text`` of ``have`` < n tokens, padded with fillers that each add one token."""
        while have < n:
            # Fast path: all the missing tokens at once with the filler that worked last time.
            if self._filler is not None:
                candidate = _append(text, self._filler * (n - have))
                if self.count(candidate) == n:
                    return candidate
            for filler in self._fillers():
                candidate = _append(text, filler)
                if self.count(candidate) == have + 1:
                    text, have, self._filler = candidate, have + 1, filler
                    break
            else:
                raise self._cannot(n, "no word or punctuation mark adds exactly one token")
        return text

    def _fillers(self) -> list[str]:
        words = [f" {w}" for w in WORDS] + list(_PUNCTUATION)
        return [self._filler, *words] if self._filler is not None else words

    def _cannot(self, n: int, why: str) -> ConfigError:
        return ConfigError(
            [f"cannot make a text of exactly {n} tokens with this tokenizer ({why})"],
            f"tokenizer {self.path}",
        )


def load_token_counter(path: str | None, files: FileScope = ANYWHERE) -> TokenCounter:
    """The counter a config's ``tokenizer:`` asks for: words when None, else the file's.

    ``path`` resolves in ``files`` (a relative one from the configuration file's folder). Raises
    ConfigError naming the path when the file is missing or unreadable, and the install
    command when the optional ``tokenizers`` package is not installed.
    """
    if path is None:
        return WordCounter()
    return HfTokenizer.from_file(files.resolve(path, "tokenizer"))


def _append(text: str, filler: str) -> str:
    return text + filler if text else filler.lstrip()
