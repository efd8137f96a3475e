"""Loading code quickly on the start-up path of ``clientswarm run`` and its workers."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collections_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (heavy imports), if it was running.

    Importing a library stack allocates hundreds of thousands of objects and frees almost
    none, so the collections it triggers find nothing and only cost time: about a tenth of
    the service's and the workers' import time here. Reference counting still frees
    everything as usual; cycles made in the block are collected after it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


__all__ = ["collections_paused"]
