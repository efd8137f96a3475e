"""WAL checkpoints of a SQLite store in a background thread, off the writers' path.

SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses its threshold: it copies
the WAL back into the database file and fsyncs both, which costs a sample batch about as much
time as inserting it. The store turns it off on its connections (``wal_autocheckpoint=0``) and
lets this thread checkpoint instead, with a connection of its own, while the writers carry on.

A ``PASSIVE`` checkpoint never waits for a writer, so under continuous ingest it may never
catch up and the WAL would grow without bound. Once the WAL holds more than ``restart_frames``
frames not yet copied back, the thread takes the store's write lock and runs a ``RESTART``
checkpoint, which copies the rest (little, since passive ones did the bulk) and lets the next
writer start the WAL from the beginning.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from typing import Any

from clientswarm.store.engine import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
"""How often the thread checkpoints."""

RESTART_FRAMES = 16_384
"""WAL frames (pages, 4 KiB by default) behind before a writer-blocking RESTART checkpoint."""

WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
"""A WAL file that grew past this is truncated back to it once it restarts."""


class Checkpointer:
    """Checkpoints the WAL of one SQLite file every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self,
        path: str,
        write_lock: Any,
        *,
        interval_s: float = INTERVAL_S,
        restart_frames: int = RESTART_FRAMES,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.restart_frames = restart_frames
        self._write_lock = write_lock
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"clientswarm-checkpoint:{path}", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last full checkpoint (idempotent)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
            while not self._stopping.wait(self.interval_s):
                self._checkpoint(conn)
            with self._write_lock, contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception:  # a failed checkpoint must not take the service down
            log.exception("background checkpoints of %s stopped", self.path)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if copied < frames > self.restart_frames:  # behind, and the WAL is long
                with self._write_lock:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.OperationalError as exc:  # e.g. locked by another process: next time
            log.debug("checkpoint of %s skipped: %s", self.path, exc)


__all__ = ["INTERVAL_S", "RESTART_FRAMES", "Checkpointer"]
