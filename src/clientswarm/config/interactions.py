"""Parameters of the pre-built interactions, discriminated by ``kind``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from clientswarm.config.base import StrictModel
from clientswarm.config.lengths import LengthDist


class SyntheticPrompts(StrictModel):
    """Generated prompts with the given input and output token lengths."""

    input_tokens: LengthDist = Field(description="Prompt length in tokens")
    output_tokens: LengthDist | None = Field(
        default=None, description="Requested output length (max_tokens); none uses max_tokens"
    )
    count: int = Field(default=1000, ge=1, description="Number of distinct prompts to generate")


class DatasetPrompts(StrictModel):
    """Prompts read from a file: JSONL (prompt or messages per line) or ShareGPT-style JSON."""

    path: str
    format: Literal["auto", "jsonl", "sharegpt"] = "auto"
    limit: int | None = Field(default=None, ge=1, description="Use at most this many entries")


class _PromptSource(StrictModel):
    prompts: list[str] | None = Field(default=None, min_length=1, description="Fixed prompts")
    synthetic: SyntheticPrompts | None = None
    dataset: DatasetPrompts | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Any:
        given = [n for n in ("prompts", "synthetic", "dataset") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one prompt source, not {' and '.join(given)}")
        if not given:
            self.prompts = ["Hello! Who are you?"]
        return self


class HelloInteraction(StrictModel):
    """GET the target's hello-world route (target.hello_path) or the given path."""

    kind: Literal["hello"] = "hello"
    path: str | None = Field(default=None, description="Path to GET; default target.hello_path")


class HttpInteraction(StrictModel):
    """A plain HTTP request; any status below 400 (or in expect_status) succeeds."""

    kind: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    path: str = "/"
    body: Any = Field(default=None, description="JSON body")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[int] | None = Field(default=None, description="Statuses that succeed")


class _Generation(_PromptSource):
    stream: bool = True
    max_tokens: int | None = Field(default=128, ge=1, description="Output tokens to request")
    model: str | None = Field(default=None, description="Override target.model")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra request body fields passed as-is (e.g. vLLM's ignore_eos, top_k)",
    )


class CompletionInteraction(_Generation):
    """POST /v1/completions with one prompt."""

    kind: Literal["completion"] = "completion"


class ChatInteraction(_Generation):
    """POST /v1/chat/completions with one user message (after an optional system prompt)."""

    kind: Literal["chat"] = "chat"
    system_prompt: str | None = None


class EmbeddingInteraction(_PromptSource):
    """POST /v1/embeddings with ``batch_size`` inputs."""

    kind: Literal["embedding"] = "embedding"
    batch_size: int = Field(default=1, ge=1, le=4096)
    model: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict)


InteractionConfig = Annotated[
    HelloInteraction
    | HttpInteraction
    | CompletionInteraction
    | ChatInteraction
    | EmbeddingInteraction,
    Field(discriminator="kind"),
]
