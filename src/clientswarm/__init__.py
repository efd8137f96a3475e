"""clientswarm: spawn many clients that load-test an AI inference service, measure everything.

The public API for writing interactions (see docs/guides/write-your-own-interaction.md):
:class:`Interaction`, :class:`Context`, :class:`StepFailed`, :class:`Response`. They are
imported on first use, so that ``import clientswarm.<module>`` (every command, every worker)
does not pay for the HTTP client and the models it may not need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clientswarm.interactions.llm import ChatResult, CompletionResult, EmbeddingResult
    from clientswarm.interactions.user import (
        Context,
        HttpStatusError,
        Interaction,
        Response,
        Span,
        StepFailed,
    )

__version__ = "0.1.0"

_PUBLIC = {
    "ChatResult": "clientswarm.interactions.llm",
    "CompletionResult": "clientswarm.interactions.llm",
    "EmbeddingResult": "clientswarm.interactions.llm",
    "Context": "clientswarm.interactions.user",
    "HttpStatusError": "clientswarm.interactions.user",
    "Interaction": "clientswarm.interactions.user",
    "Response": "clientswarm.interactions.user",
    "Span": "clientswarm.interactions.user",
    "StepFailed": "clientswarm.interactions.user",
}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'clientswarm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ChatResult",
    "CompletionResult",
    "Context",
    "EmbeddingResult",
    "HttpStatusError",
    "Interaction",
    "Response",
    "Span",
    "StepFailed",
    "__version__",
]
