"""What runs on this machine, read from ``/proc``: the tests' way to see that the workers of a
cluster are gone (a worker's command line names its cluster)."""

from __future__ import annotations

import time
from pathlib import Path


def processes_naming(word: str) -> list[int]:
    """The live processes with ``word`` as one argument of their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if word.encode() in argv:
            found.append(int(entry.name))
    return found


def processes_started(word: str, count: int, timeout_s: float = 10.0) -> list[int]:
    """The ``count`` processes naming ``word``, waited for: a process whose ``exec`` has just
    returned to its parent (``Popen`` returned) shows an empty command line until the kernel
    has finished loading it, which on a busy machine can take a while."""
    deadline = time.monotonic() + timeout_s
    while len(found := processes_naming(word)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def queued_connections(port: int) -> int:
    """Connections established to this machine's TCP ``port``, accepted or not (a listening
    socket's backlog holds the ones its server has not accepted yet)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                count += 1
    return count
