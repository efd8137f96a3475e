"""Parameters of the pre-built interactions, discriminated by ``kind``."""

from __future__ import annotations

import functools
import importlib.metadata
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clientswarm.config.base import StrictModel
from clientswarm.config.lengths import MAX_TOKENS, LengthDist
from clientswarm.config.paths import ConfigPath

MAX_GENERATED_PROMPTS = 1_000_000
"""Most prompts one generated source (``synthetic``, ``shared_prefix``) may make."""


class SyntheticPrompts(StrictModel):
    """Generated prompts with the given input and output token lengths."""

    input_tokens: LengthDist = Field(description="Prompt length in tokens")
    output_tokens: LengthDist | None = Field(
        default=None, description="Requested output length (max_tokens); none uses max_tokens"
    )
    count: int = Field(
        default=1000,
        ge=1,
        le=MAX_GENERATED_PROMPTS,
        description="Number of distinct prompts to generate",
    )


class SharedPrefixPrompts(StrictModel):
    """Groups of generated prompts that share a prefix (inference-perf's ``shared_prefix``).

    Each of ``groups`` groups has one prefix of ``prefix_tokens``; each of its
    ``prompts_per_group`` prompts is that prefix, a space and a question of its own of
    ``question_tokens``. A chat request sends the prompt as its user message, a completion as
    its prompt, so every request of a group starts with the same bytes: what a server's prefix
    cache (vLLM's automatic prefix caching) reuses. A conversation starts with a prompt and adds
    only questions after it.
    """

    groups: int = Field(
        default=10, ge=1, le=MAX_GENERATED_PROMPTS, description="Number of distinct prefixes"
    )
    prompts_per_group: int = Field(
        default=10,
        ge=1,
        le=MAX_GENERATED_PROMPTS,
        description="Prompts (questions) per prefix",
    )
    prefix_tokens: LengthDist = Field(
        description="Length of a group's shared prefix in tokens (drawn once per group)"
    )
    question_tokens: LengthDist = Field(description="Length of each prompt's own question")
    output_tokens: LengthDist | None = Field(
        default=None, description="Requested output length (max_tokens); none uses max_tokens"
    )

    @model_validator(mode="after")
    def _not_too_many(self) -> SharedPrefixPrompts:
        total = self.groups * self.prompts_per_group
        if total > MAX_GENERATED_PROMPTS:
            raise ValueError(
                f"groups * prompts_per_group = {total:,} prompts, more than the "
                f"{MAX_GENERATED_PROMPTS:,} allowed; use fewer groups or prompts per group"
            )
        return self


class DatasetPrompts(StrictModel):
    """Prompts read from a file: JSONL (prompt or messages per line), ShareGPT-style JSON or CSV.

    ``auto`` picks the format from the name (``.jsonl``/``.ndjson``, ``.csv``/``.tsv``) or else
    the content. ``column`` and ``output_tokens_column`` apply to CSV (and TSV) files only.
    """

    path: ConfigPath = Field(
        description="Dataset file; a relative path is from the config's folder (on a shared "
        "service: from its first allowed folder, and only inside the allowed folders)"
    )
    format: Literal["auto", "jsonl", "sharegpt", "csv"] = Field(
        default="auto", description="File format; auto picks it from the name or the content"
    )
    limit: int | None = Field(
        default=None, ge=1, le=10**12, description="Use at most this many entries"
    )
    column: str = Field(
        default="prompt", min_length=1, description="CSV: the column holding the prompt"
    )
    output_tokens_column: str | None = Field(
        default=None,
        min_length=1,
        description="CSV: a column with each prompt's output length (max_tokens); empty cells "
        "use max_tokens",
    )
    image_column: str | None = Field(
        default=None,
        min_length=1,
        description="CSV: a column with an image per row (a path, read and sent as a data URL, "
        'or an http(s) or data URL); a JSONL line has its images in an "image" field '
        "(a string or a list of them)",
    )


IMAGE_FORMATS = ("png",)
"""The formats of synthetic images (PNG is written with the standard library)."""
MAX_IMAGE_SIDE = 8192
"""The largest width or height of a synthetic image, in pixels."""
MAX_MEDIA_BYTES = 512 << 20
"""The most bytes of raw pixels (or audio samples) the synthetic images (or clips) of one
interaction may take: they are made once and held in memory on every worker."""


