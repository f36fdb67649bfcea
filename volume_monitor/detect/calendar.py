"""Day kinds: the weekday (Monday 0 .. Sunday 6), or ``HOLIDAY`` on a public holiday of the
monitor's country and subdivision, from the ``holidays`` package; and the names of the days
that may not be like their weekday: the public holidays and the country's other observances
the package knows (in the United States: Christmas Eve, New Year's Eve, Good Friday, …)."""

from __future__ import annotations

import datetime as dt

import holidays
import numpy as np
import pandas as pd

HOLIDAY = 7
DAY_KINDS = 8
AROUND_HOLIDAYS = 3  # days either side of a public holiday that may not be like their weekday


def day_kinds(dates: pd.Series, where: str) -> np.ndarray:
    """Each date's weekday, or ``HOLIDAY`` on a public holiday of ``where`` (``US``,
    ``AU-VIC``, ``DE-BY``; empty: none)."""
    dates = pd.to_datetime(dates)
    weekday = dates.dt.day_of_week.to_numpy()
    if not where or dates.empty:
        return weekday
    codes, days = pd.factorize(dates)  # each distinct date looked up once: a year of many
    calendar = public_holidays(where, range(days.min().year, days.max().year + 1))
    return np.where(np.isin(days.date, list(calendar))[codes], HOLIDAY, weekday)


def public_holidays(where: str, years) -> set:
    """The dates of the public holidays of ``where`` in ``years``; ValueError naming the
    code when the ``holidays`` package does not know it."""
    return set(_calendar(where, years))


def _calendar(where: str, years, categories=None) -> holidays.HolidayBase:
    """The ``holidays`` package's calendar of ``where`` (``US``, ``AU-VIC``) in ``years``,
    of ``categories`` (default: the public holidays); ValueError naming the code when the
    package does not know it."""
    country, _, subdivision = where.strip().partition("-")
    try:
        return holidays.country_holidays(
            country.upper(), subdiv=subdivision.upper() or None, years=list(years),
            categories=categories,
        )  # fmt: skip
    except NotImplementedError as exc:
        raise ValueError(
            f"holidays: {where!r} is not a country (and subdivision) the holidays package "
            f"knows, such as US, AU-VIC or DE-BY ({exc})"
        ) from None


def day_names(dates: pd.Series, where: str) -> np.ndarray:
    """Each date's name among the public holidays and other observances of ``where`` in
    every category the ``holidays`` package has for it, or its place among the
    ``AROUND_HOLIDAYS`` days either side of a public holiday (``Thanksgiving Day +2``); empty
    for an ordinary day."""
    dates = pd.to_datetime(dates)
    if not where or dates.empty:
        return np.full(len(dates), "", dtype=object)
    codes, days = pd.factorize(dates)  # each distinct date looked up once: a year of many
    years = range(days.min().year - 1, days.max().year + 2)
    public = _calendar(where, years)
    every = _calendar(where, years, public.supported_categories)
    named = {day: name.split("; ")[0] for day, name in every.items()}
    for offset in range(1, AROUND_HOLIDAYS + 1):
        for day, name in public.items():
            name = name.split("; ")[0]
            for sign in (-1, 1):
                named.setdefault(
                    day + dt.timedelta(days=sign * offset), f"{name} {sign * offset:+d}"
                )
    return np.array([named.get(day, "") for day in days.date], dtype=object)[codes]
