"""MLflow: log a training run, register the model, promote a version, load it by alias.

The store defaults to ``sqlite:///mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts``.
Models are saved in the skops format and loaded here with :data:`TRUSTED_TYPES` from this
package, never with a list read from the model file itself.

Everything goes through an ``MlflowClient`` on the configured store: MLflow's fluent API keeps
its store in a global and in the process environment, which several monitors and the tests
must not share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from volume_monitor.config import MonitorSpec, Settings, redact_url
from volume_monitor.db import first_line, query_fingerprint, sqlite_file
from volume_monitor.errors import ConfigError, ModelNotFoundError, TrackingError
from volume_monitor.logs import mask

if TYPE_CHECKING:  # scikit-learn is imported where a model is built or loaded, not before
    from volume_monitor.detect.detector import VolumeDetector

log = logging.getLogger(__name__)

RUN_ID = re.compile(r"[0-9a-f]{32}")
EVALUATE_EXPERIMENT = "volume-monitor-evaluate"  # the labeled benchmark's runs
MODEL_FILE = "model.skops"
SIGNATURE_ROWS = 1000  # rows the input signature is inferred from


@dataclass(frozen=True)
class LoadedModel:
    detector: VolumeDetector
    uri: str
    version: str
    run_id: str

    @property
    def label(self) -> str:
        """``models:/volume-monitor@production (version 3)``"""
        return f"{self.uri} (version {self.version})"

    def mismatch(self, monitor: MonitorSpec, dimensions: list[str]) -> str | None:
        """Why this model cannot score ``monitor`` (its query file as it is now, returning
        ``dimensions``); None when it can."""
        fingerprint = query_fingerprint(monitor.query_path)
        return self.detector.mismatch(monitor.name, dimensions, fingerprint)


def client(settings: Settings):
    """An MLflow client on the configured store (a local store's artifact folder is created)."""
    from mlflow.tracking import MlflowClient

    if settings.artifact_dir:
        settings.artifact_dir.mkdir(parents=True, exist_ok=True)
    with store_errors(settings):
        return MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)


