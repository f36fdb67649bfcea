"""Four weeks of history, measured by hand (not part of the tests):

    .venv/bin/python bench/short_history.py [--worlds 20]

Each world: 32 series of 20-170 events a day (4 channels × 2 actions × 4 OS families), a weekly
pattern, a day-to-day factor each channel's series share, Poisson counts. The detector trains
on 28 days and scores the next 10 night by night (as ``deploy.py`` does, with the days before
each one); on the third a series doubles. The weekday median/MAD rule scores the same days.
Prints, for both, the doubled series caught and the share of the other days that paged.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from volume_monitor import etl
from volume_monitor.detect.detector import VolumeDetector
from volume_monitor.evaluate import real
from volume_monitor.evaluate.nightly import score_nightly

KEYS = ["channel", "action", "os"]
SERIES = [
    (c, a, f)
    for c in ("web", "mobile", "api", "shop")
    for a in ("view", "search")
    for f in ("Windows", "iOS", "Android", "Linux")
]
WEEK = (1.0, 1.02, 1.03, 1.0, 0.96, 0.75, 0.7)
LAST = pd.Timestamp("2026-06-30")  # the last training day
DOUBLED = LAST + pd.Timedelta(days=3)
HIT = ("web", "view", "Windows")


def world(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = dict(zip(SERIES, rng.uniform(20, 170, len(SERIES)), strict=True))
    rows = []
    for day in pd.date_range(end=LAST + pd.Timedelta(days=10), periods=38):
        shared = {c: rng.lognormal(0.0, 0.03) for c in {s[0] for s in SERIES}}
        for series in SERIES:
            factor = WEEK[day.day_of_week] * shared[series[0]]
            factor *= 2.0 if (day == DOUBLED and series == HIT) else 1.0
            rows.append((day, *series, int(rng.poisson(base[series] * factor))))
    return pd.DataFrame(rows, columns=["date", *KEYS, "count"])


def measured(scored: pd.DataFrame) -> tuple[bool, float]:
    """Whether the doubled series was flagged, and the share of the other days that paged."""
    labels = scored[KEYS].astype(str)
    hit = (scored["date"] == DOUBLED) & (labels == pd.Series(HIT, index=KEYS)).all(axis=1)
    others = scored[scored["date"] != DOUBLED].groupby("date")["is_anomaly"].any()
    return bool(scored.loc[hit, "is_anomaly"].item()), float(others.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, default=20)
    worlds = parser.parse_args().worlds
    logging.disable(logging.WARNING)
    rows = []
    days = pd.date_range(LAST + pd.Timedelta(days=1), periods=10)
    for seed in range(11, 11 + worlds):
        counts = world(seed)
        history, after = counts[counts["date"] <= LAST], counts[counts["date"] > LAST]
        train = etl.add_calendar(
            etl.complete(history, history, history["date"].unique(), KEYS), KEYS
        )
        detector = VolumeDetector().fit(train)
        frame = etl.add_calendar(etl.complete(after, detector.series_frame, days, KEYS), KEYS)
        ours = measured(score_nightly(detector, train, frame, days))
        rule = measured(real.median_mad()(history, after, days, KEYS))
        rows.append((seed, *ours, *rule))
    table = pd.DataFrame(rows, columns=["world", "caught", "others_paged", "rule_caught",
                                        "rule_others_paged"])  # fmt: skip
    print(table.to_string(index=False))
    print(
        f"this project: doubled series caught {int(table['caught'].sum())} of {worlds}, other "
        f"days paged {table['others_paged'].mean():.1%}; median/MAD rule: "
        f"{int(table['rule_caught'].sum())} of {worlds}, {table['rule_others_paged'].mean():.1%}"
    )


if __name__ == "__main__":
    main()
