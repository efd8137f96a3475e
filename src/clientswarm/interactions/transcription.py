"""Audio transcription (``POST /v1/audio/transcriptions``): the ``transcription`` interaction.

Request: ``multipart/form-data`` with ``model``, ``response_format: json``, ``language`` (when
set), ``stream`` (``true`` also sends vLLM's ``stream_include_usage``), ``extra_fields`` and
last the ``file`` part. Every body is built once per clip and model: a request only picks one.
The clips are synthetic WAVs made from the seed or the configured ``files``
(:mod:`.media`), read once.

The answer: ``{"text": …}`` (with a ``usage`` in token names, kept when present), or with
``stream`` vLLM's SSE stream of ``transcription.chunk`` objects whose
``choices[0].delta.content`` carries the text, ended by ``data: [DONE]``: read like a chat
stream, so TTFT, ITL and (with usage) output tokens are measured as for chat. A sample has
no input tokens (the audio is not text); its length is the clip's, so the real-time factor
is E2E divided by ``audio.seconds``.
"""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from clientswarm.config.interactions import TranscriptionInteraction
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.interactions.base import ClientContext
from clientswarm.interactions.chunk_template import LearntTemplate
from clientswarm.interactions.http import BuiltinInteraction
from clientswarm.interactions.media import AudioClip, audio_file, multipart_body, synthetic_audio
from clientswarm.interactions.openai import Chat, chat_has_content, post_measured
from clientswarm.interactions.streaming import (
    ContentMarkers,
    Measurement,
    TargetError,
)
from clientswarm.metrics.sample import ERROR_PROTOCOL

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


def check_transcription(answer: dict[str, Any], m: Measurement) -> None:
    """Check a transcription answer (a ``text`` string) and record its token usage, in the
    OpenAI chat names; TargetError if it is malformed."""
    if answer.get("error"):
        raise TargetError(ERROR_PROTOCOL, f"error in a successful answer: {answer['error']}")
    if not isinstance(answer.get("text"), str):
        raise TargetError(ERROR_PROTOCOL, 'the transcription answer has no "text" string')
    usage = answer.get("usage")
    if isinstance(usage, dict):
        named = {
            "prompt_tokens": usage.get("prompt_tokens", usage.get("input_tokens")),
            "completion_tokens": usage.get("completion_tokens", usage.get("output_tokens")),
        }
        kept = {k: v for k, v in named.items() if isinstance(v, int) and not isinstance(v, bool)}
        if kept:
            m.usage = kept


def _form_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Transcription(BuiltinInteraction):
    """POST /v1/audio/transcriptions with one audio clip, picked at random per request."""

    kind = "transcription"
    config_model = TranscriptionInteraction
    path = TRANSCRIPTIONS_PATH
    content_markers: ClassVar[ContentMarkers] = Chat.content_markers

    def __init__(
        self, config: TranscriptionInteraction, *, seed: int = 0, files: FileScope = ANYWHERE
    ) -> None:
        super().__init__(config, seed=seed, files=files)
        if config.files is not None:
            self.clips: tuple[AudioClip, ...] = tuple(audio_file(f, files) for f in config.files)
        else:
            assert config.audio is not None  # the config gives synthetic audio by default
            self.clips = synthetic_audio(config.audio, seed=seed)
        self.stream = config.stream
        self._model = config.model
        self._language = config.language
        self._extra = config.extra_fields
        self._boundary = f"clientswarm-{secrets.token_hex(16)}"
        self._content_type = f"multipart/form-data; boundary={self._boundary}"
        self.learnt = LearntTemplate()
        """The token chunk template this interaction's streams share."""
        self._bodies: dict[tuple[int, str | None], bytes] = {}
        self._form_headers: dict[int, tuple[dict[str, str], dict[str, str]]] = {}

    def request_body(self, index: int, model: str | None) -> bytes:
        """The multipart body that sends clip ``index`` to ``model`` (built once)."""
        key = (index, model)
        body = self._bodies.get(key)
        if body is None:
            fields: list[tuple[str, str]] = [] if model is None else [("model", model)]
            fields.append(("response_format", "json"))
            if self._language is not None:
                fields.append(("language", self._language))
            if self.stream:
                fields += [("stream", "true"), ("stream_include_usage", "true")]
            fields += [(name, _form_value(value)) for name, value in self._extra.items()]
            body = self._bodies[key] = multipart_body(self._boundary, fields, self.clips[index])
        return body

    def form_headers(self, ctx: ClientContext) -> dict[str, str]:
        """The client's headers plus the multipart content type, built once per header dict."""
        cached = self._form_headers.get(id(ctx.headers))
        if cached is None or cached[0] is not ctx.headers:
            cached = (ctx.headers, {"Content-Type": self._content_type, **ctx.headers})
            self._form_headers[id(ctx.headers)] = cached
        return cached[1]

    async def exchange(self, ctx: ClientContext, m: Measurement) -> None:
        """Pick a clip, send it and measure the answer."""
        index = int(ctx.rng.random() * len(self.clips))
        await post_measured(
            ctx.http1,
            self.url(ctx, self.path),
            self.request_body(index, self._model or ctx.target.model),
            self.form_headers(ctx),
            ctx.target.timeout_s,
            m,
            ctx.clock.now_ns,
            what=self.kind,
            answer_key="text",
            stream=self.stream,
            content_of=chat_has_content,
            markers=self.content_markers,
            max_event_bytes=ctx.target.max_event_bytes,
            check=check_transcription,
            learnt=self.learnt,
        )
