"""The benchmark's metrics, from scored series-days labeled with the injected ``kind``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from volume_monitor.evaluate.scenarios import IGNORED, NOT_ANOMALIES


def metrics(scored: pd.DataFrame) -> dict[str, float]:
    """Benchmark metrics of one detector's scored window(s): precision, recall and F1 per
    series-day and per day, ROC-AUC, false alerts per 30 normal days, and how each odd or
    faulty kind of day was handled."""
    scored = scored[~scored["kind"].isin(IGNORED)]
    truth = ~scored["kind"].isin(NOT_ANOMALIES)
    flagged = scored["is_anomaly"].astype(bool)
    days = scored.assign(truth=truth, flagged=flagged).groupby(["scenario", "date"])
    day_truth, day_alert = days["truth"].any(), days["flagged"].any()
    normal_days = int((~day_truth).sum())
    return {
        **_prf("series_", truth, flagged),
        **_prf("day_", day_truth, day_alert),
        "roc_auc": _auc(truth, -scored["score"]),
        "deviation_roc_auc": _auc(truth, scored["deviation"].abs().fillna(0.0)),
        "false_alerts_per_30_days": 30.0
        * float((day_alert & ~day_truth).sum())
        / max(normal_days, 1),
        "missing_days_caught": _days_alerting(scored, "missing_day"),
        "stopped_series_caught": _share_flagged(scored, "stopped"),
        "new_channel_paged": float(flagged[scored["kind"] == "new_channel"].sum()),
        "channel_move_caught": _share_flagged(scored, "channel_move"),
        "repeat_incident_caught": _share_flagged(scored, "repeat_incident"),
        "correlated_move_days_alerting": _days_alerting(scored, "correlated_move"),
        "holiday_days_alerting": _days_alerting(scored, "holiday"),
        "late_days_typed_late": _days_typed(scored, "late", "late"),
    }


def _share_flagged(scored: pd.DataFrame, kind: str) -> float:
    """The share of ``kind``'s series-days flagged; NaN where there are none."""
    of_kind = scored["kind"] == kind
    return float(scored.loc[of_kind, "is_anomaly"].astype(bool).mean()) if of_kind.any() else np.nan


def _days_alerting(scored: pd.DataFrame, kind: str) -> float:
    """The share of the days holding ``kind`` on which any series was flagged; NaN where
    there are none."""
    days = scored.loc[scored["kind"] == kind, ["scenario", "date"]].drop_duplicates()
    if days.empty:
        return np.nan
    on_days = scored.merge(days, on=["scenario", "date"])
    return float(on_days.groupby(["scenario", "date"])["is_anomaly"].any().mean())


def _days_typed(scored: pd.DataFrame, kind: str, cause: str) -> float:
    """The share of ``kind``'s days on which every series carries ``cause``; NaN where there
    are none."""
    of_kind = scored[scored["kind"] == kind]
    if of_kind.empty:
        return np.nan
    return float(
        (of_kind["cause"] == cause).groupby([of_kind["scenario"], of_kind["date"]]).all().mean()
    )


def _auc(truth: pd.Series, ranking: pd.Series) -> float:
    """ROC-AUC of ``ranking`` (higher = more anomalous); NaN without any fault."""
    return float(roc_auc_score(truth, ranking)) if truth.any() else float("nan")


def _prf(prefix: str, truth: pd.Series, flagged: pd.Series) -> dict[str, float]:
    hits = float((truth & flagged).sum())
    precision = hits / max(float(flagged.sum()), 1.0)
    recall = hits / max(float(truth.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {f"{prefix}precision": precision, f"{prefix}recall": recall, f"{prefix}f1": f1}
