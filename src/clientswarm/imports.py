"""Loading code quickly on the start-up path of ``clientswarm run`` and its workers."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

NATIVE_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Variables that size the thread pools numpy's linear-algebra libraries start when numpy is
imported."""


def single_threaded_native_libraries() -> None:
    """Ask numpy's BLAS for one thread (unless the user's environment says otherwise).

    clientswarm's processes never multiply matrices, but importing numpy starts OpenBLAS's
    pool of one thread per core, whose start-up takes about 0.1 s of CPU on the other cores:
    on a small machine that is the core a worker (or the service) is loading its code on.
    Call it in a command's entry point, before numpy is imported; ``setdefault``, so a
    variable the user set wins.
    """
    for name in NATIVE_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


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


__all__ = ["collections_paused", "single_threaded_native_libraries"]
