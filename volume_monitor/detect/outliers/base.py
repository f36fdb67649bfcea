"""The outlier models' one protocol, after pyod's ``BaseDetector``: ``fit`` on the training
features, ``decision_function`` below 0 for an outlier (scikit-learn's convention: lower is
more anomalous), ``score_samples`` the raw score it thresholds.

Where 0 lies is the model's own offset (set by ``contamination``, the share of training rows
it treats as outliers) or, when ``score_cutoff`` is given, that cut-off on its raw
``score_samples``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from sklearn.preprocessing import StandardScaler


class BaseOutliers(ABC):
    """An outlier model over the detector's features (one row per series-day)."""

    def __init__(self, contamination: float = 0.15, score_cutoff: float | None = None):
        self.contamination = contamination
        self.score_cutoff = score_cutoff

    @abstractmethod
    def fit(self, features: np.ndarray) -> BaseOutliers:
        """Learn from the training rows' features; sets ``offset_``."""

    @abstractmethod
    def score_samples(self, features: np.ndarray) -> np.ndarray:
        """The raw score of each row: lower is more anomalous."""

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """The raw score less the offset (or less ``score_cutoff``): below 0 is an outlier."""
        offset = self.offset_ if self.score_cutoff is None else self.score_cutoff
        return self.score_samples(features) - offset


class ScaledOutliers(BaseOutliers):
    """An outlier model of scikit-learn fitted on standardised features: ``_estimator``
    builds it, and its own ``offset_`` (from ``contamination``) is kept."""

    @abstractmethod
    def _estimator(self, features: np.ndarray):
        """The unfitted estimator and the rows to fit it on."""

    def fit(self, features: np.ndarray) -> ScaledOutliers:
        self.scaler_ = StandardScaler().fit(features)
        scaled = self.scaler_.transform(features)
        estimator, rows = self._estimator(scaled)
        self.model_ = estimator.fit(scaled[rows])
        self.offset_ = float(np.ravel(self.model_.offset_)[0])  # an array of one for OCSVM
        return self

    def score_samples(self, features: np.ndarray) -> np.ndarray:
        return self.model_.score_samples(self.scaler_.transform(features))
