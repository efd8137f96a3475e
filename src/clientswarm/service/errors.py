"""Every error the service returns is JSON with a readable message.

Shape: ``{"error": {"status": 422, "message": "…", "problems": ["field: …", …]}}``;
``problems`` only for invalid input, one line per problem, the same lines the CLI prints.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from clientswarm.config.errors import show_value
from clientswarm.errors import ConfigError, SpawnerError
from clientswarm.service.manager import Conflict, Gone, NotFound

log = logging.getLogger("clientswarm.service")


def error_body(status: int, message: str, problems: list[str] | None = None) -> dict[str, Any]:
    """The JSON body of an error response."""
    error: dict[str, Any] = {"status": status, "message": message}
    if problems is not None:
        error["problems"] = problems
    return {"error": error}


def error_response(
    status: int,
    message: str,
    problems: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response in the service's shape."""
    return JSONResponse(error_body(status, message, problems), status_code=status, headers=headers)


PLAIN_STATUS: dict[type[Exception], int] = {
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    SpawnerError: 502,
}
"""Errors whose message is the whole answer, and their HTTP status."""


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure to a JSON error with the right status."""

    @app.exception_handler(ConfigError)
    async def _config(_: Request, exc: ConfigError) -> JSONResponse:
        lines = exc.problems
        return error_response(422, f"invalid configuration: {lines[0]}", lines)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        lines = [_request_problem(err) for err in exc.errors()]
        return error_response(422, f"invalid request: {lines[0]}", lines)

    async def _plain(_: Request, exc: Exception) -> JSONResponse:
        status = next(PLAIN_STATUS[k] for k in type(exc).__mro__ if k in PLAIN_STATUS)
        return error_response(status, str(exc))

    for kind in PLAIN_STATUS:
        app.add_exception_handler(kind, _plain)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: say so in the service's shape; the traceback goes to the log.
        log.error("unhandled error", exc_info=exc)
        return error_response(500, f"internal error ({type(exc).__name__}); see the service log")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return error_response(exc.status_code, str(exc.detail), headers=headers)


def _request_problem(err: Any) -> str:
    """One line for a request validation error: where (query, path, body), what, the value."""
    loc = [str(part) for part in err.get("loc", ())]
    where = f"{loc[0]} {'.'.join(loc[1:])}" if len(loc) > 1 else ".".join(loc) or "request"
    line = f"{where}: {err.get('msg', 'invalid')}"
    if "input" in err and err["input"] is not None:
        line += f"; got {show_value(err['input'])}"
    return line
