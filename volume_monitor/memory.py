"""Handing freed memory back to the operating system between the stages of a large run.

pandas and Arrow free a stage's arrays, but glibc's allocator keeps the freed pages inside the
process: after a year of 20,000 series was read and reshaped, 560 MB of the 1.2 GB it held
were free pages that no later stage reused. :func:`give_back` returns them, so the next stage's
peak starts from what is really in use.
"""

from __future__ import annotations

import ctypes
import functools


def give_back() -> None:
    """Return the allocator's free pages to the operating system (glibc's ``malloc_trim``;
    nothing elsewhere). Takes milliseconds."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (macOS, musl)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim
