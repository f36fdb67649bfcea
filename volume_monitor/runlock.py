"""One scoring run at a time: an exclusive ``flock`` on a file in the results folder. A run
that finds it held waits for it, up to a bound (``VM_LOCK_WAIT``), then fails in one line: a
night is never skipped quietly. The operating system releases the lock when the process ends,
however it ends, so a crashed run never leaves a stale lock behind.

A run waiting for the lock says so with a marker file beside it, itself locked while the run
waits (a marker left by a killed run is unlocked, and removed by the first run that sees it).
A long holder, a backfill, looks for markers between days and lets the waiting runs go first
(:meth:`Held.let_waiters_first`): the nightly run is not kept behind years of re-scoring.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from volume_monitor.errors import AlreadyRunningError, ResultsError

log = logging.getLogger(__name__)

LOCK_FILE = ".volume-monitor.lock"
WAITING = LOCK_FILE + ".waiting."  # + the waiting run's pid and thread
POLL = 0.5  # seconds between two tries of a held lock


class Held:
    """The run lock of ``folder``, held by this run."""

    def __init__(self, handle: IO[str], folder: Path, wait: float):
        self.handle, self.folder, self.wait = handle, folder, wait

    def let_waiters_first(self) -> int:
        """When runs are waiting for the lock: release it until each of them has had it, then
        take it back (waiting as any run would). Returns how many were waiting."""
        waiting = waiters(self.folder)
        if not waiting:
            return 0
        log.info("runlock: %d run(s) waiting for %s go first", waiting, self.folder)
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        ends = time.monotonic() + self.wait
        while waiters(self.folder) and time.monotonic() < ends:
            time.sleep(POLL / 5)
        _take(self.handle, self.folder, self.wait)
        _write_holder(self.handle)
        return waiting


@contextmanager
def held(folder: Path, wait: float = 0.0) -> Iterator[Held]:
    """Hold the run lock of ``folder`` for the duration of the block, waiting up to ``wait``
    seconds while another run has it; then raise :class:`AlreadyRunningError` naming the
    holder."""
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held across the yield
    except OSError as exc:
        reason = exc.strerror or exc
        raise ResultsError(f"cannot write the results to {folder} (run lock): {reason}") from None
    with handle:
        _take(handle, folder, wait)
        _write_holder(handle)
        try:
            yield Held(handle, folder, wait)
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def waiters(folder: Path) -> int:
    """How many runs are waiting for the lock of ``folder``; markers of runs that are gone
    are removed."""
    count = 0
    for marker in folder.glob(WAITING + "*"):
        try:
            with open(marker, encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            marker.unlink(missing_ok=True)  # unlocked: its run ended without taking the lock
        except BlockingIOError:
            count += 1
        except OSError:  # taken meanwhile, and removed by its run
            continue
    return count


def _take(handle, folder: Path, wait: float) -> None:
    """Lock ``handle``, trying every ``POLL`` seconds for up to ``wait`` seconds, with a
    waiting marker while it waits."""
    if _try(handle):
        return
    handle.seek(0)
    holder = handle.read().strip() or "another process"
    if wait > 0:
        ends = time.monotonic() + wait
        with _waiting(folder):
            log.warning("waiting up to %g s for the run lock of %s (%s)", wait, folder, holder)
            while time.monotonic() < ends:
                time.sleep(min(POLL, max(ends - time.monotonic(), 0)))
                if _try(handle):
                    return
    raise AlreadyRunningError(
        f"another volume-monitor run held the lock of {folder} ({holder}) for "
        f"{wait:g} s (VM_LOCK_WAIT): this run scored nothing"
    )


def _try(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextmanager
def _waiting(folder: Path) -> Iterator[None]:
    """A marker saying this run waits for the lock of ``folder``: locked under another name
    before it takes its own, so no run ever sees it unlocked while it waits. In a folder it
    cannot write to, the run waits unannounced."""
    me = f"{os.getpid()}.{threading.get_ident()}"
    joining, marker = folder / f"{LOCK_FILE}.joining.{me}", folder / f"{WAITING}{me}"
    handle = None
    try:
        handle = open(joining, "w", encoding="utf-8")  # noqa: SIM115 - held across the yield
        fcntl.flock(handle, fcntl.LOCK_EX)
        os.replace(joining, marker)
    except OSError:
        if handle is not None:
            handle.close()
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            with suppress(OSError):
                marker.unlink()
            handle.close()


def _write_holder(handle) -> None:
    handle.seek(0)
    handle.truncate()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    handle.write(f"pid {os.getpid()} since {started}")
    handle.flush()
