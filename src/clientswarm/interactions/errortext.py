"""The error message of a sample whose request got an HTTP error status.

One line that says what was asked and what came back, e.g.
``HTTP 404 POST /v1/v1/chat/completions: {"detail":"Not Found"}``: the status, the method, the
path (never the query string, which may carry a key) and the start of the body (never a
header). Every built-in interaction and the HTTP helpers of user-defined ones use it, streamed
or not.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_BODY_CHARS = 200
"""Characters of the answer's body an error message shows (then ``…``)."""
MAX_PATH_CHARS = 120
"""Characters of the request's path an error message shows (then ``…``)."""


def http_error_text(status: int, method: str, path: str, body: bytes, reason: str = "") -> str:
    """``HTTP <status> <METHOD> <path>: <start of the body>`` on one line, bounded in length.

    ``path`` may be a whole URL or a request target: only its path is shown. An empty body
    shows the reason phrase instead (``HTTP 503 GET /health: Service Unavailable``).
    """
    shown = _one_line(body[: MAX_BODY_CHARS * 4].decode("utf-8", errors="replace"))
    if not shown:
        shown = _one_line(reason) or "(empty body)"
    return f"HTTP {status} {method.upper()} {_cut(_path_of(path), MAX_PATH_CHARS)}: " + _cut(
        shown, MAX_BODY_CHARS
    )


def _path_of(target: str) -> str:
    """The path of a URL or request target, without its query string or fragment."""
    if target.startswith(("http://", "https://")):
        return urlsplit(target).path or "/"
    return target.split("?", 1)[0].split("#", 1)[0] or "/"


def _one_line(text: str) -> str:
    """``text`` with every run of whitespace (line feeds included) made one space."""
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = ["MAX_BODY_CHARS", "MAX_PATH_CHARS", "http_error_text"]
