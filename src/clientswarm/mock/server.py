"""Build the mock target's aiohttp app and run it on a loopback port, in-process."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from clientswarm.mock.routes import add_routes, count_requests
from clientswarm.mock.settings import MockSettings
from clientswarm.mock.state import STATE_KEY, MockState

MAX_REQUEST_BYTES = 256 << 20
"""The largest request body the mock reads (aiohttp's default, 1 MiB, is less than one chat
request with a 512 x 512 image or one transcription of a minute of audio)."""
SHUTDOWN_TIMEOUT_S = 1.0
"""How long closing waits for handlers other than generation ones (those are cut at once)."""


def create_app(settings: MockSettings | None = None) -> web.Application:
    """The aiohttp application of a mock target with ``settings`` (defaults when ``None``)."""
    app = web.Application(middlewares=[count_requests], client_max_size=MAX_REQUEST_BYTES)
    app[STATE_KEY] = MockState(settings or MockSettings())
    add_routes(app)
    return app


class MockServer:
    """A running mock target; close it with :meth:`close` or use it as ``async with``."""

    def __init__(self, runner: web.AppRunner, settings: MockSettings, host: str, port: int):
        self._runner = runner
        self.settings = settings
        self.host = host
        self.port = port
        self._closed = False

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43117`` (no trailing slash)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def state(self) -> MockState:
        """The live state (engine, fault injector, counters) of this server."""
        return self._runner.app[STATE_KEY]

    async def close(self) -> None:
        """Stop listening, cut the answers still in progress, and free the port (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for site in list(self._runner.sites):
            await site.stop()
        for task in list(self.state.answering):
            task.cancel()  # a mock need not finish its streams; clients see a cut connection
        await self._runner.cleanup()

    async def __aenter__(self) -> MockServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_mock_server(
    settings: MockSettings | None = None, host: str = "127.0.0.1", port: int = 0
) -> MockServer:
    """Start a mock target on ``host:port`` (0 picks a free port) in the running event loop.

    ``settings.host`` and ``settings.port`` are ignored here; they are the CLI's.
    """
    settings = settings or MockSettings()
    runner = web.AppRunner(
        create_app(settings),
        access_log=None,
        handler_cancellation=True,  # a client that goes away frees its engine slot, like vLLM
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return MockServer(runner, settings, host, bound_port)