class SyntheticImages(StrictModel):
    """Synthetic images sent with every chat request, as ``image_url`` parts with data URLs.

    ``distinct`` random images of ``width`` x ``height`` are made once from the seed (the same
    on every worker); each request sends ``count`` of them, picked at random. Identical images
    let a server's multimodal cache skip their preprocessing: give ``distinct`` a larger value
    to make that rarer.
    """

    count: int = Field(default=1, ge=1, le=16, description="Images per request")
    width: int = Field(default=512, ge=8, le=MAX_IMAGE_SIDE, description="Width in pixels")
    height: int = Field(default=512, ge=8, le=MAX_IMAGE_SIDE, description="Height in pixels")
    format: Literal["png"] = Field(default="png", description="Image format (png)")
    distinct: int = Field(
        default=4, ge=1, le=256, description="Distinct images made once, picked per request"
    )

    @model_validator(mode="after")
    def _not_too_large(self) -> SyntheticImages:
        size = self.distinct * self.width * self.height * 3
        if size > MAX_MEDIA_BYTES:
            raise ValueError(
                f"distinct * width * height * 3 = {size:,} bytes of pixels, more than the "
                f"{MAX_MEDIA_BYTES:,} allowed; use fewer or smaller images"
            )
        return self


class _PromptSource(StrictModel):
    prompts: list[str] | None = Field(default=None, min_length=1, description="Fixed prompts")
    synthetic: SyntheticPrompts | None = None
    dataset: DatasetPrompts | None = None
    shared_prefix: SharedPrefixPrompts | None = None
    tokenizer: ConfigPath | None = Field(
        default=None,
        description="Path to a Hugging Face tokenizer.json; token lengths are then exact, "
        "otherwise approximate by words",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Any:
        sources = ("prompts", "synthetic", "dataset", "shared_prefix")
        given = [n for n in sources if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one prompt source, not {' and '.join(given)}")
        if not given:
            self.prompts = ["Hello! Who are you?"]
        return self


class HelloInteraction(StrictModel):
    """GET the target's hello-world route (target.hello_path) or the given path."""

    kind: Literal["hello"] = "hello"
    path: str | None = Field(
        default=None, pattern=r"^/", description="Path to GET; default target.hello_path"
    )


class HttpInteraction(StrictModel):
    """A plain HTTP request; any status below 400 (or in expect_status) succeeds."""

    kind: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    path: str = "/"
    body: Any = Field(default=None, description="JSON body")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, description="Statuses that succeed"
    )


class _Generation(_PromptSource):
    stream: bool = True
    max_tokens: int | None = Field(
        default=128, ge=1, le=MAX_TOKENS, description="Output tokens to request"
    )
    model: str | None = Field(default=None, description="Override target.model")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra request body fields passed as-is (e.g. vLLM's ignore_eos, top_k)",
    )


class CompletionInteraction(_Generation):
    """POST /v1/completions with one prompt."""

    kind: Literal["completion"] = "completion"


class ChatInteraction(_Generation):
    """POST /v1/chat/completions with one user message (after an optional system prompt).

    With ``images`` (or a dataset's images) the user message's content is a text part followed
    by one ``image_url`` part per image.
    """

    kind: Literal["chat"] = "chat"
    system_prompt: str | None = None
    images: SyntheticImages | None = Field(
        default=None, description="Synthetic images sent with every request"
    )


class ResponsesInteraction(_Generation):
    """POST /v1/responses (the OpenAI Responses API): the prompt as ``input``, the system prompt
    as ``instructions``, ``max_tokens`` as ``max_output_tokens``, ``store: false``."""

    kind: Literal["responses"] = "responses"
    system_prompt: str | None = Field(default=None, description="Sent as instructions")
    images: SyntheticImages | None = Field(
        default=None, description="Synthetic images sent with every request (input_image)"
    )


class MessagesInteraction(_Generation):
    """POST /v1/messages (the Anthropic Messages API, as vLLM serves it): the prompt's messages,
    the system prompt (and a dataset's system messages) as ``system``."""

    kind: Literal["messages"] = "messages"
    system_prompt: str | None = Field(default=None, description="Sent as system")
    max_tokens: int = Field(  # never None: the Messages API requires it
        default=128, ge=1, le=MAX_TOKENS, description="Output tokens to request (required)"
    )


class SyntheticAudio(StrictModel):
    """Synthetic speech-like audio: ``distinct`` WAV clips (16-bit mono) of a few tones and
    noise, made once from the seed; each request sends one, picked at random."""

    seconds: float = Field(default=5.0, gt=0, le=3600, description="Length of each clip")
    sample_rate: int = Field(default=16000, ge=8000, le=48000, description="Samples per second")
    distinct: int = Field(default=1, ge=1, le=64, description="Distinct clips made once")

    @model_validator(mode="after")
    def _not_too_long(self) -> SyntheticAudio:
        size = round(self.distinct * self.seconds * self.sample_rate * 2)
        if size > MAX_MEDIA_BYTES:
            raise ValueError(
                f"distinct * seconds * sample_rate * 2 = {size:,} bytes of samples, more than "
                f"the {MAX_MEDIA_BYTES:,} allowed; use fewer or shorter clips"
            )
        return self


class TranscriptionInteraction(StrictModel):
    """POST /v1/audio/transcriptions (multipart/form-data): one audio file per request.

    The audio is synthetic (``audio``) or read from ``files``; the form has ``file``,
    ``model``, ``response_format: json``, ``language`` when set and ``stream`` (a stream is
    read like a chat stream: TTFT, ITL and, with usage, output tokens).
    """

    kind: Literal["transcription"] = "transcription"
    audio: SyntheticAudio | None = Field(default=None, description="Synthetic audio clips")
    files: list[ConfigPath] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="Audio files (WAV, MP3, FLAC, …), one picked per request; a relative path "
        "is from the config's folder",
    )
    stream: bool = Field(default=False, description="Ask for an SSE stream (vLLM)")
    model: str | None = Field(default=None, description="Override target.model")
    language: str | None = Field(
        default=None, min_length=2, max_length=16, description="ISO-639-1 language, e.g. en"
    )
    extra_fields: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra form fields passed as-is (e.g. temperature, prompt)",
    )

    @model_validator(mode="after")
    def _one_audio_source(self) -> TranscriptionInteraction:
        if self.audio is not None and self.files is not None:
            raise ValueError("give one audio source, not audio and files")
        if self.audio is None and self.files is None:
            self.audio = SyntheticAudio()
        return self


