"""The built-in target simulator: an OpenAI-compatible server with configurable latency and faults.

In-process use::

    async with await start_mock_server(MockSettings(ttft_ms=50, itl_ms=10)) as server:
        ...  # talk to server.url

From the shell: ``clientswarm mock-server --port 8000`` (or ``python -m clientswarm.mock.cli``).
"""

from clientswarm.mock.server import MockServer, create_app, start_mock_server
from clientswarm.mock.settings import Distribution, MockSettings

__all__ = ["Distribution", "MockServer", "MockSettings", "create_app", "start_mock_server"]
