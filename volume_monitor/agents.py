"""User agent → operating-system family, parsed once per distinct string.

Families are exactly ``user_agents.parse(ua).os.family`` (``Windows``, ``iOS``, ``Android``,
``Mac OS X``, …). The same rules are applied by ua-parser's native resolver when it is
installed (``ua-parser-rs``, about 200,000 strings a second, against about 1,000 through
``user_agents``); a string the native resolver cannot take goes through ``user_agents``. NULL,
empty, unparsable or otherwise broken strings become ``Other``.

:class:`FamilyCache` keeps the families found in earlier runs in a JSON file (``VM_UA_CACHE``):
the same agents come back every night, and only new ones are parsed. It holds at most
``MAX_CACHED`` agents: past that, the least recently seen of those met on one run only are
forgotten first.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from volume_monitor.files import write_atomic

log = logging.getLogger(__name__)

OTHER = "Other"
# Agents kept, in memory and in the file: about 40 MB at 200 bytes an agent, and 1 s to parse
# again through the native resolver should they all come back.
MAX_CACHED = 200_000


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
    (nothing is kept without a path), in two parts: the *regular* agents, seen on two runs or
    more, and those seen on *one* run only. At most ``limit`` agents are held, in memory as in
    the file, whatever one night brings: past it, the least recently seen of the one-run
    agents are forgotten first, so a night of millions of one-off agents (a bot, a crawler)
    does not push out the agents every night brings. The file records the version of the
    parsing rules and is ignored when they change; an unreadable file is ignored with a
    warning."""

    def __init__(self, path: Path | None, limit: int = MAX_CACHED):
        self.path = path
        self.limit = limit
        self.regular: OrderedDict[str, str] = OrderedDict()  # seen on two runs or more
        self.earlier: OrderedDict[str, str] = OrderedDict()  # seen on one earlier run only
        self.tonight: OrderedDict[str, str] = OrderedDict()  # first seen by this run
        self.looked_up = 0  # agents asked for by this run (an agent may come in two batches)
        self.added = self.promoted = self.forgotten = 0
        self.parse_seconds = 0.0
        if path:
            self._read()

    @property
    def families(self) -> dict[str, str]:
        """Every agent held, and its family."""
        return {**self.earlier, **self.tonight, **self.regular}

    def lookup(self, agents: Sequence[str]) -> list[str]:
        """The family of each of ``agents``, in order, parsing only those not cached; each of
        them becomes the most recently seen, and one seen on an earlier run a regular."""
        began = time.perf_counter()
        regular, earlier, tonight = self.regular, self.earlier, self.tonight
        found = []
        for agent in agents:
            family = regular.get(agent)
            if family is not None:
                regular.move_to_end(agent)
            elif (family := tonight.get(agent)) is not None:
                tonight.move_to_end(agent)
            elif (family := earlier.pop(agent, None)) is not None:
                regular[agent] = family
                self.promoted += 1
            else:
                family = tonight[agent] = os_family(agent)
                self.added += 1
            found.append(family)
        self._trim()
        self.looked_up += len(agents)
        self.parse_seconds += time.perf_counter() - began
        return found

    def _trim(self) -> None:
        """Forget the least recently seen agents past ``limit``: one-run agents first."""
        parts = (self.earlier, self.tonight, self.regular)
        excess = sum(map(len, parts)) - self.limit
        for part in parts:
            while excess > 0 and part:
                part.popitem(last=False)
                excess -= 1
                self.forgotten += 1

    def save(self) -> None:
        """Write the cache, least recently seen first, when this run parsed new agents or
        found regular ones; a failure only costs a warning."""
        if not self.path or not (self.added or self.promoted):
            return
        once = {**self.earlier, **self.tonight}
        data = {"rules": _rules_version(), "regular": self.regular, "once": once}
        text = json.dumps(data)
        try:
            write_atomic(self.path, lambda p: p.write_text(text, encoding="utf-8"))
        except OSError as exc:
            log.warning("agents: cannot write the user-agent cache %s: %s", self.path, exc)
            return
        forgotten = f"; {self.forgotten} least recently seen forgotten" if self.forgotten else ""
        log.info("agents: %d new user agents cached (%d regular, %d seen once, in %s%s)",
                 self.added, len(self.regular), len(once), self.path, forgotten)  # fmt: skip
        self.added = self.promoted = self.forgotten = 0

    def _read(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("agents: ignoring the unreadable user-agent cache %s: %s", self.path, exc)
            return
        if not isinstance(data, dict) or data.get("rules") != _rules_version():
            log.info("agents: the parsing rules changed; the user-agent cache starts afresh")
            return
        self.regular = _families(data.get("regular"))
        self.earlier = _families(data.get("once", data.get("families")))  # older files: once
        self._trim()
        self.forgotten = 0


def _families(stored: object) -> OrderedDict[str, str]:
    if not isinstance(stored, dict):
        return OrderedDict()
    return OrderedDict((str(agent), str(family)) for agent, family in stored.items())


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
