"""Images and audio that multimodal requests carry: synthetic ones made from the seed, and files.

Synthetic images are PNGs of random pixels (written here with ``zlib``: no imaging library);
synthetic audio is a 16-bit mono WAV of a few tones under noise (the standard library's
``wave``). Both are made once, when an interaction is built, never per request. A file named
by a dataset or a config is read once and sent as a data URL (images) or as the file itself
(audio); an ``http(s)://`` or ``data:`` image is sent as it is.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import random
import struct
import wave
import zlib
from dataclasses import dataclass

import numpy as np

from clientswarm.config.interactions import SyntheticAudio, SyntheticImages
from clientswarm.config.paths import ANYWHERE, FileScope
from clientswarm.errors import ConfigError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}
_AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".mp4": "audio/mp4",
    ".webm": "audio/webm",
}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(pixels: np.ndarray) -> bytes:
    """A PNG of ``pixels`` (height x width x 3, uint8 RGB): one IDAT, no filtering."""
    height, width, _ = pixels.shape
    rows = np.zeros((height, width * 3 + 1), dtype=np.uint8)  # filter byte 0 (none) per row
    rows[:, 1:] = pixels.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
        + _png_chunk(b"IEND", b"")
    )


def data_url(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,<data>``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def synthetic_images(config: SyntheticImages, *, seed: int) -> tuple[str, ...]:
    """``config.distinct`` random PNG images as data URLs, the same for the same seed."""
    gen = np.random.default_rng([seed, 0x1A6E])
    shape = (config.height, config.width, 3)
    return tuple(
        data_url(png_bytes(gen.integers(0, 256, shape, dtype=np.uint8)), "image/png")
        for _ in range(config.distinct)
    )


class ImagePool:
    """The synthetic images of an interaction (``images``), made once; each request sends a
    prompt's own images, then ``images.count`` of the pool's picked at random."""

    __slots__ = ("per_request", "urls")

    def __init__(self, config: SyntheticImages | None, *, seed: int) -> None:
        self.urls = synthetic_images(config, seed=seed) if config is not None else ()
        self.per_request = config.count if config is not None else 0

    def for_request(self, own: tuple[str, ...], rng: random.Random) -> tuple[str, ...]:
        """The images of one request: ``own`` (a prompt's), then the picked ones."""
        if not self.per_request:
            return own
        urls, n = self.urls, len(self.urls)
        return own + tuple(urls[int(rng.random() * n)] for _ in range(self.per_request))


def image_reference(
    value: str, files: FileScope = ANYWHERE, cache: dict[str, str] | None = None
) -> str:
    """What an image part sends for ``value``: an ``http(s)``/``data:`` URL as it is, else the
    file at that path (resolved in ``files``) read as a data URL. ConfigError when unreadable."""
    if value.startswith(("http://", "https://", "data:")):
        return value
    if cache is not None and value in cache:
        return cache[value]
    path = files.resolve(value, "dataset image")
    mime = _IMAGE_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise ConfigError([f"{value}: not an image file name (.png, .jpg, .gif, .webp, .bmp)"])
    try:
        url = data_url(path.read_bytes(), mime)
    except OSError as exc:
        raise ConfigError([f"{value}: cannot read the image: {exc.strerror or exc}"]) from exc
    if cache is not None:
        cache[value] = url
    return url


def wav_seconds(data: bytes) -> float | None:
    """The length of a WAV file in seconds; None when ``data`` is not a WAV the standard
    library reads."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate else None
    except (wave.Error, EOFError):
        return None


@dataclass(frozen=True, slots=True)
class AudioClip:
    """One audio file to send: its file name, content type, bytes and length (None when not
    known: a file that is not WAV)."""

    filename: str
    mime: str
    data: bytes
    seconds: float | None


def synthetic_audio(config: SyntheticAudio, *, seed: int) -> tuple[AudioClip, ...]:
    """``config.distinct`` WAV clips of ``config.seconds``: a few tones under noise, changing
    every quarter second (a rough stand-in for speech), the same for the same seed."""
    gen = np.random.default_rng([seed, 0xA0D1])
    rate = config.sample_rate
    frames = max(1, round(config.seconds * rate))
    return tuple(
        AudioClip(f"audio-{index}.wav", "audio/wav", _tones(gen, frames, rate), frames / rate)
        for index in range(config.distinct)
    )


def _tones(gen: np.random.Generator, frames: int, rate: int) -> bytes:
    """A WAV of ``frames`` samples, made a few seconds at a time (bounded memory)."""
    segment = max(1, rate // 4)
    block = segment * 16
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        phase0 = 0.0
        for start in range(0, frames, block):
            n = min(block, frames - start)
            pitch = np.repeat(gen.uniform(90.0, 300.0, -(-n // segment)), segment)[:n]
            phase = phase0 + 2 * np.pi * np.cumsum(pitch) / rate
            phase0 = float(phase[-1])
            voice = np.sin(phase) + 0.5 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
            signal = 0.3 * voice / 1.75 + 0.05 * gen.standard_normal(n)
            samples = np.clip(signal * 32767, -32768, 32767).astype("<i2")
            wav.writeframes(samples.tobytes())
    return out.getvalue()


def audio_file(value: str, files: FileScope = ANYWHERE) -> AudioClip:
    """The audio file at ``value`` (resolved in ``files``); ConfigError when unreadable."""
    path = files.resolve(value, "files")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{value}: cannot read the audio file: {exc.strerror or exc}"]) from exc
    mime = _AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    seconds = wav_seconds(data)
    return AudioClip(path.name, mime or "application/octet-stream", data, seconds)


def multipart_body(boundary: str, fields: list[tuple[str, str]], clip: AudioClip) -> bytes:
    """A ``multipart/form-data`` body: the text ``fields`` in order, then ``file``."""
    dash = f"--{boundary}\r\n".encode()
    parts: list[bytes] = []
    for name, value in fields:
        parts.append(dash)
        parts.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        parts.append(value.encode() + b"\r\n")
    parts.append(dash)
    parts.append(
        f'Content-Disposition: form-data; name="file"; filename="{clip.filename}"\r\n'
        f"Content-Type: {clip.mime}\r\n\r\n".encode()
    )
    parts.append(clip.data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)
