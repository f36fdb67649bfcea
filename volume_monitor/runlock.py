"""One scoring run at a time: an exclusive, non-blocking ``flock`` on a file in the results
folder. The operating system releases it when the process ends, however it ends, so a crashed
run never leaves a stale lock behind."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from volume_monitor.errors import AlreadyRunningError, ResultsError

LOCK_FILE = ".volume-monitor.lock"


@contextmanager
def held(folder: Path) -> Iterator[None]:
    """Hold the run lock of ``folder`` for the duration of the block; raise
    :class:`AlreadyRunningError` naming the holder when another run has it."""
    path = folder / LOCK_FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held across the yield
    except OSError as exc:
        reason = exc.strerror or exc
        raise ResultsError(f"cannot write the results to {folder} (run lock): {reason}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise AlreadyRunningError(
                f"another volume-monitor run is scoring ({holder}); this one did nothing"
            ) from None
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