@contextlib.contextmanager
def store_errors(settings: Settings) -> Iterator[None]:
    """Turn a failure to use the tracking store into one :class:`TrackingError` line."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, OSError) as exc:
        reason = getattr(exc, "message", None) or first_line(exc)
        raise TrackingError(
            f"cannot use the MLflow store {redact_url(settings.tracking_uri)}: "
            f"{mask(str(reason).splitlines()[0], settings.secrets)}"
        ) from None


def experiment_id(settings: Settings, name: str) -> str:
    """The id of the experiment ``name``, created if needed."""
    mlflow_client = client(settings)
    location = settings.artifact_dir.as_uri() if settings.artifact_dir else None
    with store_errors(settings):
        found = mlflow_client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return mlflow_client.create_experiment(name, artifact_location=location)


def log_training(
    settings: Settings,
    monitor: MonitorSpec,
    detector: VolumeDetector,
    frame: pd.DataFrame,
    params: dict[str, Any],
    metrics: dict[str, float],
    plots: list[Path],
    files: Sequence[Path] = (),
) -> tuple[str, str]:
    """Log one training run with its model and its ``files`` (the verdicts it used, the
    summary of its data, its alert levels); register a new version of the monitor's model.
    Returns (run id, version)."""
    mlflow_client = client(settings)
    experiment = experiment_id(settings, monitor.experiment)
    tags = {"monitor": monitor.name, "query_hash": detector.query_hash_,
            PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}  # fmt: skip
    with store_errors(settings):
        _end_stale_runs(mlflow_client, experiment)
        run = mlflow_client.create_run(experiment, tags=tags)
        run_id = run.info.run_id
        try:
            _log_values(mlflow_client, run_id, params, metrics)
            for plot in plots:
                mlflow_client.log_artifact(run_id, str(plot), artifact_path="plots")
            for extra in files:
                mlflow_client.log_artifact(run_id, str(extra))
            with tempfile.TemporaryDirectory() as scratch:
                saved = _save_model(detector, frame, Path(scratch) / "model")
                mlflow_client.log_artifacts(run_id, str(saved), artifact_path="model")
            version = _register(mlflow_client, monitor.model_name, run)
        except BaseException:
            mlflow_client.set_terminated(run_id, "FAILED")
            raise
        mlflow_client.set_terminated(run_id)
    log.info("tracking: run %s, model %s version %s", run_id, monitor.model_name, version)
    return run_id, version


PID_TAG, HOST_TAG = "volume_monitor.pid", "volume_monitor.host"  # who logs a training run


def _end_stale_runs(mlflow_client, experiment: str) -> None:
    """Runs of ``experiment`` still RUNNING whose training process, on this host, is gone (a
    ``train.py`` killed while logging) are ended as KILLED, with a warning."""
    host = socket.gethostname()
    found = mlflow_client.search_runs(
        [experiment], filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = "
        f"'{_quoted(host)}'", max_results=1000,
    )  # fmt: skip
    for run in found:
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and not _alive(int(pid)):
            mlflow_client.set_terminated(run.info.run_id, "KILLED")
            log.warning("tracking: run %s was left RUNNING by a training process that is "
                        "gone (pid %s); it is ended as KILLED", run.info.run_id, pid)  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _save_model(detector: VolumeDetector, frame: pd.DataFrame, path: Path) -> Path:
    """The detector as an MLflow model folder: skops format, input signature, pinned
    requirements."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from volume_monitor.detect.detector import TRUSTED_TYPES

    sample = frame.head(SIGNATURE_ROWS).reset_index()  # the columns and types, not the data
    with warnings.catch_warnings():  # the ETL never yields missing values in integer columns
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(sample, detector.predict(sample))
    mlflow.sklearn.save_model(
        detector, str(path), serialization_format="skops", skops_trusted_types=TRUSTED_TYPES,
        signature=signature, pip_requirements=_requirements(),
    )  # fmt: skip
    return path


def _register(mlflow_client, name: str, run) -> str:
    """A new version of the registered model ``name`` (created if needed) from the run's
    ``model`` folder; returns its number."""
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.create_registered_model(name)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"{run.info.artifact_uri}/model"
    version = mlflow_client.create_model_version(name, source, run_id=run.info.run_id)
    return str(version.version)


def _log_values(mlflow_client, run_id: str, params: dict[str, Any], metrics: dict) -> None:
    """Parameters and metrics of a run in one batch."""
    import time

    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now, 0) for key, value in metrics.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
    )


def log_evaluation(
    settings: Settings,
    table: pd.DataFrame,
    params: dict[str, dict[str, Any]],
    seeds,
    plots: dict[str, list[Path]] | None = None,
) -> list[str]:
    """One run per detector in the ``volume-monitor-evaluate`` experiment, with the same
    benchmark metrics, so detectors are compared side by side in ``mlflow ui``."""
    mlflow_client = client(settings)
    experiment = experiment_id(settings, EVALUATE_EXPERIMENT)
    run_ids = []
    with store_errors(settings):
        for detector, row in table.iterrows():
            run_id = mlflow_client.create_run(experiment, run_name=str(detector)).info.run_id
            metrics = {k: float(v) for k, v in row.items() if pd.notna(v)}
            values = {**params[detector], "detector": detector, "seeds": seeds}
            _log_values(mlflow_client, run_id, values, metrics)
            for plot in (plots or {}).get(str(detector), []):
                mlflow_client.log_artifact(run_id, str(plot), artifact_path="plots")
            mlflow_client.set_terminated(run_id)
            run_ids.append(run_id)
    return run_ids


