"""The web UI at ``/``: one page of plain JavaScript over the REST API (clusters, a cluster
live, submit with validation at each problem's line, results, compare), with every asset
served from the wheel (``assets/ui``, and uPlot from the report's ``reports/assets``): no CDN.

The page and its assets are open, like ``/docs``: they hold no data. Everything they show comes
from ``/api/v1`` with the token the user enters, which stays in the browser tab
(``sessionStorage``) and travels only in ``Authorization`` headers.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response

UI_PATH = "/ui"
"""Where the page's scripts and styles are served."""

_OWN = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_REPORT = {
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}
CACHE_FOR_S = 300

# The page may load only what the service serves, and send only to it. Inline scripts: the
# report and comparison pages it shows (self-contained, in sandboxed frames that inherit this
# policy) carry their charts' code inline.
_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob: about:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)


def _read(package: str, *parts: str) -> bytes:
    return resources.files(package).joinpath(*parts).read_bytes()


def ui_asset(name: str) -> tuple[bytes, str] | None:
    """An asset of the UI and its media type; None when there is no such asset."""
    if name in _OWN:
        return _read("clientswarm.service", "assets", "ui", name), _OWN[name]
    if name in _REPORT:
        return _read("clientswarm.reports", "assets", name), _REPORT[name]
    return None


def install_ui(app: FastAPI, *, token_required: bool) -> None:
    """Serve the UI's page at ``/`` and its assets under :data:`UI_PATH` on ``app``
    (``token_required``: whether the API asks for a token, which the page asks for first)."""
    cache: dict[str, tuple[bytes, str]] = {}

    @app.get(UI_PATH + "/session", include_in_schema=False)
    async def session() -> dict[str, bool]:
        return {"token_required": token_required}

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        page = _read("clientswarm.service", "assets", "ui", "index.html")
        return HTMLResponse(
            page, headers={"Content-Security-Policy": _POLICY, "Cache-Control": "no-cache"}
        )

    @app.get(UI_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        found = cache.get(name)
        if found is None:
            loaded = ui_asset(name)
            if loaded is None:
                raise HTTPException(status_code=404, detail=f"no such asset of the UI: {name}")
            found = cache[name] = loaded
        body, media_type = found
        return Response(
            body, media_type=media_type, headers={"Cache-Control": f"max-age={CACHE_FOR_S}"}
        )


__all__ = ["UI_PATH", "install_ui", "ui_asset"]
