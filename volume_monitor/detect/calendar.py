"""Day kinds: the weekday (Monday 0 .. Sunday 6), or ``HOLIDAY`` on a public holiday of the
monitor's country and subdivision, from the ``holidays`` package."""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd

HOLIDAY = 7
DAY_KINDS = 8


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
