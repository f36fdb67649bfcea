"""User agent → OS family: the user-agents family names, ``Other`` for anything unusable,
each distinct string parsed once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import user_agents

from volume_monitor.agents import OTHER, os_families, os_family

REAL_AGENTS = {
    "Windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mac OS X": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.1 Safari/605.1.15",
    "iOS": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
    "like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Linux": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Chrome OS": "Mozilla/5.0 (X11; CrOS x86_64 15633.69.0) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/119.0.6045.212 Safari/537.36",
    "Ubuntu": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Windows Phone": "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; "
    "IEMobile/10.0; ARM; Touch; NOKIA; Lumia 920)",
    "BlackBerry OS": "Mozilla/5.0 (BlackBerry; U; BlackBerry 9900; en) AppleWebKit/534.11+ "
    "(KHTML, like Gecko) Version/7.1.0.346 Mobile Safari/534.11+",
    "Fedora": "Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "FreeBSD": "Mozilla/5.0 (X11; FreeBSD amd64; rv:120.0) Gecko/20100101 Firefox/120.0",
}

ODD_STRINGS = {
    "empty": "",
    "whitespace": " \t\n  ",
    "garbage": "%%%###@@@!!!",
    "bot": "curl/8.4.0",
    "control characters": "\x00\x01\x02\x1b[31m\x7f",
    "lone surrogate": "\ud800bad",
    "10 KB of letters": "A" * 10_240,
    "10 KB of brackets": "Mozilla/5.0 (" + ";" * 10_240,
}


@pytest.fixture(autouse=True)
def fresh_cache():
    os_family.cache_clear()
    yield
    os_family.cache_clear()


@pytest.mark.parametrize(("family", "agent"), list(REAL_AGENTS.items()))
def test_real_agents_map_to_their_family(family, agent):
    assert os_family(agent) == family
    assert os_family(agent) == user_agents.parse(agent).os.family


def test_at_least_eight_distinct_families_are_told_apart():
    families = os_families(pd.Series(list(REAL_AGENTS.values())))
    assert list(families) == list(REAL_AGENTS)
    assert families.nunique() >= 8


@pytest.mark.parametrize("agent", list(ODD_STRINGS.values()), ids=list(ODD_STRINGS))
def test_odd_strings_become_other(agent):
    assert os_family(agent) == OTHER


def test_control_characters_around_a_real_agent_are_tolerated():
    agent = "\x00\x07" + REAL_AGENTS["Windows"] + "\x1b[0m"
    assert os_family(agent) == user_agents.parse(agent).os.family == "Windows"


def test_long_string_with_a_real_prefix_is_parsed():
    agent = REAL_AGENTS["Android"] + " " + "x" * 10_240
    assert os_family(agent) == "Android"


def test_nulls_empties_and_bytes_in_a_series():
    agents = pd.Series(
        [
            None,
            np.nan,
            pd.NA,
            "",
            "   ",
            "garbage ### garbage",
            REAL_AGENTS["Windows"].encode("utf-8"),
            b"\xff\xfe\x00 not utf-8",
            REAL_AGENTS["iOS"],
        ],
        dtype=object,
    )
    families = os_families(agents)
    assert list(families) == [OTHER] * 6 + ["Windows", OTHER, "iOS"]
    assert all(isinstance(value, str) for value in families)


def test_a_float_series_of_nan_is_all_other():
    families = os_families(pd.Series([np.nan, np.nan], dtype=float))
    assert list(families) == [OTHER, OTHER]


def test_os_families_parses_each_distinct_string_once():
    distinct = [REAL_AGENTS["Windows"], REAL_AGENTS["iOS"], REAL_AGENTS["Fedora"], "curl/8.4.0"]
    agents = pd.Series([distinct[i % 4] for i in (0, 1, 0, 2, 0, 1, 3, 3, 0, 2)])
    families = os_families(agents)
    info = os_family.cache_info()
    assert info.misses == len(distinct)
    assert info.hits == 0
    assert os_families(agents).equals(families)
    assert os_family.cache_info().misses == len(distinct)


def test_nulls_are_looked_up_once_as_a_single_empty_string():
    agents = pd.Series([None, REAL_AGENTS["Linux"], np.nan, "", REAL_AGENTS["Linux"], None])
    families = os_families(agents)
    assert list(families) == [OTHER, "Linux", OTHER, OTHER, "Linux", OTHER]
    assert os_family.cache_info().misses == 2


def test_os_families_preserves_order_length_and_index():
    index = pd.Index([30, 10, 20, 50, 40])
    agents = pd.Series(
        [
            REAL_AGENTS["Ubuntu"],
            REAL_AGENTS["Mac OS X"],
            None,
            REAL_AGENTS["Ubuntu"],
            REAL_AGENTS["Chrome OS"],
        ],
        index=index,
    )
    families = os_families(agents)
    assert len(families) == len(agents)
    assert list(families.index) == list(index)
    assert list(families) == ["Ubuntu", "Mac OS X", OTHER, "Ubuntu", "Chrome OS"]


def test_os_families_of_an_empty_series_is_empty():
    assert os_families(pd.Series([], dtype=object)).empty


def test_os_families_does_not_change_its_input():
    agents = pd.Series([None, REAL_AGENTS["Windows"], ""], dtype=object)
    before = agents.copy()
    os_families(agents)
    pd.testing.assert_series_equal(agents, before)


def test_bytearray_values_are_decoded():
    agents = pd.Series([bytearray(REAL_AGENTS["Android"].encode("utf-8"))], dtype=object)
    assert list(os_families(agents)) == ["Android"]


# Real strings beyond the demo's families: bots, apps, consoles, TVs, old and odd platforms.
MORE_REAL_AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; SV1)",
    "Mozilla/5.0 (PlayStation 4 3.11) AppleWebKit/537.73 (KHTML, like Gecko)",
    "Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) "
    "NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393",
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-A536B Build/TP1A.220624.014)",
    "MyApp/5.2.1 (iPhone; iOS 17.2; Scale/3.00)",
    "okhttp/4.12.0",
    "Mozilla/5.0 (X11; OpenBSD amd64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/534.30 "
    "(KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
    "Opera/9.80 (J2ME/MIDP; Opera Mini/9.80 (S60; SymbOS; Opera Mobi/23.348; U; en) "
    "Presto/2.5.25 Version/10.54",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "python-requests/2.31.0",
    "Java/17.0.9",
]


def test_the_native_path_gives_the_user_agents_family_on_every_string():
    from volume_monitor.agents import _native_resolver, slow_os_family
    from volume_monitor.demo import agent_pool

    assert _native_resolver() is not None, "ua-parser-rs is a dependency"
    pool = agent_pool(np.random.default_rng(3), 40)
    strings = [
        *REAL_AGENTS.values(), *MORE_REAL_AGENTS, *ODD_STRINGS.values(),
        *(a for agents in pool.values() for a in agents if a),
    ]  # fmt: skip
    for agent in strings:
        expected = user_agents.parse(agent).os.family if agent.strip() else OTHER
        assert os_family(agent) == slow_os_family(agent) == (expected or OTHER), agent[:80]
    assert len({os_family(a) for a in strings}) >= 15


def test_the_cache_file_keeps_families_across_runs(tmp_path):
    from volume_monitor.agents import FamilyCache

    path = tmp_path / "cache" / "families.json"
    first = FamilyCache(path)
    agents = pd.Series([REAL_AGENTS["iOS"], REAL_AGENTS["Fedora"], None, REAL_AGENTS["iOS"]])
    assert list(os_families(agents, first)) == ["iOS", "Fedora", OTHER, "iOS"]
    assert first.added == 3
    first.save()
    stored = json.loads(path.read_text())
    assert stored["once"] == {REAL_AGENTS["iOS"]: "iOS", REAL_AGENTS["Fedora"]: "Fedora",
                              "": OTHER}  # fmt: skip
    assert stored["regular"] == {}
    os_family.cache_clear()
    second = FamilyCache(path)
    more = pd.Series([REAL_AGENTS["Fedora"], REAL_AGENTS["Windows"]])
    assert list(os_families(more, second)) == ["Fedora", "Windows"]
    assert second.added == 1 and os_family.cache_info().misses == 1, "only the new agent parsed"
    second.save()
    stored = json.loads(path.read_text())
    assert stored["regular"] == {REAL_AGENTS["Fedora"]: "Fedora"}, "seen on a second run"
    assert len(stored["once"]) == 3


def test_a_cache_written_under_other_rules_or_unreadable_is_ignored(tmp_path, caplog):
    from volume_monitor.agents import FamilyCache

    path = tmp_path / "families.json"
    path.write_text(json.dumps({"rules": "ua-parser 0.1", "families": {"x": "Windows"}}))
    assert FamilyCache(path).families == {}
    path.write_text("{not json")
    with caplog.at_level("WARNING"):
        assert FamilyCache(path).families == {}
    assert "ignoring the unreadable user-agent cache" in caplog.text
    blocked = FamilyCache(tmp_path / "a-file" / "families.json")
    (tmp_path / "a-file").write_text("a file where a folder should be")
    blocked.lookup(["curl/8.4.0"])
    blocked.save()  # a warning, not a failure
    assert "cannot write the user-agent cache" in caplog.text


def test_the_cache_forgets_the_least_recently_seen_agents_whatever_one_night_brings(tmp_path):
    """At most ``limit`` agents, in memory and in the file; one-run agents go first, so a
    night of a thousand one-off agents leaves the agents every night brings in place."""
    from volume_monitor.agents import FamilyCache

    path = tmp_path / "families.json"
    old = FamilyCache(path, limit=4)
    old.lookup(["curl/8.0.0", "curl/8.1.0", "curl/8.2.0"])
    old.save()
    usual = FamilyCache(path, limit=4)
    usual.lookup(["curl/8.0.0", "curl/8.1.0"])  # a second night: regulars now
    usual.save()
    flood = FamilyCache(path, limit=4)
    families = flood.lookup([f"bot/{n}" for n in range(1000)] + [REAL_AGENTS["Windows"]])
    assert families[-1] == "Windows" and families[0] == OTHER
    assert len(flood.families) == 4 and flood.forgotten == 1001 - 2 + 1
    flood.save()
    stored = json.loads(path.read_text())
    assert list(stored["regular"]) == ["curl/8.0.0", "curl/8.1.0"], "the regulars survive"
    assert list(stored["once"]) == ["bot/999", REAL_AGENTS["Windows"]], "the latest one-offs"
    after = FamilyCache(path, limit=4)
    after.lookup(["curl/8.0.0", "curl/8.1.0"])
    assert after.added == 0, "the next night parses nothing"
    assert len(FamilyCache(path, limit=1).families) == 1, "a smaller limit keeps the latest"
    old_format = tmp_path / "old.json"
    old_format.write_text(json.dumps({"rules": stored["rules"], "families": {"curl/1": "Other"}}))
    assert FamilyCache(old_format).families == {"curl/1": "Other"}, "an older file is read"
