"""Orchestration: ``train`` and ``score_day`` wire the stages together and do nothing else."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.engine import make_url

from volume_monitor import (
    agents,
    alert,
    db,
    etl,
    known_days,
    report,
    runlock,
    tracking,
)
from volume_monitor.config import Settings
from volume_monitor.errors import (
    AlertDeliveryError,
    ConfigError,
    NoDataError,
    ResultsError,
    VolumeMonitorError,
)

log = logging.getLogger(__name__)

TRAINING_DAYS = 365
MIN_TRAINING_DAYS = 60  # fewer days give each weekday baseline only a few observations
EMAIL_FILE, EMAIL_HTML_FILE = "email.txt", "email.html"
PENDING_FILE = "pending_alert.json"  # an alert that could not be delivered, for the next run
LATE_ALERT_DAYS = 7  # how far back a run looks for undelivered alerts
VOLUME_PLOT_DAYS = 60


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    version: str
    rows: int
    series: int
    days: int
    promoted: bool


@dataclass(frozen=True)
class ScoreResult:
    folder: Path
    summary: dict[str, Any]


def today(settings: Settings) -> dt.date:
    """Today's date in ``VM_TIMEZONE``."""
    return dt.datetime.now(ZoneInfo(settings.timezone)).date()


def yesterday(settings: Settings) -> dt.date:
    """The last whole day in ``VM_TIMEZONE``: what a nightly run scores."""
    return today(settings) - dt.timedelta(days=1)


def training_window(settings: Settings, start: dt.date | None, end: dt.date | None):
    """``[start, end)``; by default the 365 days before today."""
    end = end or today(settings)
    start = start or end - dt.timedelta(days=TRAINING_DAYS)
    if start >= end:
        raise ConfigError(f"the training window is empty: start {start} is not before end {end}")
    return start, end


def detector_params(overrides: dict[str, str]) -> dict[str, Any]:
    """The seed hyperparameters and defaults, with ``--param key=value`` overrides typed like
    the default they replace."""
    from volume_monitor.model import SEED_PARAMS, VolumeDetector

    params = VolumeDetector().get_params()
    params.update(SEED_PARAMS)
    for key, text in overrides.items():
        if key not in params:
            raise ConfigError(f"unknown parameter {key!r}; known: {', '.join(sorted(params))}")
        params[key] = _typed(key, text, params[key])
    return params


def train(
    settings: Settings,
    start: dt.date | None = None,
    end: dt.date | None = None,
    overrides: dict[str, str] | None = None,
    promote: bool = False,
) -> TrainResult:
    """Fit a detector on the window, log it to MLflow, register a version, maybe promote it."""
    from volume_monitor import evaluate  # training only: scoring does not pay for these
    from volume_monitor.model import VolumeDetector

    began = time.perf_counter()
    start, end = training_window(settings, start, end)
    params = detector_params(overrides or {})
    raw = _without_excluded_days(_fetch(settings, start, end), settings)
    if raw.empty:
        raise NoDataError(f"the query returned no rows for the training window {start}..{end}")
    frame = etl.prepare(raw)
    days = frame.index.nunique()
    if days < MIN_TRAINING_DAYS:
        log.warning(
            "train: only %d days of history; %d or more give stable weekday baselines",
            days,
            MIN_TRAINING_DAYS,
        )
    try:
        detector = VolumeDetector(**params).fit(frame)
    except ValueError as exc:
        raise ConfigError(f"invalid model parameters: {exc}") from None
    scored = detector.score(frame)
    metrics = _training_metrics(frame, scored)
    history = frame.reset_index()[["date", *etl.SERIES_KEYS, "count"]]
    benchmark = evaluate.self_benchmark(history, params)
    metrics.update({f"bench_{k}": v for k, v in benchmark.items() if not np.isnan(v)})
    run_id, version = _log_run(settings, detector, frame, scored, metrics, params, (start, end))
    if promote:
        tracking.promote(settings, version)
    log.info(
        "train: %d rows, %d series, version %s%s in %.1fs",
        len(frame),
        metrics["series"],
        version,
        " (promoted)" if promote else "",
        time.perf_counter() - began,
    )
    return TrainResult(
        run_id, version, len(frame), int(metrics["series"]), int(metrics["days"]), promote
    )


def _log_run(settings, detector, frame, scored, metrics, params, window) -> tuple[str, str]:
    """Log the training run (parameters, metrics, score histogram, model) to MLflow."""
    start, end = window
    with tempfile.TemporaryDirectory() as scratch:
        histogram = report.plot_histogram(
            scored["score"].to_numpy(), Path(scratch) / report.HISTOGRAM_FILE,
            f"Training {start}..{end}: decision function", params["contamination"],
        )  # fmt: skip
        run_params = {
            **params, "window_start": start, "window_end": end,
            "query": settings.query_path.name,
            "database": make_url(settings.database_url).get_backend_name(),
        }  # fmt: skip
        return tracking.log_training(settings, detector, frame, run_params, metrics, [histogram])


