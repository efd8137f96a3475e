"""WAL checkpoints of a SQLite store in a background thread, off the writers' path.

SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses its threshold: it copies
the WAL back into the database file and fsyncs both, which costs a sample batch about as much
time as inserting it. The store turns it off on its connections (``wal_autocheckpoint=0``) and
lets this thread checkpoint instead, with a connection of its own, while the writers carry on.

A ``PASSIVE`` checkpoint never waits, so it copies the bulk of the WAL back without slowing
anyone; but the WAL only starts over from its beginning when a writer begins while every frame
is copied back, which under continuous ingest never happens, so the file would grow without
bound. When the WAL holds more than ``restart_frames`` frames, the thread sets
:attr:`Checkpointer.restart_due`, and the next writer (holding the store's write lock, so no
writer of this process can interfere) runs :meth:`Checkpointer.restart`: a ``RESTART``
checkpoint that copies the little that is left and lets the WAL start over.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading

from clientswarm.store.engine import BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
"""How often the thread checkpoints."""

RESTART_FRAMES = 16_384
"""WAL length in frames (pages: 4 KiB by default) at which the next writer restarts it."""


class Checkpointer:
    """Checkpoints the WAL of one SQLite file every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self, path: str, *, interval_s: float | None = None, restart_frames: int | None = None
    ) -> None:
        self.path = path
        self.interval_s = INTERVAL_S if interval_s is None else interval_s
        self.restart_frames = RESTART_FRAMES if restart_frames is None else restart_frames
        self.restart_due = False
        """Set when the WAL grew past ``restart_frames``; cleared by :meth:`restart`."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"clientswarm-checkpoint:{path}", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last checkpoint that empties the WAL (idempotent)."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def restart(self, connection: sqlite3.Connection) -> None:
        """Copy the rest of the WAL back and let it start over; call with the write lock held.

        ``connection`` is the caller's own (in autocommit mode): this thread's is busy.
        """
        self.restart_due = False
        try:
            connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.OperationalError as exc:  # e.g. a long reader: the thread asks again
            log.debug("WAL restart of %s skipped: %s", self.path, exc)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:  # the writers fail alike, and say so
            log.warning("no background checkpoints of %s: %s", self.path, exc)
            return
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            while not self._stopping.wait(self.interval_s):
                self._checkpoint(conn)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception:  # a failed checkpoint must not take the service down
            log.exception("background checkpoints of %s stopped", self.path)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.OperationalError as exc:  # e.g. locked by another process: next time
            log.debug("checkpoint of %s skipped: %s", self.path, exc)
            return
        if frames > self.restart_frames:
            self.restart_due = True


__all__ = ["INTERVAL_S", "RESTART_FRAMES", "Checkpointer"]
