"""The detector: one fitted object that carries its own preprocessing.

:class:`VolumeDetector` holds the category encoder, the scaler, a robust per-series baseline
(median of ``log1p(count)`` per weekday and a spread per series) and the Isolation Forest.
Scoring follows scikit-learn's ``decision_function`` convention: lower is more anomalous, below
0 is an outlier. Where 0 lies is set by ``contamination`` (the share of training rows the
outlier model treats as outliers) or, when ``score_cutoff`` is given, by that cut-off on the
model's raw ``score_samples`` (for ``zscore``: on minus the absolute deviation in spreads, by
default ``-band``).

Every scored row also carries its ``deviation``: how many spreads its count lies above (+) or
below (-) its series' weekday baseline. Anomalies are ranked by its size, the worst first.

Two feature sets:

- ``baseline`` (default): the deviation of each count from its series' weekday baseline, in
  spreads, and the series' expected level. A doubling of a small series is as visible as a
  doubling of a big one. A row is anomalous when the forest scores it below 0 *and* its count
  lies outside the series' expected range.
- ``seed``: the original configuration, label-encoded categories, weekday, month and the raw
  count, scaled; a row is anomalous when the forest scores it below 0.

``method`` picks the outlier model: ``iforest`` (default), ``ocsvm`` (One-Class SVM) or ``lof``
(Local Outlier Factor, novelty mode); ``method="zscore"`` drops it: a row is anomalous when its
count lies outside the expected range, the robust z-score / MAD rule of data-quality tools.

With baseline features, the series' groups are judged against their own history (see
:mod:`volume_monitor.detect.groups`: for the default monitor the whole day, each channel, and
channel × action and channel × OS family within it). A series is expected to follow its
channel's move that day as far as the channel's usual range goes, and its spread is that of its
own moves beyond the channel's. A row is also anomalous when a group it belongs to moved
outside the group's usual range and the row moved with it: a +60% load across a channel is
clear as a group though moderate in each series, while a channel that moves a fifth as a whole
now and then (weather, a campaign) does so without an alert.

``holidays`` (a country and subdivision of the ``holidays`` package, ``US``, ``AU-VIC``,
``DE-BY``) gives public holidays an expectation of their own: each series' usual holiday effect
against the same weekday around it, learnt from its past holidays, or its Sunday level until
it has ``MIN_HOLIDAYS`` of them.

With ``clean`` (the default), training rows outside their series' range are left out and the
baselines learnt again, so a past incident does not widen what counts as normal; the number
left out is ``excluded_rows_``.

The detector learns its dimensions (the series' key columns) from the frame it is fitted on.

The expected range of a series is ``band`` robust spreads around its expected level, and at
least ``min_change`` events either side of the expected count.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from sklearn.svm import OneClassSVM

from volume_monitor.config import DEFAULT_DIMENSIONS
from volume_monitor.detect import groups
from volume_monitor.detect.calendar import DAY_KINDS, HOLIDAY, day_kinds

log = logging.getLogger(__name__)

SEED_PARAMS = {"n_estimators": 100, "max_samples": 256, "contamination": 0.15, "random_state": 2019}
FEATURE_SETS = ("baseline", "seed")
METHODS = ("iforest", "ocsvm", "lof", "zscore")
OCSVM_MAX_ROWS = 5000
NOT_DIMENSIONS = ("date", "count", "weekday", "month")
MIN_SPREAD = 0.05  # in log1p units: about ±5% of a large series
MAD_TO_SD = 1.4826
MIN_HOLIDAYS = 3  # past holidays of a series before it has a holiday level of its own
DUPLICATE_MULTIPLES = (2, 3)  # a duplicated load: count / m close to the baseline
DUPLICATE_SPREADS = 2.0  # "close": within this many spreads
STALL_RATIO = 0.1  # at most 10% of expected
MAX_EXPECTED = 2.0**53  # the widest expected range: still a whole number in a float

# The types a saved VolumeDetector holds beyond those skops trusts by default; loading refuses
# any other type.
TRUSTED_TYPES = [
    "volume_monitor.model.VolumeDetector",
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
]


class VolumeDetector(BaseEstimator):
    """Isolation Forest over per-series volumes, with the baselines to explain its verdicts."""

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int = 256,
        contamination: float = 0.15,
        random_state: int = 2019,
        features: str = "baseline",
        band: float = 5.0,
        recent_weeks: int = 8,
        min_change: float = 10.0,
        method: str = "iforest",
        group_threshold: float = 4.0,
        group_member: float = 1.0,
        score_cutoff: float | None = None,
        holidays: str = "",
        clean: bool = True,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.random_state = random_state
        self.features = features
        self.band = band
        self.recent_weeks = recent_weeks
        self.min_change = min_change
        self.method = method
        self.group_threshold = group_threshold
        self.group_member = group_member
        self.score_cutoff = score_cutoff
        self.holidays = holidays
        self.clean = clean

    # --- fitting -------------------------------------------------------------------------

    def fit(
        self, frame: pd.DataFrame, y=None, monitor: str = "", query_hash: str = ""
    ) -> VolumeDetector:
        """Learn series, baselines, encoders and the forest from an ETL frame (date index);
        remember the ``monitor`` and the fingerprint of the query (``query_hash``) it came
        from, so it is never used to score another."""
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {FEATURE_SETS}, not {self.features!r}")
        if self.method not in METHODS or (self.method == "zscore" and self.features != "baseline"):
            raise ValueError(f"method must be one of {METHODS} (zscore with baseline features)")
        frame = _with_date_column(frame)
        self.dimensions_ = [str(c) for c in frame.columns if c not in NOT_DIMENSIONS]
        self.monitor_, self.query_hash_ = monitor, query_hash
        keys = self.dimensions
        dates = pd.to_datetime(frame["date"])
        self.trained_from_, self.trained_to_ = (f"{d:%Y-%m-%d}" for d in (dates.min(), dates.max()))
        series = frame[keys].drop_duplicates().sort_values(keys)
        self.series_ = series.astype(str).values.tolist()
        index = self._series_index(frame)
        found, keep = self._fit_baseline(frame, index, len(series))
        self.excluded_rows_ = int((~keep).sum())
        if self._grouped:
            self.group_names_, self.group_ranges_ = groups.learn_ranges(
                frame, keys, found, self.band, self.group_threshold
            )
        self.encoder_ = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        self.encoder_.fit(series.astype(str))  # the same categories as every row, far cheaper
        center, spread = self._baseline_of(frame, index)
        if self._grouped:
            bounds = groups.ranges_of_rows(frame, keys, self.group_names_, self.group_ranges_)
            center = center + _usual_share(found, bounds)
        raw = self._raw_features(frame, (center, spread))[keep]
        self.scaler_ = StandardScaler().fit(raw)
        self.forest_ = self._fit_outlier_model(self.scaler_.transform(raw))
        return self

    def _fit_baseline(
        self, frame: pd.DataFrame, index: np.ndarray, n_series: int
    ) -> tuple[groups.Moves, np.ndarray]:
        """Learn each series' level per day kind and the spread of its own moves (beyond its
        top group's); with ``clean``, leave out of both the training rows that lie outside
        their series' range and learn again, so a past incident does not widen "normal".
        Returns the groups' moves over the kept rows, and which rows were kept."""
        counts = frame["count"].to_numpy(dtype=float)
        level = np.log1p(counts)
        days = self._day_kinds(frame)
        dates = frame["date"].to_numpy()
        keep = np.ones(len(frame), dtype=bool)
        for _ in range(2 if self.clean else 1):
            kept = np.where(keep, level, np.nan)
            center, recent = _centers(index, days, dates, kept, n_series, self.recent_weeks)
            self.center_ = center[:, :7]
            self.holiday_effect_ = _holiday_effects(index, days, dates, kept, center)
            expected = self._row_centers(index, frame["weekday"].to_numpy(), days)
            residual = np.where(keep, level - expected, np.nan)
            found = self._moves(frame, residual)
            self.spread_ = _spreads(index, found.own, recent, self.center_, n_series)
            change = np.abs(counts - np.expm1(expected))
            with np.errstate(invalid="ignore"):
                unusual = np.abs(found.own) > self.band * self.spread_[index]
            unusual &= keep & (change >= self.min_change)
            if not self.clean or not unusual.any():
                break
            keep &= ~unusual
        return found, keep

    @property
    def _grouped(self) -> bool:
        return self.features == "baseline" and bool(self.group_threshold)

    def _moves(self, frame: pd.DataFrame, residual: np.ndarray) -> groups.Moves:
        """The groups' moves (none without the group rule: a row's own move is its
        residual)."""
        if not self._grouped:
            return groups.Moves.none(residual)
        return groups.moves(frame, self.dimensions, residual)

    def _row_centers(self, index: np.ndarray, weekday: np.ndarray, days: np.ndarray):
        """Each row's baseline level: its series' level for its weekday, moved on a holiday by
        the series' usual holiday effect, or its Sunday level where it has none yet."""
        center = self.center_[index, weekday]
        if not (days == HOLIDAY).any():
            return center
        effect = self.holiday_effect_[index]
        on_holiday = np.where(np.isnan(effect), self.center_[index, 6], center + effect)
        return np.where(days == HOLIDAY, on_holiday, center)

    def _day_kinds(self, frame: pd.DataFrame) -> np.ndarray:
        """Each row's weekday, or ``HOLIDAY`` on a public holiday of ``holidays``."""
        where = getattr(self, "holidays", "")
        if not where:
            return frame["weekday"].to_numpy()
        return day_kinds(frame["date"], where)

    def _fit_outlier_model(self, features: np.ndarray):
        """The fitted outlier model of ``method`` (an Isolation Forest by default); None for
        ``zscore``, which needs none. A One-Class SVM is fitted on at most
        ``OCSVM_MAX_ROWS`` rows, its cost growing with the square of the rows."""
        if self.method == "zscore":
            return None
        if self.method == "ocsvm":
            rng = np.random.default_rng(self.random_state)
            rows = rng.permutation(len(features))[:OCSVM_MAX_ROWS]
            return OneClassSVM(nu=self.contamination, gamma="scale").fit(features[rows])
        if self.method == "lof":
            lof = LocalOutlierFactor(n_neighbors=20, novelty=True, contamination=self.contamination)
            return lof.fit(features)
        return IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(features)),
            contamination=self.contamination,
            random_state=self.random_state,
        ).fit(features)

    # --- scoring -------------------------------------------------------------------------

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        frame = _with_date_column(frame)
        return self._decision(frame, self._baseline_of(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """scikit-learn's outlier convention: -1 anomalous, 1 normal."""
        return np.where(self.score(frame)["is_anomaly"], -1, 1)

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (date index or column) with the expected count and range, score, verdict
        and cause."""
        frame = _with_date_column(frame)
        center, spread = self._baseline_of(frame)
        known = ~np.isnan(center)
        counts = frame["count"].to_numpy(dtype=float)
        residual = np.log1p(counts) - center
        found, bounds = self._group_moves(frame, residual)
        own_level, center = center, center + _usual_share(found, bounds)
        low, high = self._expected_range(center, spread)
        scores = self._decision(frame, (center, spread))
        deviation = _deviation(counts, center, spread)
        direction = _direction(counts, low, high)
        outside = known & (direction != "")
        with_group = (
            groups.moved_with_group(found, bounds, spread, self.group_member)
            if bounds
            else np.zeros(len(frame), dtype=bool)
        )
        direction = np.where(with_group & ~outside, _sign_direction(counts, deviation), direction)
        below = scores < 0
        anomalous = below if self.features == "seed" else (outside & below) | with_group
        missing_day = frame.groupby("date")["count"].transform("sum").to_numpy() == 0
        cause = _cause(counts, own_level, spread, direction, anomalous, known, missing_day)
        return frame.assign(
            expected=np.expm1(center), expected_low=low, expected_high=high,
            deviation=deviation, score=scores,
            is_anomaly=anomalous, direction=direction, cause=cause,
        )  # fmt: skip

    def _group_moves(
        self, frame: pd.DataFrame, residual: np.ndarray
    ) -> tuple[groups.Moves, list[np.ndarray]]:
        """The groups' moves of the rows and each row's group ranges per level; no ranges
        without the group rule, or for a model saved before groups learnt theirs."""
        if not self._grouped or not hasattr(self, "group_ranges_"):
            return groups.Moves.none(residual), []
        found = groups.moves(frame, self.dimensions, residual)
        bounds = groups.ranges_of_rows(
            frame, self.dimensions, self.group_names_, self.group_ranges_
        )
        return found, bounds

    # --- helpers -------------------------------------------------------------------------

    def _expected_range(self, center: np.ndarray, spread: np.ndarray):
        """The normal range in whole events: ``band`` spreads either side of the baseline,
        and never narrower than ``min_change`` events, so a tiny series does not page over a
        handful of events; a huge band is capped at ``MAX_EXPECTED``. NaN for a series
        unknown to the model."""
        expected = np.expm1(center)
        with np.errstate(over="ignore"):
            wide = np.expm1(center + self.band * spread)
        low = np.minimum(np.expm1(center - self.band * spread), expected - self.min_change)
        high = np.minimum(np.maximum(wide, expected + self.min_change), MAX_EXPECTED)
        return np.floor(np.maximum(low, 0.0)), np.ceil(high)

    def _baseline_of(
        self, frame: pd.DataFrame, index: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each row's baseline level (``log1p`` units, for its weekday) and spread; NaN for a
        series the model has not seen. ``index``: the rows' series positions, when known."""
        index = self._series_index(frame) if index is None else index
        rows = index.clip(0)
        center = self._row_centers(rows, frame["weekday"].to_numpy(), self._day_kinds(frame))
        center = np.where(index >= 0, center, np.nan)
        spread = np.where(index >= 0, self.spread_[rows], np.nan)
        return center, spread

    @property
    def dimensions(self) -> list[str]:
        """The series' key columns (models saved before dimensions were recorded: the
        default monitor's)."""
        return list(getattr(self, "dimensions_", DEFAULT_DIMENSIONS))

    def mismatch(self, monitor: str, dimensions: list[str], query_hash: str) -> str | None:
        """Why this model cannot score ``monitor``'s series of ``dimensions`` from the query
        with ``query_hash``; None when it can. (Models saved before this was recorded carry
        only their dimensions.)"""
        trained_for = getattr(self, "monitor_", "")
        if trained_for and trained_for != monitor:
            return f"it was trained for the monitor {trained_for!r}, not {monitor!r}"
        if list(dimensions) != self.dimensions:
            return (
                f"it was trained on the dimensions {', '.join(self.dimensions)}, and the query "
                f"now returns {', '.join(dimensions)}"
            )
        trained_query = getattr(self, "query_hash_", "")
        if trained_query and trained_query != query_hash:
            return "it was trained on another query: the query file has changed since; retrain"
        return None

    def _series_index(self, frame: pd.DataFrame) -> np.ndarray:
        """Position of each row's series among the known series, -1 for a new one."""
        keys = self.dimensions
        known = pd.MultiIndex.from_tuples([tuple(s) for s in self.series_], names=keys)
        rows = pd.MultiIndex.from_arrays([_labels(frame[key]) for key in keys], names=keys)
        return known.get_indexer(rows)

    def _decision(self, frame: pd.DataFrame, baseline) -> np.ndarray:
        """The outlier model's decision function: its raw ``score_samples`` minus the offset
        that ``contamination`` set, or minus ``score_cutoff`` when given. For ``zscore`` the
        raw score is minus the absolute deviation in spreads and the default offset ``-band``,
        so it falls below 0 just outside the band."""
        raw = self._raw_features(frame, baseline)
        if self.method == "zscore":
            samples, offset = -np.abs(raw[:, 0]), -self.band
        else:
            features = self.scaler_.transform(raw)
            if self.score_cutoff is None:
                return self.forest_.decision_function(features)
            samples, offset = self.forest_.score_samples(features), 0.0
        return samples - (offset if self.score_cutoff is None else self.score_cutoff)

    def _raw_features(self, frame: pd.DataFrame, baseline) -> np.ndarray:
        """The forest's inputs: the seed's encoded categories, calendar and count; or each
        count's deviation from its baseline in spreads, and the baseline level (a new series
        counts as on its own baseline)."""
        counts = frame["count"].to_numpy(dtype=float)
        if self.features == "seed":
            codes = self.encoder_.transform(frame[self.dimensions].astype(str))
            calendar = frame[["weekday", "month"]].to_numpy(dtype=float)
            return np.column_stack([codes, calendar, counts])
        center, spread = baseline
        center = np.where(np.isnan(center), np.log1p(counts), center)
        spread = np.where(np.isnan(spread), 1.0, spread)
        return np.column_stack([_deviation(counts, center, spread), center])

    @property
    def series_frame(self) -> pd.DataFrame:
        """The series known from training, one row each."""
        return pd.DataFrame(self.series_, columns=self.dimensions)


def _with_date_column(frame: pd.DataFrame) -> pd.DataFrame:
    if "date" in frame.columns:
        return frame.reset_index(drop=True)
    return frame.rename_axis("date").reset_index()


def _labels(column: pd.Series) -> pd.Series:
    """``column`` as text; a categorical column stays categorical, its categories as text (one
    string per category, not per row)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.rename_categories(column.cat.categories.astype(str))
    return column.astype(str)


def _centers(
    series: np.ndarray,
    day: np.ndarray,
    dates: np.ndarray,
    level: np.ndarray,
    n_series: int,
    recent_weeks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per series and day kind (weekdays, then holidays): the median ``level``
    (``log1p(count)``, NaN for a row left out) of its last ``recent_weeks`` observations, so a
    trend does not drag it; the series median where a weekday was never seen. Also the
    positions of those recent rows."""
    usable = np.flatnonzero(~np.isnan(level))
    rows = usable[_latest_rows(series[usable], day[usable], dates[usable], recent_weeks)]
    recent = pd.DataFrame({"s": series[rows], "w": day[rows], "y": level[rows]})
    overall = recent.groupby("s")["y"].median().reindex(range(n_series)).to_numpy()
    by_day = recent.groupby(["s", "w"])["y"].agg(["median", "size"]).unstack("w")
    center = by_day["median"].reindex(index=range(n_series), columns=range(DAY_KINDS))
    return np.where(center.isna(), overall[:, None], center.to_numpy()), rows


def _holiday_effects(
    series: np.ndarray, days: np.ndarray, dates: np.ndarray, level: np.ndarray, center
) -> np.ndarray:
    """Per series, the median of its past holidays' levels less the median level of the same
    series on the same weekday one and two weeks either side (so a year's trend cancels);
    NaN for a series with fewer than ``MIN_HOLIDAYS`` such holidays."""
    effect = np.full(len(center), np.nan)
    holidays = np.flatnonzero((days == HOLIDAY) & ~np.isnan(level))
    if not len(holidays):
        return effect
    usual = np.where(days == HOLIDAY, np.nan, level)
    index = pd.MultiIndex.from_arrays([series, pd.to_datetime(dates)])
    nearby = []
    for weeks in (-2, -1, 1, 2):
        shifted = pd.to_datetime(dates[holidays]) + pd.Timedelta(weeks=weeks)
        position = index.get_indexer(pd.MultiIndex.from_arrays([series[holidays], shifted]))
        nearby.append(np.where(position >= 0, usual[position], np.nan))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a holiday with no usual day near
        difference = level[holidays] - np.nanmedian(np.column_stack(nearby), axis=1)
    by_series = pd.Series(difference).groupby(series[holidays]).agg(["median", "count"])
    enough = by_series[by_series["count"] >= MIN_HOLIDAYS]
    effect[enough.index.to_numpy()] = enough["median"].to_numpy()
    return effect


def _spreads(
    series: np.ndarray, own: np.ndarray, rows: np.ndarray, center: np.ndarray, n_series: int
) -> np.ndarray:
    """Per series: a robust spread of its own moves over the recent ``rows``, floored by
    Poisson noise and ``MIN_SPREAD``."""
    recent = pd.Series(np.abs(own[rows]))
    mad = recent.groupby(series[rows]).median().reindex(range(n_series)).to_numpy() * MAD_TO_SD
    poisson = 1.0 / np.sqrt(np.expm1(center).mean(axis=1) + 1.0)
    return np.fmax.reduce([mad, poisson, np.full(n_series, MIN_SPREAD)])


def _latest_rows(series: np.ndarray, weekday: np.ndarray, dates: np.ndarray, count: int):
    """Positions of the latest ``count`` rows of each series and weekday, by date. Index
    arithmetic on one sort: a year of 20,000 series is 7.3 million rows, and sorting a frame
    of them and taking each group's tail cost 800 MB more than this."""
    order = np.lexsort((dates, weekday, series))  # by series, weekday, date
    group = series[order].astype(np.int64) * DAY_KINDS + weekday[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(order)]
    del group
    end_of_group = np.repeat(ends, ends - starts)
    from_end = end_of_group - np.arange(1, len(order) + 1)  # 0 for a group's latest row
    return order[from_end < count]


def _usual_share(found: groups.Moves, bounds: list[np.ndarray]) -> np.ndarray:
    """Per row, the part of its top group's move that day that lies within the group's usual
    range (the move clipped to it; 0 without groups): a series is expected to follow its
    channel that far, and no further."""
    if not bounds:
        return np.zeros(len(found.own))
    move, (low, high) = found.top, bounds[found.top_level].T
    clipped = np.clip(move, np.where(np.isnan(low), 0.0, low), np.where(np.isnan(high), 0.0, high))
    return np.where(np.isnan(clipped), 0.0, clipped)


def _deviation(counts: np.ndarray, center: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Spreads between each count and its baseline (``log1p`` units); NaN for a new series."""
    return (np.log1p(counts) - center) / spread


def _direction(counts: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    direction = np.full(len(counts), "", dtype=object)
    direction[counts > high] = "high"
    direction[(counts < low) & (counts > 0)] = "low"
    direction[(counts < low) & (counts == 0)] = "missing"
    return direction


def _sign_direction(counts: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """Direction of a row that moved with its group but stayed inside its own range."""
    return _named(
        np.where(counts == 0, 2, np.where(deviation > 0, 0, 1)), ["high", "low", "missing"]
    )


def _cause(
    counts: np.ndarray,
    center: np.ndarray,
    spread: np.ndarray,
    direction: np.ndarray,
    anomalous: np.ndarray,
    known: np.ndarray,
    missing_day: np.ndarray,
) -> np.ndarray:
    """The likely cause of each anomalous row, judged against the series' own baseline
    (``center``, not moved with its group: a duplicated load is a multiple of its usual level);
    ``new_series`` for series unseen in training."""
    expected = np.expm1(center)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = counts / np.where(expected > 0, expected, np.nan)
    duplicate = np.zeros(len(counts), dtype=bool)
    for multiple in DUPLICATE_MULTIPLES:
        distance = np.abs(np.log1p(counts / multiple) - center)
        duplicate |= distance <= DUPLICATE_SPREADS * spread
    choices = [
        anomalous & missing_day,
        anomalous & (direction == "missing"),
        anomalous & (direction == "low") & (ratio <= STALL_RATIO),
        anomalous & (direction == "low"),
        anomalous & (direction == "high") & duplicate,
        anomalous & (direction == "high"),
        ~known,
    ]
    names = ["missing_day", "missing_series", "stall", "drop", "duplicate", "spike", "new_series"]
    return _named(np.select(choices, range(1, len(names) + 1), default=0), ["", *names])


def _named(codes: np.ndarray, names: list[str]) -> np.ndarray:
    """An object array of ``names[code]`` for each code: every row holds one of the few
    ``names`` strings, not a copy of its own (7.3 million rows: 60 MB, not 460 MB)."""
    return np.array(names, dtype=object)[codes]