class EmbeddingInteraction(_PromptSource):
    """POST /v1/embeddings with ``batch_size`` inputs."""

    kind: Literal["embedding"] = "embedding"
    batch_size: int = Field(default=1, ge=1, le=4096)
    model: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


class ConversationInteraction(_PromptSource):
    """A multi-turn chat: each turn asks the next user message with the whole history so far.

    The user messages of a conversation are the user turns of a dataset entry that has several
    (ShareGPT's human turns, a JSONL line's user ``messages``; up to ``turns``), else ``turns``
    prompts drawn from the prompt source (with ``shared_prefix``: the first turn is a whole
    prompt, its group's prefix and a question, and later turns are questions only). Each
    turn is a step ``turn-<n>`` (TTFT, ITL, tokens by turn number: how the growing history
    weighs); the conversation is the interaction.
    """

    kind: Literal["conversation"] = "conversation"
    turns: int = Field(default=3, ge=1, le=64, description="User turns per conversation")
    stream: bool = True
    max_tokens: int | None = Field(
        default=64, ge=1, le=MAX_TOKENS, description="Output tokens per turn"
    )
    model: str | None = Field(default=None, description="Override target.model")
    system_prompt: str | None = None
    turn_gap_s: float = Field(
        default=0.0, ge=0, le=3600, description="Pause between turns (the user reading, typing)"
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Extra request body fields passed as-is"
    )


BUILTIN_KINDS = (
    "hello",
    "http",
    "completion",
    "chat",
    "responses",
    "messages",
    "embedding",
    "conversation",
    "transcription",
)
"""The kinds of the pre-built interactions."""

ENTRY_POINT_GROUP = "clientswarm.interactions"
"""Entry-point group under which installed packages offer interactions by name."""

