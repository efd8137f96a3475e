"""How the mock counts the images of a chat request and reads the audio of a transcription.

An image is ``ceil(width * height / 784)`` prompt tokens (one per 28 x 28 patch, as Qwen2-VL
counts), at least 1 and at most :data:`MAX_IMAGE_TOKENS`; its size is read from the head of a
PNG, GIF or JPEG data URL. An image whose size cannot be read (an ``http(s)`` URL, another
format) is :data:`UNKNOWN_IMAGE_TOKENS`. Its tokens are words made of a digest of the URL, so
the prefix cache reuses a repeated image as a server's multimodal cache would.

Audio is :data:`AUDIO_TOKENS_PER_S` prompt tokens per second (Whisper's encoder frames) and
its transcript :data:`WORDS_PER_S` words per second (speech at 150 words a minute); the length
is a WAV's own, else the file's bytes at 16 kHz 16-bit mono (32,000 bytes a second).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import struct
import wave
from typing import Any

MAX_IMAGE_TOKENS = 16_384
UNKNOWN_IMAGE_TOKENS = 576
PATCH_PIXELS = 28 * 28
AUDIO_TOKENS_PER_S = 50
WORDS_PER_S = 2.5
_BYTES_PER_S = 32_000
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE})


def image_tokens(width: int, height: int) -> int:
    """Prompt tokens of an image of ``width`` x ``height`` pixels."""
    return min(MAX_IMAGE_TOKENS, max(1, math.ceil(width * height / PATCH_PIXELS)))


def _decoded(url: str, head_chars: int | None) -> bytes | None:
    if not url.startswith("data:"):
        return None
    comma = url.find(",")
    if comma < 0 or not url[:comma].endswith(";base64"):
        return None
    data = url[comma + 1 :] if head_chars is None else url[comma + 1 : comma + 1 + head_chars]
    try:
        return base64.b64decode(data[: len(data) // 4 * 4])
    except (binascii.Error, ValueError):
        return None


def image_size(url: str) -> tuple[int, int] | None:
    """``(width, height)`` of a PNG, GIF or JPEG data URL; None when it cannot be read."""
    head = _decoded(url, 64)
    if head is None:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return width, height
    if head.startswith(b"\xff\xd8"):
        data = _decoded(url, None)
        return _jpeg_size(data) if data is not None else None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


IMAGE_PARTS = frozenset({"image_url", "input_image"})
"""The types of image parts: chat's ``image_url`` (``{"url": …}``) and the Responses API's
``input_image`` (the URL itself)."""


def image_words(messages: list[Any]) -> tuple[str, ...]:
    """The prompt tokens of every image part of chat ``messages`` (or Responses input items),
    as words."""
    words: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in IMAGE_PARTS:
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                continue
            size = image_size(url)
            n = image_tokens(*size) if size is not None else UNKNOWN_IMAGE_TOKENS
            digest = hashlib.blake2b(url.encode(), digest_size=8).hexdigest()
            words.extend(f"<img:{digest}:{i}>" for i in range(n))
    return tuple(words)


def audio_seconds(data: bytes) -> float:
    """The length of an audio file: a WAV's own, else its bytes at 32,000 a second."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            rate = wav.getframerate()
            if rate:
                return wav.getnframes() / rate
    except (wave.Error, EOFError):
        pass
    return len(data) / _BYTES_PER_S


def audio_tokens(seconds: float) -> int:
    """Prompt tokens of ``seconds`` of audio (at least 1)."""
    return max(1, math.ceil(seconds * AUDIO_TOKENS_PER_S))


def transcript_words(seconds: float) -> int:
    """Words of the transcript of ``seconds`` of audio (at least 1)."""
    return max(1, math.ceil(seconds * WORDS_PER_S))
