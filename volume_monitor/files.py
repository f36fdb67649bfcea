"""Atomic writes: a file is written to a temporary sibling and renamed over its name, and a
folder is built beside its place and swapped in, so a killed run never leaves half a file, and
a rerun never leaves a file of an earlier verdict beside the new ones."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write`` on a temporary sibling of ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{_writer()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


@contextmanager
def replaced_folder(folder: Path) -> Iterator[Path]:
    """Yield an empty sibling of ``folder`` to fill; when the block ends without an error, it
    takes ``folder``'s place whole (the old one is removed), otherwise it is removed and
    ``folder`` stays as it was. Leftovers of a killed run are cleared first."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = folder.with_name(f".{folder.name}.{_writer()}.new")
    retired = folder.with_name(f".{folder.name}.{_writer()}.old")
    for stale in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    building.mkdir()
    try:
        yield building
        if folder.exists():
            os.replace(folder, retired)
        os.replace(building, folder)
    finally:
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)


def _writer() -> str:
    """Unique to this process and thread, so parallel writers never share a temporary name."""
    return f"{os.getpid()}-{threading.get_ident()}"