def promote(settings: Settings, reference: str, monitor: MonitorSpec | None = None) -> str:
    """Give the alias ``VM_MODEL_ALIAS`` to a version of ``monitor``'s model (default: the
    only monitor), named by its number or by the id of the training run that produced it.
    Returns the version."""
    from mlflow.exceptions import MlflowException

    monitor = monitor or settings.monitor()
    mlflow_client = client(settings)
    version = _resolve_version(monitor.model_name, mlflow_client, reference, settings)
    try:
        mlflow_client.set_registered_model_alias(monitor.model_name, settings.model_alias, version)
    except MlflowException as exc:
        raise ModelNotFoundError(f"cannot promote version {version}: {exc.message}") from None
    log.info(
        "tracking: %s version %s is now @%s", monitor.model_name, version, settings.model_alias
    )
    return version


def require_store(settings: Settings) -> None:
    """Raise :class:`TrackingError` when the store is a SQLite file that does not exist: only
    training creates one, so a mistyped path is not silently replaced by an empty store."""
    store_file = sqlite_file(settings.tracking_uri)
    if store_file is not None and not store_file.is_file():
        raise TrackingError(
            f"the MLflow store file {store_file} does not exist (train.py creates it)"
        )


def load_model(
    settings: Settings, version: str | None = None, monitor: MonitorSpec | None = None
) -> LoadedModel:
    """The version of ``monitor``'s model (default: the only monitor) that carries
    ``VM_MODEL_ALIAS`` (or, when given, ``version``), loaded with trusted types only."""
    import skops.io
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from skops.io.exceptions import UntrustedTypesFoundException

    from volume_monitor.detect.detector import TRUSTED_TYPES

    require_store(settings)
    mlflow_client = client(settings)
    name = (monitor or settings.monitor()).model_name
    uri = f"models:/{name}/{version}" if version else f"models:/{name}@{settings.model_alias}"
    try:
        if version:
            found = mlflow_client.get_model_version(name, version)
        else:
            found = mlflow_client.get_model_version_by_alias(name, settings.model_alias)
    except MlflowException as exc:
        if not _is_not_found(exc):
            with store_errors(settings):
                raise
        store = redact_url(settings.tracking_uri)
        raise ModelNotFoundError(
            f"model {name!r} has no version {version} in {store}: 'volume-monitor runs' lists them"
            if version
            else f"no model version of {name!r} has the alias {settings.model_alias!r} in "
            f"{store}: run 'python train.py --promote' or 'volume-monitor promote VERSION'"
        ) from None
    with tempfile.TemporaryDirectory() as scratch:
        try:
            # The version's own location: a models:/ URI would be resolved against MLflow's
            # global store instead of this client's.
            location = mlflow_client.get_model_version_download_uri(name, found.version)
            local = download_artifacts(
                artifact_uri=location, dst_path=scratch, tracking_uri=settings.tracking_uri
            )
            detector = skops.io.load(Path(local) / MODEL_FILE, trusted=TRUSTED_TYPES)
        except (MlflowException, OSError) as exc:
            raise ModelNotFoundError(
                f"the artifacts of {name} version {found.version} cannot be read: "
                f"{_artifact_reason(exc)}"
            ) from None
        except UntrustedTypesFoundException as exc:
            untrusted = str(exc).splitlines()[0].removeprefix("Untrusted types found in the file: ")
            raise ModelNotFoundError(
                f"{name} version {found.version} is not loaded: it holds types "
                f"this package does not trust: {untrusted.rstrip('.')}"
            ) from None
    log.info("tracking: loaded %s (version %s)", uri, found.version)
    _warn_if_run_deleted(mlflow_client, name, found)
    return LoadedModel(detector, uri, str(found.version), found.run_id or "")