_MODULE_KIND = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_FILE_KIND = re.compile(r"^file:(?P<path>.+\.py):(?P<name>[A-Za-z_][\w.]*)$")
USER_KIND_PATTERNS = (_MODULE_KIND.pattern, r"^file:.+\.py:[A-Za-z_][\w.]*$")
"""The forms of a user-defined kind besides entry-point names, for the JSON Schema."""


@functools.cache
def entry_point_names() -> frozenset[str]:
    """Names of the interactions installed packages offer (``clientswarm.interactions``)."""
    return frozenset(ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def is_user_kind(kind: str) -> bool:
    """Whether ``kind`` names a user-defined interaction rather than a pre-built one."""
    return ":" in kind or kind in entry_point_names()


class CustomInteraction(BaseModel):
    """A user-defined interaction; every field besides kind, name and source is its parameter.

    ``kind`` is ``package.module:Name``, ``file:path/to/file.py:Name`` (relative to the
    configuration file) or the name of an installed entry point (group
    ``clientswarm.interactions``). Its parameters are checked against the interaction's own
    ``Params`` model when the configuration is validated.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    KIND_FORMS: ClassVar[tuple[str, ...]] = (
        "package.module:Name",
        "file:path/to/file.py:Name",
        "an installed entry point",
    )

    kind: str = Field(
        description="package.module:Name, file:path/to/file.py:Name or an entry point's name",
        json_schema_extra={"not": {"enum": list(BUILTIN_KINDS)}},  # so oneOf picks one model
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Name of the samples of one run of it (default: the class or function name)",
    )
    source: str | None = Field(
        default=None,
        repr=False,
        description="The source of a file: interaction, shipped inline to workers that do not "
        "share the files (clientswarm submit fills it in); a service accepts it only when "
        "started with --allow-inline-code",
    )

    @field_validator("kind")
    @classmethod
    def _kind_form(cls, kind: str) -> str:
        if kind.startswith("file:"):
            if not _FILE_KIND.match(kind):
                raise ValueError(
                    f"{kind!r} is not file:PATH.py:NAME (e.g. file:journeys.py:Journey)"
                )
        elif ":" in kind and not _MODULE_KIND.match(kind):
            raise ValueError(f"{kind!r} is not package.module:Name (e.g. mypkg.journeys:Journey)")
        return kind

    @model_validator(mode="after")
    def _source_of_a_file(self) -> CustomInteraction:
        if self.source is not None and not self.kind.startswith("file:"):
            raise ValueError("source is the text of a file: interaction; this kind names none")
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The interaction's parameters: every field besides kind, name and source."""
        return dict(self.model_extra or {})

    def file_parts(self) -> tuple[str, str] | None:
        """``(path, name)`` of a ``file:`` kind, else None."""
        match = _FILE_KIND.match(self.kind)
        return (match["path"], match["name"]) if match else None


def _mapping_only(value: Any) -> Any:
    """An interaction is a mapping with a ``kind`` (a bare ``chat`` gets a did-you-mean)."""
    if isinstance(value, dict | BaseModel):
        return value
    raise PydanticCustomError(
        "model_attributes_type",
        "Input should be a valid dictionary or object to extract fields from",
    )


def _interaction_tag(value: Any) -> str | None:
    """Pick the model of an interaction by its ``kind``: a built-in's, or the user one."""
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    if not isinstance(kind, str):
        return None
    if kind in BUILTIN_KINDS:
        return kind
    return "user" if is_user_kind(kind) else kind


InteractionConfig = Annotated[
    Annotated[HelloInteraction, Tag("hello")]
    | Annotated[HttpInteraction, Tag("http")]
    | Annotated[CompletionInteraction, Tag("completion")]
    | Annotated[ChatInteraction, Tag("chat")]
    | Annotated[ResponsesInteraction, Tag("responses")]
    | Annotated[MessagesInteraction, Tag("messages")]
    | Annotated[EmbeddingInteraction, Tag("embedding")]
    | Annotated[ConversationInteraction, Tag("conversation")]
    | Annotated[TranscriptionInteraction, Tag("transcription")]
    | Annotated[CustomInteraction, Tag("user")],
    Discriminator(_interaction_tag),
    BeforeValidator(_mapping_only),
]
