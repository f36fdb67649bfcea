"""User agent → operating-system family, parsed once per distinct string.

Families are exactly ``user_agents.parse(ua).os.family`` (``Windows``, ``iOS``, ``Android``,
``Mac OS X``, …). NULL, empty, unparsable or otherwise broken strings become ``Other``.
"""

from __future__ import annotations

import functools
import logging
import time

import pandas as pd
import user_agents

log = logging.getLogger(__name__)

OTHER = "Other"


@functools.lru_cache(maxsize=200_000)
def os_family(agent: str) -> str:
    """The OS family of one user-agent string (``Other`` when it cannot be told)."""
    if not agent.strip():
        return OTHER
    try:
        family = user_agents.parse(agent).os.family
    except Exception:  # a parser failure on hostile input must not stop the night's run
        log.debug("unparsable user agent %r", agent[:200])
        return OTHER
    return family or OTHER


def os_families(agents: pd.Series) -> pd.Series:
    """The OS family of every element of ``agents``; each distinct value is parsed once."""
    began = time.perf_counter()
    values = agents.astype(object).where(agents.notna(), "")
    try:
        distinct = pd.unique(values)
    except TypeError:  # unhashable values, e.g. bytearray from a binary column
        values = values.map(_hashable)
        distinct = pd.unique(values)
    families = {value: os_family(_as_text(value)) for value in distinct}
    log.info(
        "agents: %d distinct user agents -> %d OS families in %.2fs",
        len(distinct),
        len(set(families.values())),
        time.perf_counter() - began,
    )
    return values.map(families).astype(str)


def _hashable(value: object) -> object:
    return bytes(value) if isinstance(value, bytearray) else value


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)
