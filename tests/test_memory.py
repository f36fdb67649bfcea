"""Freed memory handed back to the operating system between the stages of a large run."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from volume_monitor import memory


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_give_back_returns_the_free_pages_that_the_allocator_keeps():
    blocks = [bytes(2048) for _ in range(100_000)]  # ~200 MB in the malloc heap
    del blocks[:-1]  # the last block stays: the heap's top cannot shrink past it
    kept = resident_mb()
    memory.give_back()
    returned = (kept - resident_mb()) / 1024
    assert returned > 100, f"only {returned:.0f} MB went back to the system"
