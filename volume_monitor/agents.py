"""User agent → operating-system family, parsed once per distinct string.

Families are exactly ``user_agents.parse(ua).os.family`` (``Windows``, ``iOS``, ``Android``,
``Mac OS X``, …). The same rules are applied by ua-parser's native resolver when it is
installed (``ua-parser-rs``, about 200,000 strings a second, against about 1,000 through
``user_agents``); a string the native resolver cannot take goes through ``user_agents``. NULL,
empty, unparsable or otherwise broken strings become ``Other``.

:class:`FamilyCache` keeps the families found in earlier runs in a JSON file (``VM_UA_CACHE``):
the same agents come back every night, and only new ones are parsed.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from volume_monitor.files import write_atomic

log = logging.getLogger(__name__)

OTHER = "Other"
MAX_CACHED = 500_000  # agents kept in the cache file; the ones seen in the latest run first


@functools.lru_cache(maxsize=200_000)
def os_family(agent: str) -> str:
    """The OS family of one user-agent string (``Other`` when it cannot be told)."""
    if not agent.strip():
        return OTHER
    fast = _native_resolver()
    if fast is not None:
        try:
            found = fast(agent, _os_domain()).os
            return found.family if found is not None else OTHER
        except Exception:  # e.g. a lone surrogate the native parser refuses
            pass
    return slow_os_family(agent)


def slow_os_family(agent: str) -> str:
    """The family through ``user_agents`` itself: the reference the native path must match.
    Imported on first use: it compiles about 1,600 regular expressions (0.4 s), which a night
    whose agents are all cached never needs."""
    import user_agents

    try:
        family = user_agents.parse(agent).os.family
    except Exception:  # a parser failure on hostile input must not stop the night's run
        log.debug("unparsable user agent %r", agent[:200])
        return OTHER
    return family or OTHER


@functools.cache
def _native_resolver():
    """ua-parser's native (Rust) resolver over the same built-in OS rules, or None. The
    browser and device rules are left out: only the OS is asked for, and compiling them would
    cost memory for nothing."""
    from ua_parser import RegexResolver, load_lazy_builtins

    if RegexResolver is None:
        return None
    _, os_rules, _ = load_lazy_builtins()
    return RegexResolver(([], os_rules, []))


@functools.cache
def _os_domain():
    from ua_parser import Domain

    return Domain.OS


class FamilyCache:
    """Families of the user agents seen in earlier runs, read from and written to ``path``
    (nothing is kept without a path). The file records the version of the parsing rules and
    is ignored when they change; an unreadable file is ignored with a warning."""

    def __init__(self, path: Path | None):
        self.path = path
        self.families: dict[str, str] = self._read() if path else {}
        self.recent: dict[str, str] = {}  # the agents this run looked up
        self.added = 0
        self.parse_seconds = 0.0

    def lookup(self, agents: Sequence[str]) -> list[str]:
        """The family of each of ``agents``, in order, parsing only those not cached."""
        began = time.perf_counter()
        known = self.families.get
        found = [known(agent) for agent in agents]
        if None in found:
            found = [
                family or self._parse(agent) for agent, family in zip(agents, found, strict=True)
            ]
        self.parse_seconds += time.perf_counter() - began
        self.recent.update(zip(agents, found, strict=True))
        return found

    def _parse(self, agent: str) -> str:
        family = self.families.get(agent)  # the same text twice among ``agents``
        if family is None:
            family = self.families[agent] = os_family(agent)
            self.added += 1
        return family

    def save(self) -> None:
        """Write the cache when this run parsed new agents; a failure only costs a warning."""
        if not self.path or not self.added:
            return
        kept = self.families
        if len(kept) > MAX_CACHED:
            older = [(a, f) for a, f in kept.items() if a not in self.recent]
            kept = {**dict(older[: max(MAX_CACHED - len(self.recent), 0)]), **self.recent}
        text = json.dumps({"rules": _rules_version(), "families": kept})
        try:
            write_atomic(self.path, lambda p: p.write_text(text, encoding="utf-8"))
        except OSError as exc:
            log.warning("agents: cannot write the user-agent cache %s: %s", self.path, exc)
            return
        log.info("agents: %d new user agents cached (%d in %s)", self.added, len(kept), self.path)
        self.added = 0

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("agents: ignoring the unreadable user-agent cache %s: %s", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("rules") != _rules_version():
            log.info("agents: the parsing rules changed; the user-agent cache starts afresh")
            return {}
        families = data.get("families")
        return {str(a): str(f) for a, f in families.items()} if isinstance(families, dict) else {}


@functools.cache
def _rules_version() -> str:
    """The versions of the parsing rules: a cache written under other rules is not used."""
    return "/".join(
        f"{name} {metadata.version(name)}" for name in ("ua-parser", "ua-parser-builtins")
    )


def os_families(agents: pd.Series, cache: FamilyCache | None = None) -> pd.Series:
    """The OS family of every element of ``agents``; each distinct value is parsed once (and
    not at all when ``cache`` already knows it). Values stay Python objects until they are
    families, so no text (a lone surrogate, say) has to be valid UTF-8."""
    began = time.perf_counter()
    values = agents.to_numpy(dtype=object, na_value="")
    try:
        codes, distinct = pd.factorize(values)
    except TypeError:  # unhashable values, e.g. bytearray from a binary column
        codes, distinct = pd.factorize(np.frompyfunc(_hashable, 1, 1)(values))
    texts = [_as_text(value) for value in distinct]
    families = np.array((cache or FamilyCache(None)).lookup(texts), dtype=object)
    log.debug(
        "agents: %d distinct user agents -> %d OS families in %.2fs",
        len(distinct),
        len(set(families)),
        time.perf_counter() - began,
    )
    return pd.Series(families[codes], index=agents.index, dtype=str)


def _hashable(value: object) -> object:
    return bytes(value) if isinstance(value, bytearray) else value


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)
