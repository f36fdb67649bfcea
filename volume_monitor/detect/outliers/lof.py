"""Local Outlier Factor in novelty mode: rows far less dense than their 20 neighbours."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import LocalOutlierFactor

from volume_monitor.detect.outliers.base import ScaledOutliers


class LofOutliers(ScaledOutliers):
    def _estimator(self, features: np.ndarray):
        lof = LocalOutlierFactor(n_neighbors=20, novelty=True, contamination=self.contamination)
        return lof, slice(None)
