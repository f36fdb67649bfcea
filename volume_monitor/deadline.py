"""One deadline for a whole run (``VM_RUN_TIMEOUT``), however the time is spent: waiting for
the run lock, querying, scoring, writing, delivering.

Three things enforce it:

1. every query's server-side deadline is the sooner of ``VM_QUERY_TIMEOUT`` and the run's
   deadline (one second after it, so the run's own stop comes first), so the database stops
   the query however the client ends;
2. in the main thread, an alarm raises :class:`RunTimeout` when the deadline passes, so the
   run unwinds: its lock is released, its MLflow run ended, its transactions rolled back;
3. should the process still be running ``GRACE`` seconds later (a worker thread busy in a
   library call), a watchdog logs the same line and ends it with exit 1; the operating
   system then releases its lock.

Off the main thread (the built-in scheduler's jobs) only the first applies.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("volume_monitor")

GRACE = 30.0  # seconds the run has to unwind after its deadline before it is ended
QUERY_MARGIN = 1.0  # a query's server-side deadline comes this long after the run's

_ends: float | None = None  # time.monotonic() of the deadline, when one is set
_limit = 0.0
_expired = threading.Event()


class RunTimeout(BaseException):
    """The run passed ``VM_RUN_TIMEOUT``. Not an ``Exception``: no stage's broad error
    handler (a plot left out, a channel that failed) may take it for its own."""

    def __init__(self, seconds: float):
        super().__init__(message(seconds))


def message(seconds: float) -> str:
    return f"the run took longer than VM_RUN_TIMEOUT ({seconds:g} s) and was stopped"


@contextmanager
def limit(seconds: float) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now (none when 0)."""
    global _ends, _limit
    _expired.clear()
    if not seconds:
        yield
        return
    _ends, _limit = time.monotonic() + seconds, seconds
    log.debug("deadline: the run must end within %g s (VM_RUN_TIMEOUT)", seconds)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        watchdog = threading.Timer(seconds + GRACE, _end_process)
        watchdog.daemon = True
        watchdog.start()
    try:
        yield
    finally:
        _ends = None
        if in_main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if not _expired.is_set():  # else it ends the process should a thread hold it up
                watchdog.cancel()


def expired() -> bool:
    """Whether the deadline passed: an error met on the way out (a query the database
    stopped at the deadline) is then reported as the run's timeout."""
    return _expired.is_set() or (_ends is not None and time.monotonic() >= _ends)


def outcome(error: BaseException) -> tuple[str, int]:
    """The reason and exit code to report for the error that ended a run: past the deadline,
    the deadline (the error met on the way out, e.g. the query the database stopped then, is
    its consequence)."""
    if expired():
        return message(_limit), 1
    return str(error), getattr(error, "exit_code", 1)


def bounded(seconds: float | None) -> float | None:
    """``seconds`` (a query's own timeout), shortened so the query ends just after the run's
    deadline; :class:`RunTimeout` when that has already passed."""
    if _ends is None:
        return seconds
    left = _ends - time.monotonic()
    if left <= 0:
        _expired.set()
        raise RunTimeout(_limit)
    return min(seconds, left + QUERY_MARGIN) if seconds else left + QUERY_MARGIN


def _alarm(signum, frame) -> None:
    _expired.set()
    raise RunTimeout(_limit)


def _end_process() -> None:
    """The watchdog: the run did not unwind in time. One line, then exit 1."""
    line = f"{message(_limit)} (it did not stop within {GRACE:g} s more)"
    log.error("error: %s", line)
    for handler in logging.getLogger().handlers + log.handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(1)