def deploy(
    settings: Settings, day: dt.date, dry_run: bool = False, force: bool = False
) -> ScoreResult:
    """The nightly run: under the run lock, deliver the alerts of earlier days that could not
    be sent (marked late), then score ``day``. An alert still undelivered raises
    :class:`AlertDeliveryError` once everything else is done."""
    with runlock.held(settings.results_dir):
        undelivered = [] if dry_run else send_late_alerts(settings, day)
        result = score_day(settings, day, dry_run=dry_run, force=force)
    if undelivered:
        raise AlertDeliveryError("late alert(s) still undelivered: " + "; ".join(undelivered))
    return result


def backfill(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    notify: bool = False,
    version: str | None = None,
    progress: Callable[[int, int, dt.date], None] | None = None,
) -> list[ScoreResult]:
    """Score every day from ``start`` to ``end`` (both included) in order, under the run lock,
    with the production model or the pinned ``version``. Alerts are written to ``email.txt``
    unless ``notify``; undelivered ones raise :class:`AlertDeliveryError` at the end."""
    if start > end:
        raise ConfigError(f"the backfill is empty: --start {start} is after --end {end}")
    _check_over(settings, end)
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    results, undelivered = [], []
    with runlock.held(settings.results_dir):
        model = tracking.load_model(settings, version)
        for number, day in enumerate(days, 1):
            try:
                scored = score_day(settings, day, not notify, model=model, kind="backfill")
                results.append(scored)
            except AlertDeliveryError as exc:
                undelivered.append(f"{day}: {exc}")
                folder = report.day_dir(settings.results_dir, day)
                results.append(ScoreResult(folder, report.read_summary(folder) or {}))
            if progress:
                progress(number, len(days), day)
    if undelivered:
        raise AlertDeliveryError(f"{len(undelivered)} alert(s) undelivered: {undelivered[0]}")
    return results


def score_day(
    settings: Settings,
    day: dt.date,
    dry_run: bool = False,
    force: bool = False,
    model: tracking.LoadedModel | None = None,
    kind: str | None = None,
) -> ScoreResult:
    """Score one day with ``model`` (default: the production model), write
    ``results/<day>/``, alert if needed, and log the run to the scoring experiment as ``kind``
    (default: ``nightly``, or ``dry run``).

    Results are written before any email is attempted. A day already alerted by the same model
    version is not emailed again unless ``force``.
    """
    began = time.perf_counter()
    _check_over(settings, day)
    model, raw = _model_and_counts(settings, day, model)
    _warn_if_before_training(model, day)
    frame = etl.prepare(raw, model.detector.series_frame, [pd.Timestamp(day)])
    scored = model.detector.score(frame)
    known_day = known_days.read_calendar(settings.calendar_path).get(day)
    decision = alert.decide(scored, settings, missing_day=raw.empty, known_day=known_day)
    folder = report.day_dir(settings.results_dir, day)
    previous = report.read_summary(folder) or {}
    sent_before = _already_notified(previous, model)
    summary = _summary(day, scored, decision, model, previous if sent_before else {}, known_day)
    histogram = _write_results(folder, scored, summary, model)
    try:
        if decision.alert and (force or not sent_before):
            volume = _plot_volume(settings, day, model, scored, folder, raw.empty)
            images = [histogram, volume]
            model_name = f"{model.uri} (version {model.version})"
            message = alert.compose(
                day, scored, decision, model_name, folder, settings.smtp.recipients, images
            )
            _notify(settings, message, folder, summary, dry_run)
        elif decision.alert:
            log.info("alert: already sent for %s by this model; --force sends it again", day)
    finally:
        _log_history(settings, summary, kind or ("dry run" if dry_run else "nightly"))
    log.info(
        "deploy: %s scored, %d rows, %d anomalies, alert %s, in %.1fs; results in %s",
        day, len(scored), decision.anomalies, decision.alert, time.perf_counter() - began,
        folder,
    )  # fmt: skip
    return ScoreResult(folder, summary)


def send_late_alerts(settings: Settings, day: dt.date) -> list[str]:
    """Send, marked late, the alerts of the ``LATE_ALERT_DAYS`` days before ``day`` that could
    not be delivered; returns one line per alert that still could not be."""
    failures = []
    for earlier in range(LATE_ALERT_DAYS, 0, -1):
        folder = report.day_dir(settings.results_dir, day - dt.timedelta(days=earlier))
        pending = folder / PENDING_FILE
        if not pending.exists():
            continue
        summary = report.read_summary(folder) or {}
        message = alert.Message.from_json(pending.read_text(encoding="utf-8"))
        late = alert.mark_late(message, summary.get("delivery_error", ""), settings.smtp.recipients)
        try:
            refused = alert.send(settings.smtp, late)
        except AlertDeliveryError as exc:
            failures.append(f"{folder.name}: {exc}")
            continue
        summary.update(notified=True, notified_at=_now(), late=True, refused_recipients=refused)
        report.write_summary(folder, summary)
        pending.unlink()
        log.warning("alert: the alert of %s was delivered late", folder.name)
    return failures


