"""Isolation Forest: rows that few random splits isolate are outliers (the default)."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from volume_monitor.detect.outliers.base import ScaledOutliers


class IForestOutliers(ScaledOutliers):
    def __init__(
        self,
        contamination: float = 0.15,
        score_cutoff: float | None = None,
        n_estimators: int = 100,
        max_samples: int = 256,
        random_state: int = 2019,
    ):
        super().__init__(contamination, score_cutoff)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def _estimator(self, features: np.ndarray):
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(features)),
            contamination=self.contamination,
            random_state=self.random_state,
        )
        return forest, slice(None)
