"""The outlier models behind one protocol (:class:`~.base.BaseOutliers`), one module per
method; :data:`METHODS` names them."""

from __future__ import annotations

from volume_monitor.detect.outliers.base import BaseOutliers
from volume_monitor.detect.outliers.iforest import IForestOutliers
from volume_monitor.detect.outliers.lof import LofOutliers
from volume_monitor.detect.outliers.ocsvm import OcsvmOutliers
from volume_monitor.detect.outliers.zscore import ZscoreOutliers

METHODS: dict[str, type[BaseOutliers]] = {
    "iforest": IForestOutliers,
    "ocsvm": OcsvmOutliers,
    "lof": LofOutliers,
    "zscore": ZscoreOutliers,
}

__all__ = ["METHODS", "BaseOutliers", "IForestOutliers", "LofOutliers", "OcsvmOutliers",
           "ZscoreOutliers"]  # fmt: skip
