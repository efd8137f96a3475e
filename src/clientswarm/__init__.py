"""clientswarm: spawn many clients that load-test an AI inference service, measure everything.

The public API for writing interactions (see the README's "Write your own interaction"):
:class:`Interaction`, :class:`Context`, :class:`StepFailed`, :class:`Response`.
"""

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
