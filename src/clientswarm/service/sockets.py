"""The service's listening socket, bound by us (so port 0 works in-process) and light to import:
``clientswarm run`` binds it before the service's code has loaded, and the workers it starts
meanwhile queue their first calls on it (see :mod:`clientswarm.run.start`)."""

from __future__ import annotations

import socket


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one).

    It queues connections from the moment it is bound: a client that connects before the
    server accepts waits in the queue instead of being refused.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    """The http URL of a bound socket (brackets around IPv6 hosts)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


__all__ = ["bind", "url_of"]
