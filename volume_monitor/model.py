"""The name under which models saved before the detector had its own package find their class:
such a model records ``volume_monitor.model.VolumeDetector``. Code imports
:mod:`volume_monitor.detect.detector`."""

from volume_monitor.detect.detector import VolumeDetector

__all__ = ["VolumeDetector"]
