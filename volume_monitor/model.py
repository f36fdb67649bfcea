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

With baseline features, a row is also anomalous when its series moved together with the rest
of a group it belongs to (see :func:`group_keys`: for the default monitor its channel,
channel × action or channel × OS family): a +30% duplicate across a channel is clear as a
group though small in each series.

The detector learns its dimensions (the series' key columns) from the frame it is fitted on.

The expected range of a series is ``band`` robust spreads around its weekday baseline, and at
least ``min_change`` events either side of the expected count.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from sklearn.svm import OneClassSVM

from volume_monitor.config import DEFAULT_DIMENSIONS

log = logging.getLogger(__name__)

SEED_PARAMS = {"n_estimators": 100, "max_samples": 256, "contamination": 0.15, "random_state": 2019}
FEATURE_SETS = ("baseline", "seed")
METHODS = ("iforest", "ocsvm", "lof", "zscore")
OCSVM_MAX_ROWS = 5000
NOT_DIMENSIONS = ("date", "count", "weekday", "month")
MIN_SPREAD = 0.05  # in log1p units: about ±5% of a large series
MAD_TO_SD = 1.4826
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
        group_threshold: float = 7.0,
        group_member: float = 1.0,
        score_cutoff: float | None = None,
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
        self.center_, self.spread_ = _baseline(
            frame.assign(s=index), len(series), self.recent_weeks
        )
        self.encoder_ = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        self.encoder_.fit(series.astype(str))  # the same categories as every row, far cheaper
        raw = self._raw_features(frame, self._baseline_of(frame, index))
        self.scaler_ = StandardScaler().fit(raw)
        self.forest_ = self._fit_outlier_model(self.scaler_.transform(raw))
        return self

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
        low, high = self._expected_range(center, spread)
        scores = self._decision(frame, (center, spread))
        deviation = _deviation(counts, center, spread)
        direction = _direction(counts, low, high)
        outside = known & (direction != "")
        with_group = self._moved_with_group(frame, deviation)
        direction = np.where(with_group & ~outside, _sign_direction(counts, deviation), direction)
        below = scores < 0
        anomalous = below if self.features == "seed" else (outside & below) | with_group
        missing_day = frame.groupby("date")["count"].transform("sum").to_numpy() == 0
        cause = _cause(counts, center, spread, direction, anomalous, known, missing_day)
        return frame.assign(
            expected=np.expm1(center), expected_low=low, expected_high=high,
            deviation=deviation, score=scores,
            is_anomaly=anomalous, direction=direction, cause=cause,
        )  # fmt: skip

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
        rows, weekday = index.clip(0), frame["weekday"].to_numpy()
        center = np.where(index >= 0, self.center_[rows, weekday], np.nan)
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

    def _moved_with_group(self, frame: pd.DataFrame, deviation: np.ndarray) -> np.ndarray:
        """Rows whose series moved together with the rest of a group it belongs to (see
        :func:`group_keys`) that day.

        The group's evidence is the median deviation of its members times the square root of
        their number; a member counts when the evidence reaches ``group_threshold`` and the
        member itself moved at least ``group_member`` spreads the same way. This catches a
        +30% load across a channel that no single series shows clearly, while one broken
        series cannot carry a whole group."""
        flagged = np.zeros(len(frame), dtype=bool)
        if self.features != "baseline" or not self.group_threshold:
            return flagged
        codes = {key: pd.factorize(frame[key]) for key in ["date", *self.dimensions]}
        for keys in group_keys(self.dimensions):
            group = np.zeros(len(frame), dtype=np.int64)  # one number per day and group
            for key in ["date", *keys]:
                key_codes, values = codes[key]
                group = group * len(values) + key_codes
            group = pd.factorize(group)[0]
            medians, counts = _group_medians(group, deviation)
            count = counts[group]
            evidence = medians[group] * np.sqrt(count)
            moved = (np.sign(deviation) == np.sign(evidence)) & (
                np.abs(deviation) >= self.group_member
            )
            flagged |= (np.abs(evidence) >= self.group_threshold) & (count >= 2) & moved
        return flagged

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


def group_keys(dimensions: list[str]) -> list[tuple[str, ...]]:
    """The groups whose series may move together: the first dimension alone, and with each
    other dimension (the default monitor: channel, channel × action, channel × OS family);
    with a single dimension, all series of the day."""
    if len(dimensions) == 1:
        return [()]
    first = dimensions[0]
    return [(first,), *[(first, other) for other in dimensions[1:]]]


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


def _baseline(
    frame: pd.DataFrame, n_series: int, recent_weeks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per series ``s`` and weekday: the median ``log1p(count)`` of its last ``recent_weeks``
    observations (so a trend does not drag the level); the series median where a weekday was
    never seen. Per series: a robust spread of the recent residuals, floored by Poisson noise
    and ``MIN_SPREAD``."""
    series, weekday = frame["s"].to_numpy(), frame["weekday"].to_numpy()
    rows = _latest_rows(series, weekday, frame["date"].to_numpy(), recent_weeks)
    recent = pd.DataFrame(
        {
            "s": series[rows],
            "w": weekday[rows],
            "y": np.log1p(frame["count"].to_numpy(dtype=float)[rows]),
        }
    )
    overall = recent.groupby("s")["y"].median().reindex(range(n_series)).to_numpy()
    by_day = recent.groupby(["s", "w"])["y"].median().unstack("w")
    center = by_day.reindex(index=range(n_series), columns=range(7)).to_numpy()
    center = np.where(np.isnan(center), overall[:, None], center)
    residual = (recent["y"] - center[recent["s"], recent["w"]]).abs()
    mad = residual.groupby(recent["s"]).median().reindex(range(n_series)).to_numpy() * MAD_TO_SD
    poisson = 1.0 / np.sqrt(np.expm1(center).mean(axis=1) + 1.0)
    return center, np.maximum.reduce([mad, poisson, np.full(n_series, MIN_SPREAD)])


def _latest_rows(series: np.ndarray, weekday: np.ndarray, dates: np.ndarray, count: int):
    """Positions of the latest ``count`` rows of each series and weekday, by date. Index
    arithmetic on one sort: a year of 20,000 series is 7.3 million rows, and sorting a frame
    of them and taking each group's tail cost 800 MB more than this."""
    order = np.lexsort((dates, weekday, series))  # by series, weekday, date
    group = series[order].astype(np.int64) * 7 + weekday[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(order)]
    del group
    end_of_group = np.repeat(ends, ends - starts)
    from_end = end_of_group - np.arange(1, len(order) + 1)  # 0 for a group's latest row
    return order[from_end < count]


def _group_medians(group: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The median and number of the non-NaN ``values`` of each group ``0..group.max()`` (NaN
    and 0 for a group without any), from one sort of the values by group and value."""
    groups = int(group.max()) + 1 if len(group) else 0
    known = ~np.isnan(values)
    group, values = group[known], values[known]
    counts = np.bincount(group, minlength=groups)
    ordered = values[np.lexsort((values, group))]
    starts = np.cumsum(counts) - counts
    low = np.minimum(starts + (counts - 1) // 2, max(len(ordered) - 1, 0))
    high = np.minimum(starts + counts // 2, max(len(ordered) - 1, 0))
    with np.errstate(invalid="ignore"):
        medians = (ordered[low] + ordered[high]) / 2 if len(ordered) else np.full(groups, np.nan)
    return np.where(counts > 0, medians, np.nan), counts


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
    """The likely cause of each anomalous row; ``new_series`` for series unseen in training."""
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
