"""The robust z-score / MAD rule of data-quality tools: the raw score is minus the size of a
row's deviation from its baseline in spreads (the first feature), and 0 lies ``band`` spreads
out, just outside the expected range."""

from __future__ import annotations

import numpy as np

from volume_monitor.detect.outliers.base import BaseOutliers


class ZscoreOutliers(BaseOutliers):
    def __init__(
        self, contamination: float = 0.15, score_cutoff: float | None = None, band: float = 5.0
    ):
        super().__init__(contamination, score_cutoff)
        self.band = band

    def fit(self, features: np.ndarray) -> ZscoreOutliers:
        self.offset_ = -self.band
        return self

    def score_samples(self, features: np.ndarray) -> np.ndarray:
        return -np.abs(features[:, 0])
