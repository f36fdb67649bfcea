"""The error hierarchy. Each class's docstring is its default message; ``exit_code`` is what
the command-line returns when the error ends a run."""


class VolumeMonitorError(Exception):
    """volume-monitor failed."""

    exit_code = 1

    def __init__(self, message: str | None = None):
        super().__init__(message or self.__doc__)


class ConfigError(VolumeMonitorError):
    """The configuration is invalid."""


class DatabaseError(VolumeMonitorError):
    """The database could not be reached."""


class QueryError(VolumeMonitorError):
    """The query result does not match the query contract."""


class TooManySeriesError(QueryError):
    """The query gave more series for a day than ``VM_MAX_SERIES``."""


class NoDataError(VolumeMonitorError):
    """The query returned no rows for the requested window."""


class TrackingError(VolumeMonitorError):
    """The MLflow tracking store could not be used."""


class ResultsError(VolumeMonitorError):
    """The results could not be written."""


class ModelNotFoundError(VolumeMonitorError):
    """No model version carries the requested alias."""


class AlertDeliveryError(VolumeMonitorError):
    """The alert email could not be delivered."""

    exit_code = 3


class AlreadyRunningError(VolumeMonitorError):
    """Another volume-monitor run held the lock for as long as this one could wait; this one
    scored nothing (a failure: cron must hear of a night that was not scored)."""


class StateError(VolumeMonitorError):
    """The state store could not be used."""


class ModelMismatchError(VolumeMonitorError):
    """The model was trained for another monitor, query or dimensions."""
