"""One scoring run at a time: an exclusive ``flock`` on a file in the results folder. A run
that finds it held waits for it, up to a bound (``VM_LOCK_WAIT``), then fails in one line: a
night is never skipped quietly. The operating system releases the lock when the process ends,
however it ends, so a crashed run never leaves a stale lock behind."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from volume_monitor.errors import AlreadyRunningError, ResultsError

log = logging.getLogger(__name__)

LOCK_FILE = ".volume-monitor.lock"
POLL = 0.5  # seconds between two tries of a held lock


@contextmanager
def held(folder: Path, wait: float = 0.0) -> Iterator[None]:
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
        handle.seek(0)
        handle.truncate()
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()} since {started}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _take(handle, folder: Path, wait: float) -> None:
    """Lock ``handle``, trying every ``POLL`` seconds for up to ``wait`` seconds."""
    ends, announced = time.monotonic() + wait, False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
        if time.monotonic() >= ends:
            raise AlreadyRunningError(
                f"another volume-monitor run held the lock of {folder} ({holder}) for "
                f"{wait:g} s (VM_LOCK_WAIT): this run scored nothing"
            )
        if not announced:
            log.warning("waiting up to %g s for the run lock of %s (%s)", wait, folder, holder)
            announced = True
        time.sleep(POLL)
