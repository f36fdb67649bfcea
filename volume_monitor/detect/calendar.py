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
    calendar = public_holidays(where, range(dates.min().year, dates.max().year + 1))
    return np.where(dates.dt.date.isin(calendar).to_numpy(), HOLIDAY, weekday)


def public_holidays(where: str, years) -> set:
    """The dates of the public holidays of ``where`` in ``years``; ValueError naming the
    code when the ``holidays`` package does not know it."""
    country, _, subdivision = where.strip().partition("-")
    try:
        calendar = holidays.country_holidays(
            country.upper(), subdiv=subdivision.upper() or None, years=list(years)
        )
    except NotImplementedError as exc:
        raise ValueError(
            f"holidays: {where!r} is not a country (and subdivision) the holidays package "
            f"knows, such as US, AU-VIC or DE-BY ({exc})"
        ) from None
    return set(calendar)


def day_names(dates: pd.Series, where: str) -> np.ndarray:
    """Each date's name among the public holidays and other observances of ``where`` in
    every category the ``holidays`` package has for it, or its place among the
    ``AROUND_HOLIDAYS`` days either side of a public holiday (``Thanksgiving Day +2``); empty
    for an ordinary day."""
    dates = pd.to_datetime(dates)
    names = np.full(len(dates), "", dtype=object)
    if not where or dates.empty:
        return names
    country, _, subdivision = where.strip().partition("-")
    years = list(range(dates.min().year - 1, dates.max().year + 2))
    public = holidays.country_holidays(
        country.upper(), subdiv=subdivision.upper() or None, years=years
    )
    calendar = holidays.country_holidays(
        country.upper(), subdiv=subdivision.upper() or None, years=years,
        categories=public.supported_categories,
    )  # fmt: skip
    named = {day: name.split("; ")[0] for day, name in calendar.items()}
    for offset in range(1, AROUND_HOLIDAYS + 1):
        for day, name in public.items():
            name = name.split("; ")[0]
            for sign in (-1, 1):
                named.setdefault(
                    day + dt.timedelta(days=sign * offset), f"{name} {sign * offset:+d}"
                )
    days = dates.dt.date
    known = days.isin(named).to_numpy()
    names[known] = days[known].map(named).to_numpy()
    return names
