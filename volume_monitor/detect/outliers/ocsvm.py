"""One-Class SVM: rows outside the boundary around most training rows. Fitted on at most
``MAX_ROWS`` rows drawn at random, its cost growing with the square of the rows."""

from __future__ import annotations

import numpy as np
from sklearn.svm import OneClassSVM

from volume_monitor.detect.outliers.base import ScaledOutliers

MAX_ROWS = 5000


class OcsvmOutliers(ScaledOutliers):
    def __init__(
        self,
        contamination: float = 0.15,
        score_cutoff: float | None = None,
        random_state: int = 2019,
    ):
        super().__init__(contamination, score_cutoff)
        self.random_state = random_state

    def _estimator(self, features: np.ndarray):
        rows = np.random.default_rng(self.random_state).permutation(len(features))[:MAX_ROWS]
        return OneClassSVM(nu=self.contamination, gamma="scale"), rows