def _warn_if_run_deleted(mlflow_client, name: str, found) -> None:
    """A version whose training run was deleted in MLflow still scores, with a warning: its
    parameters and metrics are gone from the UI and from ``volume-monitor runs``."""
    from mlflow.exceptions import MlflowException

    if not found.run_id:
        return
    try:
        stage = mlflow_client.get_run(found.run_id).info.lifecycle_stage
    except MlflowException:
        stage = "deleted"  # purged for good
    if stage == "deleted":
        log.warning(
            "tracking: %s version %s comes from run %s, which was deleted in MLflow: it "
            "still scores, but its parameters and metrics are gone ('mlflow runs restore "
            "--run-id %s' brings them back, or retrain)",
            name, found.version, found.run_id, found.run_id,
        )  # fmt: skip


def _artifact_reason(exc: Exception) -> str:
    """The OS error with the name of the file it concerns, or the last line of MLflow's
    message (a failed download lists each file under a ``#####`` heading, the reason last)."""
    if isinstance(exc, OSError) and exc.filename:
        return f"{Path(exc.filename).name}: {exc.strerror}"
    message = str(getattr(exc, "message", None) or exc)
    lines = [line for line in message.splitlines() if line.strip() and line[:5] != "#####"]
    return lines[-1] if lines else type(exc).__name__


def list_runs(settings: Settings, monitor: MonitorSpec | None = None) -> pd.DataFrame:
    """``monitor``'s training runs (default: the only monitor), newest first, with their
    metrics, model version and alias."""
    monitor = monitor or settings.monitor()
    mlflow_client = client(settings)
    experiment = experiment_id(settings, monitor.experiment)
    with store_errors(settings):
        found = mlflow_client.search_runs(
            [experiment], order_by=["attributes.start_time DESC"], max_results=1000
        )
    if not found:
        return pd.DataFrame(columns=["run_id", "start_time", "version", "alias"])
    runs = pd.DataFrame(
        [
            {
                "run_id": run.info.run_id,
                "start_time": pd.Timestamp(run.info.start_time, unit="ms", tz="UTC"),
                **{f"metrics.{key}": value for key, value in run.data.metrics.items()},
            }
            for run in found
        ]
    )
    versions = _versions_by_run(settings, monitor.model_name)
    return runs.assign(
        version=runs["run_id"].map(lambda r: versions.get(r, ("", ""))[0]),
        alias=runs["run_id"].map(lambda r: versions.get(r, ("", ""))[1]),
    )


def _is_not_found(exc) -> bool:
    """Whether MLflow says the model or its alias does not exist (not: the store failed)."""
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc.message)
    )


def _versions_by_run(settings: Settings, model_name: str) -> dict[str, tuple[str, str]]:
    """Run id → (registered version of ``model_name``, its aliases). Searches do not return
    aliases, so they come from the registered model."""
    from mlflow.exceptions import MlflowException

    mlflow_client = client(settings)
    with store_errors(settings):
        found = mlflow_client.search_model_versions(f"name='{_quoted(model_name)}'")
        try:
            aliases = mlflow_client.get_registered_model(model_name).aliases or {}
        except MlflowException as exc:
            if not _is_not_found(exc):
                raise
            aliases = {}
    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    return {
        mv.run_id: (str(mv.version), ",".join(sorted(by_version.get(str(mv.version), []))))
        for mv in found
    }


def _resolve_version(model_name: str, mlflow_client, reference: str, settings: Settings) -> str:
    from mlflow.exceptions import MlflowException

    reference = reference.strip()
    if reference.isdigit():
        try:
            mlflow_client.get_model_version(model_name, reference)
        except MlflowException:
            raise ModelNotFoundError(f"{model_name!r} has no version {reference}") from None
        return reference
    if not RUN_ID.fullmatch(reference):
        raise ConfigError(f"{reference!r} is neither a model version number nor a run id")
    versions = _versions_by_run(settings, model_name)
    if reference not in versions:
        raise ModelNotFoundError(f"run {reference} registered no version of {model_name!r}")
    return versions[reference][0]


def _quoted(name: str) -> str:
    return name.replace("'", "''")


def _requirements() -> list[str]:
    """Pinned requirements of the saved model, stated so MLflow need not infer them."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("scikit-learn", "skops", "pandas", "numpy")]
