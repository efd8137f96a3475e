"""Interactions: what a client does once, measured into samples.

The seam is :class:`Interaction` (``base.py``); the built-ins are ``hello`` and ``http``
(``http.py``), ``completion``, ``chat`` and ``embedding`` (``openai.py``), ``responses``
(``responses.py``), ``messages`` (``messages.py``) and ``transcription``
(``transcription.py``), registered in ``registry.py``. ``sse.py`` decodes event streams,
``prompts.py`` supplies prompts, ``media.py`` images and audio, and ``streaming.py``
measures answers (TTFT, ITL, tokens).
"""

from clientswarm.interactions.base import ClientContext, Interaction
from clientswarm.interactions.http import BuiltinInteraction, Hello, HttpCall
from clientswarm.interactions.openai import Chat, Completion, Embedding
from clientswarm.interactions.prompts import Prompt, PromptSource, build_prompt_source
from clientswarm.interactions.registry import BUILTIN_INTERACTIONS, build_interaction
from clientswarm.interactions.sse import SSEDecoder, SSEEvent

__all__ = [
    "BUILTIN_INTERACTIONS",
    "BuiltinInteraction",
    "Chat",
    "ClientContext",
    "Completion",
    "Embedding",
    "Hello",
    "HttpCall",
    "Interaction",
    "Prompt",
    "PromptSource",
    "SSEDecoder",
    "SSEEvent",
    "build_interaction",
    "build_prompt_source",
]