def _check_over(settings: Settings, day: dt.date) -> None:
    if day >= today(settings):
        raise ConfigError(
            f"{day} is not over yet in {settings.timezone}: the latest day to score is "
            f"{yesterday(settings)}"
        )


def _plot_volume(settings, day, model, scored, folder, missing_day: bool) -> Path:
    """``volume.png``: the worst anomalous series (the whole volume on a missing day) over the
    ``VOLUME_PLOT_DAYS`` days up to ``day``, against its expected range. Earlier days come from
    their ``scores.csv`` (what the monitor counted and expected then), so an alert costs no
    second query; days never scored are gaps."""
    earlier = [day - dt.timedelta(days=n) for n in range(VOLUME_PLOT_DAYS - 1, 0, -1)]
    history = pd.concat(
        [report.read_scores(settings.results_dir, earlier), scored.assign(date=pd.Timestamp(day))]
    )
    anomalous = report.worst_first(scored[scored["is_anomaly"]])
    if missing_day or anomalous.empty:
        rows, name = history, "all series"
    else:
        worst = anomalous.iloc[0][etl.SERIES_KEYS]
        rows = history[(history[etl.SERIES_KEYS].astype(str) == worst.astype(str)).all(axis=1)]
        name = "/".join(str(value) for value in worst)
    daily = rows.groupby("date")[["count", "expected_low", "expected_high"]].sum(min_count=1)
    title = f"{name}: daily events up to {day} (model v{model.version})"
    try:
        return report.plot_volume(daily, folder / report.VOLUME_FILE, title)
    except OSError as exc:
        raise ResultsError(f"cannot write the volume plot to {folder}: {exc}") from None


def _log_history(settings: Settings, summary: dict[str, Any], kind: str) -> None:
    """Log the scored day to the scoring experiment; a store that fails only costs a warning:
    the results and the alert matter more than the history."""
    try:
        tracking.log_scoring(settings, summary, kind)
    except VolumeMonitorError as exc:
        log.warning("history: the scoring run was not logged to MLflow: %s", exc)


