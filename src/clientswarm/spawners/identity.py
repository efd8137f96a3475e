"""Who a local worker process is beyond its pid, since pids are reused.

A pid names a process only while it lives: once a worker has ended and been reaped, the kernel
may give its pid to any new process (after a restart of the service, even to the service
itself). So the local spawner stores with each worker's pid the process's start time (field 22
of ``/proc/<pid>/stat``, clock ticks after boot, read while the worker is its unreaped child)
and the machine's boot id, and checks both before every signal and every "is it alive":

- a process at that pid with another start time, or a different boot, is not the worker: the
  worker has ended, and the process is never signalled;
- a signal goes through a pidfd opened *before* the check, so the process that passed the check
  is the one signalled even if the worker ends and its pid is reused in between (without
  pidfds, the check is made just before ``kill``);
- where the identity cannot be read (no ``/proc``, as on macOS) or was not stored (a state
  written by an older version), a process is signalled only through the ``Popen`` of the
  service that started it, never by pid after a restart; the workers then stop on the
  ``stop_all`` of their next heartbeat reply instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from dataclasses import dataclass

_START_FIELD = 19
"""Index of ``starttime`` (field 22) among the fields after ``comm`` in ``/proc/<pid>/stat``."""


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after ``(comm)``; None when there is no such process
    (or no procfs). ``comm`` may hold spaces and parentheses, hence the split on the last one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].decode().split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks after boot; None when unknown."""
    fields = _stat_fields(pid)
    return int(fields[_START_FIELD]) if fields is not None else None


@functools.cache
def boot_id() -> str | None:
    """This boot of the machine (start ticks restart from zero at each); None without procfs."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether some live process holds ``pid`` (a zombie counts as dead); says nothing about
    which process it is: see :class:`WorkerProcess`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: alive
        return True
    fields = _stat_fields(pid)
    return fields is None or fields[0] != "Z"  # no procfs (macOS): trust kill(0)


@dataclass(frozen=True)
class WorkerProcess:
    """A worker process as stored: its pid, and (when known) its start time and boot."""

    pid: int
    started: int | None = None
    """Start time in clock ticks after boot (:func:`start_ticks`)."""
    boot: str | None = None
    """The boot id of the machine when it started (:func:`boot_id`)."""

    @classmethod
    def of_child(cls, pid: int) -> WorkerProcess:
        """The identity of a child this process has not reaped yet (so ``pid`` is still it)."""
        return cls(pid, start_ticks(pid), boot_id())

    @property
    def verifiable(self) -> bool:
        """Whether the identity was recorded, so a process at ``pid`` can be checked."""
        return self.started is not None and self.boot is not None

    def is_it(self) -> bool:
        """Whether the process now at ``pid`` is this worker (False when it cannot be told)."""
        if not self.verifiable or boot_id() != self.boot:
            return False
        fields = _stat_fields(self.pid)
        return fields is not None and int(fields[_START_FIELD]) == self.started

    def alive(self) -> bool:
        """Whether this worker still runs: its pid is live and (when recorded) holds it."""
        if not self.verifiable:
            return pid_alive(self.pid)  # nothing to check against: the best there is
        fields = _stat_fields(self.pid)
        return (
            boot_id() == self.boot
            and fields is not None
            and int(fields[_START_FIELD]) == self.started
            and fields[0] != "Z"
        )

    def signal(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to this worker if it still runs; never to another process at its pid.
        True when it was sent."""
        try:
            pidfd: int | None = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return False
        except (AttributeError, OSError):  # no pidfd (macOS, Linux < 5.3): check, then kill
            pidfd = None
        try:
            if not self.is_it():
                return False
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(self.pid, sig)
            return True
        except ProcessLookupError:
            return False
        finally:
            if pidfd is not None:
                with contextlib.suppress(OSError):
                    os.close(pidfd)
