"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served with
their assets from the service itself: FastAPI's own pages load them from a CDN, which leaves
them blank on an air-gapped login node. The assets are vendored in
``clientswarm/service/assets/apidocs`` (versions, licences and hashes in its VENDORED.md).
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

ASSETS_PATH = "/docs-assets"
"""Where the pages' scripts, styles and icon are served."""

ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "swagger-ui.LICENSE": "text/plain; charset=utf-8",
    "redoc.LICENSE": "text/plain; charset=utf-8",
}
"""Every file served under :data:`ASSETS_PATH`, with its media type."""

CACHE_FOR_S = 86_400


def _asset(name: str) -> bytes:
    return resources.files("clientswarm.service").joinpath("assets", "apidocs", name).read_bytes()


def install_api_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets on ``app`` (created with ``docs_url`` and
    ``redoc_url`` None). Open like FastAPI's own pages: they hold no data, and the schema
    they show is public."""
    title = f"{app.title} API"
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            # No badge from validator.swagger.io: nothing may leave the machine.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            with_google_fonts=False,
        )

    cache: dict[str, bytes] = {}

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(status_code=404, detail=f"no such documentation asset: {name}")
        body = cache.get(name)
        if body is None:
            body = cache[name] = _asset(name)
        return Response(
            body, media_type=media_type, headers={"Cache-Control": f"max-age={CACHE_FOR_S}"}
        )


__all__ = ["ASSETS", "ASSETS_PATH", "install_api_docs"]