def _without_excluded_days(raw: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """``raw`` without the calendar's days marked ``exclude_from_training``."""
    excluded = known_days.excluded_from_training(known_days.read_calendar(settings.calendar_path))
    if not excluded:
        return raw
    keep = ~raw["date"].isin(pd.to_datetime(sorted(excluded)))
    log.info("train: %d calendar day(s) left out of training", raw.loc[~keep, "date"].nunique())
    return raw[keep]


def _warn_if_before_training(model: tracking.LoadedModel, day: dt.date) -> None:
    """A day before the training window is scored, with a warning: its baselines come from
    later days. (Versions trained before the window was recorded carry no window.)"""
    first = getattr(model.detector, "trained_from_", None)
    if first and day.isoformat() < first:
        log.warning(
            "deploy: %s is before the training window of model version %s (%s..%s): it is "
            "scored against baselines learnt from later days",
            day, model.version, first, model.detector.trained_to_,
        )  # fmt: skip


def _model_and_counts(settings, day, model) -> tuple[tracking.LoadedModel, pd.DataFrame]:
    """``model`` (default: the production model, loaded meanwhile in a second thread) and the
    day's counts. The query waits on the database and loading on Python, so the two overlap."""
    end = day + dt.timedelta(days=1)
    if model is not None:
        return model, _fetch(settings, day, end)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-model") as pool:
        loading = pool.submit(tracking.load_model, settings)
        try:
            raw = _fetch(settings, day, end)
        except VolumeMonitorError:
            loading.result()  # without a model no day can be scored: its error comes first
            raise
        return loading.result(), raw


def _fetch(settings: Settings, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Counts per day and series for ``[start, end)``: the query's rows are reduced chunk by
    chunk (user agent → OS family, summed), so memory stays flat however many rows it returns;
    a series may appear once per chunk (``etl.prepare`` sums them). User agents seen on earlier
    nights come from ``VM_UA_CACHE``."""
    engine = db.make_engine(settings.database_url)
    query = db.read_query(settings.query_path)
    cache = agents.FamilyCache(settings.ua_cache_path)
    parts = [etl.regroup(chunk, cache) for chunk in db.fetch_chunks(engine, query, start, end)]
    log.info(
        "agents: %d distinct user agents, %d new parsed in %.2fs, the rest from the cache",
        len(cache.recent), cache.added, cache.parse_seconds,
    )  # fmt: skip
    cache.save()
    return pd.concat(parts, ignore_index=True)


def _write_results(
    folder: Path, scored: pd.DataFrame, summary: dict[str, Any], model: tracking.LoadedModel
) -> Path:
    """``histogram.png``, ``scores.csv`` and ``summary.json``; returns the histogram's path."""
    title = f"{summary['date']}: {summary['anomalies']} anomalous series (model v{model.version})"
    try:
        histogram = report.plot_histogram(
            scored["score"].to_numpy(), folder / report.HISTOGRAM_FILE, title,
            model.detector.contamination,
        )  # fmt: skip
        report.write_scores(folder, scored)
        report.write_summary(folder, summary)
    except OSError as exc:
        raise ResultsError(f"cannot write the results to {folder}: {exc.strerror or exc}") from None
    return histogram


def _notify(
    settings: Settings, message: alert.Message, folder: Path, summary: dict, dry_run: bool
) -> None:
    """Send the alert, or write it to ``email.txt`` and ``email.html`` on a dry run or when
    SMTP is not configured; record the outcome in ``summary.json``. An undelivered alert is
    kept in ``pending_alert.json`` for the next run and raises :class:`AlertDeliveryError`
    once the outcome is recorded."""
    if dry_run or not settings.smtp.configured:
        report.write_text(folder / EMAIL_FILE, message.as_text(settings.smtp.sender))
        report.write_text(folder / EMAIL_HTML_FILE, message.html)
        why = "dry run" if dry_run else "SMTP_HOST or ALERT_TO is not set"
        log.warning("alert: not sent (%s); written to %s", why, folder / EMAIL_FILE)
        return
    try:
        refused = alert.send(settings.smtp, message)
    except AlertDeliveryError as exc:
        summary["delivery_error"] = str(exc)
        report.write_text(folder / PENDING_FILE, message.to_json())
        report.write_summary(folder, summary)
        raise
    summary.update(notified=True, notified_at=_now(), refused_recipients=refused)
    report.write_summary(folder, summary)
    for stale in (PENDING_FILE, EMAIL_FILE, EMAIL_HTML_FILE):
        (folder / stale).unlink(missing_ok=True)
    if refused:  # the others got it: recorded as sent, but cron must hear of the failure
        raise AlertDeliveryError(f"the SMTP server refused recipient(s): {', '.join(refused)}")


def _already_notified(previous: dict[str, Any], model: tracking.LoadedModel) -> bool:
    """Whether an earlier run already delivered this day's alert for the same model version."""
    same_model = (previous.get("model_uri"), previous.get("model_version")) == (
        model.uri,
        model.version,
    )
    return bool(previous.get("notified")) and same_model


def _summary(day, scored, decision, model, sent, known_day=None) -> dict[str, Any]:
    """The ``summary.json`` content; ``sent`` is the earlier summary of a delivered alert for
    this day and model, whose delivery stays recorded; ``known_day`` its calendar entry."""
    return {
        "date": day.isoformat(),
        "rows": len(scored),
        "anomalies": decision.anomalies,
        "anomaly_share": round(decision.share, 6),
        "alert": decision.alert,
        "reasons": decision.reasons,
        "missing_day": decision.missing_day,
        "groups": alert.group_lines(scored),
        "known_day": known_day.label if known_day else None,
        "model_uri": model.uri,
        "model_version": model.version,
        "run_id": model.run_id,
        "notified": bool(sent),
        "notified_at": sent.get("notified_at"),
        "scored_at": _now(),
    }


def _training_metrics(frame: pd.DataFrame, scored: pd.DataFrame) -> dict[str, float]:
    scores = scored["score"].to_numpy()
    quantiles = np.quantile(scores, [0.01, 0.05, 0.5, 0.95])
    return {
        "rows": float(len(frame)),
        "series": float(len(frame[etl.SERIES_KEYS].drop_duplicates())),
        "days": float(frame.index.nunique()),
        "anomaly_share": float(scored["is_anomaly"].mean()),
        "outlier_share": float((scores < 0).mean()),
        "score_p01": float(quantiles[0]),
        "score_p05": float(quantiles[1]),
        "score_p50": float(quantiles[2]),
        "score_p95": float(quantiles[3]),
    }


def _typed(key: str, text: str, default: Any) -> Any:
    """``text`` as the type of ``default``; a number or ``none`` where the default is None."""
    try:
        if default is None:
            return None if text.strip().lower() in {"", "none"} else float(text)
        if isinstance(default, bool):
            return text.strip().lower() in {"1", "true", "yes"}
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"parameter {key} expects {_type_name(default)}, not {text!r}") from None
    return text


def _type_name(default: Any) -> str:
    return "a number or none" if default is None else f"a {type(default).__name__}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
