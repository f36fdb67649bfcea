"""User agent → OS family: the user-agents family names, ``Other`` for anything unusable,
each distinct string parsed once."""

from __future__ import annotations

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
