"""``POST /v1/embeddings``: deterministic unit vectors, one per input, after ``embedding_ms``.

A vector depends only on its input and the dimension (not on the seed or on other inputs), so
the same text always embeds the same way, across runs and processes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from clientswarm.mock.openai import answer_fault_at_once, error_response
from clientswarm.mock.state import STATE_KEY
from clientswarm.mock.wire import count_words


def embedding_vector(item: str | list[int], dim: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The unit-length float32 vector of one input (a text or a list of token ids)."""
    key = item if isinstance(item, str) else " ".join(str(token) for token in item)
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    vector = rng.standard_normal(dim)
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def parse_inputs(body: Any) -> list[str | list[int]]:
    """The inputs of an embeddings request; raises ``ValueError`` with a readable message."""
    if not isinstance(body, dict) or "input" not in body:
        raise ValueError("request body must be a JSON object with an input field")
    raw = body["input"]
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(item, int) for item in raw):
            return [raw]
        if all(isinstance(item, str) for item in raw):
            return list(raw)
        if all(isinstance(item, list) and all(isinstance(t, int) for t in item) for item in raw):
            return list(raw)
    raise ValueError(
        "input must be a string, a non-empty list of strings, a list of token ids, "
        "or a list of lists of token ids"
    )


def _tokens(item: str | list[int]) -> int:
    return count_words(item) if isinstance(item, str) else len(item)


def _encode(vector: np.ndarray[Any, np.dtype[np.float32]], encoding: str) -> Any:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


async def embeddings(request: web.Request) -> web.StreamResponse:
    """``POST /v1/embeddings``: input str or list; ``encoding_format`` float (default) or base64."""
    state = request.app[STATE_KEY]
    settings = state.settings
    try:
        body = orjson.loads(await request.read())
        inputs = parse_inputs(body)
    except (orjson.JSONDecodeError, ValueError) as exc:
        return error_response(400, str(exc))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return error_response(400, f"encoding_format must be float or base64, got {encoding!r}")
    fault = state.faults.draw(stream=False)
    if fault is not None:
        return answer_fault_at_once(request, state, fault)
    if settings.embedding_ms > 0:
        await asyncio.sleep(settings.embedding_ms / 1000.0)
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": _encode(embedding_vector(item, settings.embedding_dim), encoding),
        }
        for index, item in enumerate(inputs)
    ]
    prompt_tokens = sum(_tokens(item) for item in inputs)
    model = body.get("model")
    document = {
        "object": "list",
        "data": data,
        "model": model if isinstance(model, str) else settings.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    return web.Response(body=orjson.dumps(document), content_type="application/json")
