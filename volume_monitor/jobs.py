"""Orchestration: ``train``, ``score_day``, ``backfill`` and the ``nightly`` run wire the
stages together for one monitor or several, and do nothing else.

Several monitors run concurrently, up to ``VM_WORKERS`` at once, each under its own run lock.
One broken monitor never stops the others: its error is collected in its :class:`Outcome`.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import make_url

from volume_monitor import (
    agents,
    clock,
    db,
    deadline,
    etl,
    feedback,
    files,
    freshness,
    known_days,
    memory,
    plots,
    results,
    runlock,
    state,
    tracking,
)
from volume_monitor.alerting import content, outbox, policy
from volume_monitor.alerting.channels import file as file_channel
from volume_monitor.config import (
    DEFAULT_DIMENSIONS,
    DEFAULT_MONITOR,
    MonitorSpec,
    Settings,
    holiday_country,
)
from volume_monitor.detect.explain import usual_rows
from volume_monitor.errors import (
    AlertDeliveryError,
    ConfigError,
    ModelMismatchError,
    NoDataError,
    ResultsError,
    VolumeMonitorError,
)
from volume_monitor.results import RunSummary

log = logging.getLogger(__name__)

TRAINING_DAYS = 365
MIN_TRAINING_DAYS = 60  # fewer days give each weekday baseline only a few observations
VOLUME_PLOT_DAYS = 60
STREAK_DAYS = 30  # how far back an alert counts the days in a row a series has been off
# A backfill collects its cyclic garbage every so many days: the nightly job's collector runs
# rarely (see cli.GC_THRESHOLDS), and over hundreds of days figures and frames in cycles pile up.
COLLECT_EVERY = 30
RECENT_SPARE_WEEKS = 4  # weeks read back beyond a baseline's, for the days that alerted
ONE_DAY = dt.timedelta(days=1)
FEEDBACK_FILE = "feedback.json"  # the verdicts a training run used, among its artifacts


@dataclass(frozen=True)
class TrainResult:
    monitor: str
    run_id: str
    version: str
    rows: int
    series: int
    days: int
    promoted: bool


@dataclass(frozen=True)
class ScoreResult:
    """A scored day: its folder and its summary (its alert, if any, waits in the outbox)."""

    folder: Path
    summary: RunSummary


@dataclass(frozen=True)
class Outcome:
    """What one monitor's part of a run gave: its result, or the error that stopped it."""

    monitor: str
    result: Any = None
    error: VolumeMonitorError | None = None


@dataclass(frozen=True)
class NightReport:
    outcomes: list[Outcome]
    undelivered: list[str]  # one line per alert that could not be delivered


# --- several monitors ------------------------------------------------------------------


def run_each(
    monitors: Sequence[MonitorSpec], work: Callable[[MonitorSpec], Any], workers: int = 1
) -> list[Outcome]:
    """``work`` for each monitor, up to ``workers`` at once; a known error stops only its own
    monitor. Outcomes come in the order of ``monitors``."""

    def attempt(monitor: MonitorSpec) -> Outcome:
        try:
            return Outcome(monitor.name, work(monitor))
        except VolumeMonitorError as exc:
            return Outcome(monitor.name, error=exc)

    if workers <= 1 or len(monitors) <= 1:
        return [attempt(monitor) for monitor in monitors]
    with ThreadPoolExecutor(min(workers, len(monitors)), thread_name_prefix="monitor") as pool:
        return list(pool.map(attempt, monitors))


def raise_failures(outcomes: Sequence[Outcome]) -> None:
    """Raise one error naming every monitor that failed, with the most serious exit code (1
    before 3 before 0); when only one monitor ran, its own error (naming the monitor unless it
    is the default one)."""
    failed = [o for o in outcomes if o.error is not None]
    if not failed:
        return
    if len(outcomes) == 1 and failed[0].monitor == DEFAULT_MONITOR:
        raise failed[0].error
    if len(outcomes) == 1:  # the same error, naming its monitor
        raise type(failed[0].error)(f"monitor {failed[0].monitor!r}: {failed[0].error}")
    error = VolumeMonitorError("; ".join(f"monitor {o.monitor!r}: {o.error}" for o in failed))
    codes = {o.error.exit_code for o in failed}
    error.exit_code = 1 if 1 in codes else max(codes)
    raise error


def train_monitors(
    settings: Settings,
    names: Sequence[str] | None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    overrides: dict[str, str] | None = None,
    promote: bool = False,
) -> list[Outcome]:
    """Train each monitor named (default: all), one after the other."""
    return run_each(
        settings.selected(names),
        lambda monitor: train(settings, start, end, overrides, promote, monitor),
    )


def nightly(
    settings: Settings,
    day: dt.date | None,
    names: Sequence[str] | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> NightReport:
    """The nightly run: score ``day`` (default: each monitor's latest settled day, yesterday
    without ``settle_hours``) for each monitor named (default: all) under its run lock, and
    again its days read late in the week before; then deliver what waits in the outbox for
    them: tonight's alerts and resolved notices, and earlier ones that could not be sent
    (marked late), one message per channel address."""
    monitors = settings.selected(names)
    with state.open_store(settings.state_url) as store:

        def score_one(monitor: MonitorSpec) -> ScoreResult:
            folder = results.monitor_dir(settings.results_dir, monitor.name)
            its_day = day or settled_day(settings, monitor)
            with runlock.held(folder, settings.lock_wait):
                result = score_monitor(
                    settings, store, monitor, its_day, dry_run=dry_run, force=force
                )
                if not dry_run:
                    _rescore_late_days(settings, store, monitor, its_day)
            return result

        outcomes = run_each(monitors, score_one, settings.workers)
        last = day or clock.yesterday(settings)
        undelivered = [] if dry_run else deliver(settings, store, last, monitors)
    return NightReport(outcomes, undelivered)


def settled_day(settings: Settings, monitor: MonitorSpec) -> dt.date:
    """The day a nightly run scores for ``monitor``: the latest one ``settle_hours`` past."""
    return freshness.settled_day(clock.now_local(settings), monitor.settle_hours)


def _rescore_late_days(
    settings: Settings, store: state.Store, monitor: MonitorSpec, day: dt.date
) -> None:
    """Score again the days of the ``RESCORE_DAYS`` before ``day`` that were read before they
    were complete; each stays late until its freshness query says otherwise."""
    since = day - dt.timedelta(days=freshness.RESCORE_DAYS)
    for record in store.days(monitor.name, since, day - ONE_DAY):
        if record.summary.get("late_data"):
            log.info("freshness: %s %s was read late; scoring it again", monitor.name, record.date)
            score_monitor(settings, store, monitor, record.date)


# --- one monitor -----------------------------------------------------------------------


def deploy(
    settings: Settings,
    day: dt.date,
    dry_run: bool = False,
    force: bool = False,
    monitor: MonitorSpec | None = None,
) -> ScoreResult:
    """The nightly run of one monitor (default: the only one); its error is raised."""
    monitor = monitor or settings.monitor()
    report = nightly(settings, day, [monitor.name], dry_run, force)
    raise_failures(report.outcomes)
    if report.undelivered:
        raise AlertDeliveryError("; ".join(report.undelivered))
    return _reread(report.outcomes[0].result)


def score_day(
    settings: Settings,
    day: dt.date,
    dry_run: bool = False,
    force: bool = False,
    model: tracking.LoadedModel | None = None,
    kind: str | None = None,
    monitor: MonitorSpec | None = None,
) -> ScoreResult:
    """Score one day of one monitor (default: the only one) and deliver its alert alone,
    without the run lock."""
    monitor = monitor or settings.monitor()
    with state.open_store(settings.state_url) as store:
        result = score_monitor(
            settings, store, monitor, day, dry_run=dry_run, force=force, model=model, kind=kind
        )
        failures = [] if dry_run else deliver(settings, store, day, [monitor])
    if failures:
        raise AlertDeliveryError("; ".join(failures))
    return _reread(result)


def backfill(
    settings: Settings,
    start: dt.date,
    end: dt.date,
    notify: bool = False,
    version: str | None = None,
    progress: Callable[[int, int, dt.date], None] | None = None,
    monitor: MonitorSpec | None = None,
) -> list[ScoreResult]:
    """Score every day from ``start`` to ``end`` (both included) in order for one monitor
    (default: the only one), under its run lock, with the production model or the pinned
    ``version``; between days, runs waiting for the lock (tonight's) go first. Alerts are
    written to ``email.txt`` unless ``notify``; undelivered ones raise
    :class:`AlertDeliveryError` at the end."""
    monitor = monitor or settings.monitor()
    if start > end:
        raise ConfigError(f"the backfill is empty: --start {start} is after --end {end}")
    clock.check_over(settings, end)
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    scored, undelivered = [], []
    folder = results.monitor_dir(settings.results_dir, monitor.name)
    with (
        runlock.held(folder, settings.lock_wait) as lock,
        state.open_store(settings.state_url) as store,
    ):
        model = tracking.load_model(settings, version, monitor)
        for number, day in enumerate(days, 1):
            lock.let_waiters_first()  # a nightly run started meanwhile scores before this day
            result = score_monitor(
                settings, store, monitor, day, dry_run=not notify, model=model, kind="backfill"
            )
            if notify:
                undelivered += [f"{day}: {f}" for f in deliver(settings, store, day, [monitor])]
            scored.append(_reread(result))
            if number % COLLECT_EVERY == 0:
                gc.collect()
            if progress:
                progress(number, len(days), day)
    if undelivered:
        raise AlertDeliveryError(f"{len(undelivered)} alert(s) undelivered: {undelivered[0]}")
    return scored


def score_monitor(
    settings: Settings,
    store: state.Store,
    monitor: MonitorSpec,
    day: dt.date,
    *,
    dry_run: bool = False,
    force: bool = False,
    model: tracking.LoadedModel | None = None,
    kind: str | None = None,
) -> ScoreResult:
    """Score ``day`` for ``monitor`` with ``model`` (default: its production model): record the
    counts and verdict in the state store, queue in the outbox the day's alert (for the
    channels that do not have it from this model version, unless ``force``) or the resolved
    notice it calls for, and replace ``results/<monitor>/<day>/`` whole. Nothing is sent
    here."""
    began = time.perf_counter()
    clock.check_over(settings, day)
    latest = db.Latest(monitor.freshness_column) if monitor.freshness_column else None
    model, raw = _model_and_counts(settings, monitor, day, model, latest)
    late = _late_data(settings, monitor, day, latest) if not raw.empty else None
    dimensions = db.dimensions_of(raw.columns)
    _check_model_fits(model, monitor, dimensions)
    _warn_if_before_training(model, day)
    detector = model.detector
    frame = etl.prepare(raw, detector.series_frame, [pd.Timestamp(day)], dimensions)
    verdicts = store.all_feedback(monitor.name)
    recent = _recent_counts(store, monitor.name, day, detector, dimensions, verdicts)
    scored = policy.gated(detector.score(frame, recent=recent), monitor)
    if late:
        scored = policy.as_late(scored)
    scored = policy.expected(scored, feedback.expected_rows(scored, verdicts, day))
    known_day = known_days.read_calendar(monitor.calendar_path).get(day) or _expected_day(
        verdicts, day
    )
    silences = store.silences(monitor.name, active_on=day)
    scored = scored.assign(silenced=policy.silenced_rows(scored, silences))
    decision = policy.decide(
        scored, monitor, raw.empty, known_day, policy.silences_whole_monitor(silences), late
    )
    delivered = outbox.delivered(store, monitor.name, day, model.version)
    if not decision.alert and not dry_run:
        outbox.withdraw(store, monitor.name, day)
    summary = _summary(monitor, day, scored, dimensions, decision, model, delivered, known_day)
    summary.duration_seconds = round(time.perf_counter() - began, 3)
    store.write_counts(monitor.name, dimensions, scored, "scored")
    folder = results.day_dir(settings.results_dir, day, monitor.name)
    case = content.Scored(
        monitor, day, scored, dimensions, decision, model.label, folder, model.version,
        notes=tuple(detector.notes()),
    )  # fmt: skip
    notice = _notice(settings, store, case, summary, dry_run)
    kind = kind or ("dry run" if dry_run else "nightly")
    store.record_day(_day_record(summary, kind))
    if notice is not None and not dry_run and monitor.routes:
        queued = outbox.queue(store, notice, monitor.routes, force=force)
        if notice.kind == "alert" and not queued:
            log.info("alert: %s of %s was already sent by this model", day, monitor.name)
    to_file = decision.alert and (dry_run or not monitor.routes)
    _write_day(settings, store, case, summary, model, notice if to_file else None)
    log.info(
        "deploy: %s %s scored, %d rows, %d anomalies, alert %s, in %.1fs; results in %s",
        monitor.name, day, len(scored), decision.anomalies, decision.alert,
        time.perf_counter() - began, folder,
    )  # fmt: skip
    return ScoreResult(folder, summary)


def _notice(settings, store, case: content.Scored, summary, dry_run) -> content.Alert | None:
    """The alert of an alerting day; for a normal day that follows alerts which reached a
    channel, its resolved notice; else None."""
    if case.decision.alert:
        case = replace(case, days_off=_days_off(store, case), recovered=_recovered(store, case))
        images = [case.folder / results.HISTOGRAM_FILE, case.folder / results.VOLUME_FILE]
        return content.build(case, summary.severity, images, settings.base_url)
    if dry_run:
        return None
    alerted, routes = outbox.to_resolve(store, case.monitor, case.day)
    if not routes:
        return None
    return content.resolved(
        case.monitor, case.day, alerted, case.model, case.model_version, case.folder,
        settings.base_url,
    )  # fmt: skip


def train(
    settings: Settings,
    start: dt.date | None = None,
    end: dt.date | None = None,
    overrides: dict[str, str] | None = None,
    promote: bool = False,
    monitor: MonitorSpec | None = None,
) -> TrainResult:
    """Fit a detector for ``monitor`` (default: the only one) on the window, log it to MLflow,
    register a version, maybe promote it, and seed the state store with the window's counts
    and expected ranges (so the first alert's plot has history)."""
    from volume_monitor import evaluate  # training only: scoring does not pay for these
    from volume_monitor.detect.detector import VolumeDetector

    began = time.perf_counter()
    monitor = monitor or settings.monitor()
    start, end = training_window(settings, start, end)
    monitor_params = {"holidays": monitor.holidays, "alert_budget": str(monitor.alert_budget)}
    params = detector_params({**monitor_params, **(overrides or {})})
    raw = _without_excluded_days(_fetch(settings, monitor, start, end), monitor)
    if raw.empty:
        raise NoDataError(f"the query returned no rows for the training window {start}..{end}")
    dimensions = db.dimensions_of(raw.columns)
    frame = etl.prepare(raw, dimensions=dimensions)
    del raw  # the query's rows: as large as the frame, and no longer needed
    memory.give_back()
    _warn_if_short(frame)
    judged, judged_metrics = _judged(settings, monitor, frame, dimensions, start, params["clean"])
    frame = frame[judged.keep]
    fingerprint = db.query_fingerprint(monitor.query_path)
    try:
        detector = VolumeDetector(**params).fit(
            frame, monitor=monitor.name, query_hash=fingerprint, normal=judged.normal[judged.keep]
        )
    except ValueError as exc:
        raise ConfigError(f"invalid model parameters: {exc}") from None
    memory.give_back()
    scored = detector.score(frame)
    metrics = {**_training_metrics(frame, scored, dimensions), **judged_metrics}
    metrics.update(_calibration_metrics(detector))
    if dimensions == list(DEFAULT_DIMENSIONS):  # its faults are injected into these segments
        history = frame.reset_index()[["date", *dimensions, "count"]]
        benchmark = evaluate.self_benchmark(history, params)
        metrics.update({f"bench_{k}": v for k, v in benchmark.items() if not np.isnan(v)})
    run_id, version = _log_run(
        settings, monitor, detector, frame, scored, metrics, params, judged.used
    )
    memory.give_back()
    with state.open_store(settings.state_url) as store:
        store.write_counts(monitor.name, dimensions, scored, "train")
    if promote:
        tracking.promote(settings, version, monitor)
    log.info(
        "train: %s, %d rows, %d series, version %s%s in %.1fs", monitor.name, len(frame),
        metrics["series"], version, " (promoted)" if promote else "",
        time.perf_counter() - began,
    )  # fmt: skip
    series, days = int(metrics["series"]), int(metrics["days"])
    return TrainResult(monitor.name, run_id, version, len(frame), series, days, promote)


def training_window(settings: Settings, start: dt.date | None, end: dt.date | None):
    """``[start, end)``; by default the 365 days before today."""
    end = end or clock.today(settings)
    start = start or end - dt.timedelta(days=TRAINING_DAYS)
    if start >= end:
        raise ConfigError(f"the training window is empty: start {start} is not before end {end}")
    return start, end


def detector_params(overrides: dict[str, str]) -> dict[str, Any]:
    """The seed hyperparameters and defaults, with ``--param key=value`` overrides typed like
    the default they replace."""
    from volume_monitor.detect.detector import SEED_PARAMS, VolumeDetector

    params = VolumeDetector().get_params()
    params.update(SEED_PARAMS)
    for key, text in overrides.items():
        if key not in params:
            raise ConfigError(f"unknown parameter {key!r}; known: {', '.join(sorted(params))}")
        params[key] = _typed(key, text, params[key])
    holiday_country(params["holidays"], "--param holidays")  # one line for a country unknown
    return params


# --- delivery --------------------------------------------------------------------------


def deliver(
    settings: Settings, store: state.Store, day: dt.date, monitors: Sequence[MonitorSpec]
) -> list[str]:
    """Send what waits in the outbox for ``monitors`` (see :func:`outbox.flush`) and note it
    in each day's summary. Returns one line per message that could not be delivered (it
    stays in the outbox for the next run) or reached only some of its recipients."""
    report = outbox.flush(settings, store, day, monitors)
    failures = list(report.failures)
    by_day: dict[tuple[str, dt.date], list[outbox.Attempted]] = {}
    for attempted in report.attempted:
        row = attempted.delivery
        if row.kind == "alert":
            by_day.setdefault((row.monitor, row.date), []).append(attempted)
        if attempted.refused:  # the others got it: sent, but cron must hear of the failure
            failures.append(f"{row.channel}: the SMTP server refused recipient(s): "
                            f"{', '.join(attempted.refused)}")  # fmt: skip
    for (monitor, date), attempts in by_day.items():
        folder = results.day_dir(settings.results_dir, date, monitor)
        summary = results.read_run_summary(folder)
        if summary is not None:
            _update_summary(store, folder, _delivered_summary(summary, attempts))
    return failures


def _delivered_summary(summary: RunSummary, attempts: list[outbox.Attempted]) -> RunSummary:
    """``summary`` after the attempts to deliver its alert: which channels have it, when the
    first got it, the last error."""
    channels = dict(summary.channels)
    channels.update({a.delivery.channel: a.delivery.status for a in attempts})
    sent = [a for a in attempts if a.delivery.status in state.DELIVERED]
    errors = [a.delivery.last_error for a in attempts if a.delivery.status == "failed"]
    update: dict[str, Any] = {"channels": channels}
    if sent:
        update.update(notified=True, late=summary.late or any(a.late for a in sent))
        update["notified_at"] = summary.notified_at or sent[0].delivery.sent_at
        refused = sorted({r for a in sent for r in a.refused})
        update["refused_recipients"] = refused or summary.refused_recipients
    update["delivery_error"] = "; ".join(e for e in errors if e) or None
    return replace(summary, **update)


def _update_summary(store: state.Store, folder: Path, summary: RunSummary) -> None:
    """Rewrite the day's ``summary.json`` and its record in the store."""
    try:
        results.write_summary(folder, summary)
    except OSError as exc:
        log.warning("results: cannot update %s: %s", folder / results.SUMMARY_FILE, exc)
    record = store.day(summary.monitor, dt.date.fromisoformat(summary.date))
    kind = record.kind if record else "nightly"
    store.record_day(_day_record(summary, kind))


# --- steps -----------------------------------------------------------------------------


def _write_day(settings, store, case: content.Scored, summary, model, to_file) -> None:
    """Build the day's folder beside its place and swap it in: histogram, scores, summary,
    and, when the day alerts, the volume plot; ``to_file`` (an alert no channel takes: a dry
    run, or a monitor without channels) is written as ``email.txt`` and ``email.html``. A
    plot that cannot be drawn is left out with a warning."""
    folder = case.folder
    title = f"{case.day}: {summary.anomalies} anomalous series (model v{model.version})"
    try:
        with files.replaced_folder(folder) as building:
            _drawn(
                plots.plot_histogram,
                case.scored["score"].to_numpy(),
                building / results.HISTOGRAM_FILE,
                title,
                model.detector.contamination,
            )
            _drawn(_plot_boundary, model.detector, building / results.BOUNDARY_FILE, title,
                   case.scored)  # fmt: skip
            results.write_scores(building, case.scored, case.dimensions)
            results.write_summary(building, summary)
            if case.decision.alert:
                _drawn(_plot_volume, store, case, building / results.VOLUME_FILE, model.version)
            if to_file is not None:
                recipients = case.monitor.recipients
                file_channel.write(building, to_file, settings.smtp.sender, recipients)
                why = "a dry run or backfill" if case.monitor.routes else "no channel configured"
                log.warning("alert: not sent (%s); written to %s", why, folder / results.EMAIL_FILE)
    except OSError as exc:
        raise ResultsError(f"cannot write the results to {folder}: {exc.strerror or exc}") from None


def _drawn(draw: Callable[..., Any], *args: Any) -> None:
    """A plot, or a warning when it cannot be drawn (a label matplotlib cannot lay out, a
    failing backend): the alert goes without it. A file that cannot be written is the
    results' error, raised."""
    try:
        draw(*args)
    except OSError:
        raise
    except Exception as exc:  # matplotlib raises ValueError, RuntimeError and others
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("plots: a plot is left out (%s): %s: %s", draw.__name__,
                    type(exc).__name__, first)  # fmt: skip


def _plot_boundary(detector, path: Path, title: str, scored: pd.DataFrame | None = None):
    """``boundary.png``: the outlier model's decision boundary over its two features, with
    the training rows kept in the model and the day's ``scored`` rows; nothing for a model
    without them (seed features, or saved before it kept them)."""
    training = getattr(detector, "training_sample_", None)
    if training is None or not len(training):
        return None
    day, anomalous = detector.boundary_points(scored) if scored is not None else (None, None)
    return plots.plot_boundary(detector.outlier_decision, training, path, title, day, anomalous)


def _plot_volume(store, case: content.Scored, path: Path, version: str) -> Path:
    """``volume.png``: the worst anomalous series (the whole volume on a missing day) over the
    ``VOLUME_PLOT_DAYS`` days up to the day, against its expected range, from the state
    store: what the monitor counted and expected then; days never counted are gaps."""
    start = case.day - dt.timedelta(days=VOLUME_PLOT_DAYS - 1)
    anomalous = results.worst_first(case.scored[policy.sendable(case.scored)])
    match, name = None, "all series"
    if not (case.decision.missing_day or anomalous.empty):
        worst = anomalous.iloc[0]
        match = {d: str(worst[d]) for d in case.dimensions}
        name = "/".join(match.values())
    daily = store.daily_totals(case.monitor.name, start, case.day, match)
    every_day = pd.date_range(start, case.day, name="date")
    daily = daily.assign(date=pd.to_datetime(daily["date"])).set_index("date").reindex(every_day)
    title = f"{name}: daily events up to {case.day} (model v{version})"
    return plots.plot_volume(daily, path, title)


def _days_off(store: state.Store, case: content.Scored) -> dict[tuple[str, ...], int]:
    """For each series the alert lists: the days in a row, up to the scored day, that the
    store has it anomalous (at most ``STREAK_DAYS``)."""
    listed, _ = content.to_list(case)
    start = case.day - dt.timedelta(days=STREAK_DAYS - 1)
    found = {}
    for _, row in listed.iterrows():
        labels = content.series_labels(row, case.dimensions)
        match = dict(zip(case.dimensions, labels, strict=True))
        history = store.history(case.monitor.name, start, case.day, match)
        dates = pd.to_datetime(history["date"]).dt.date
        flagged = {
            d: bool(f) for d, f in zip(dates, history["is_anomaly"], strict=True) if pd.notna(f)
        }
        days, day = 0, case.day
        while flagged.get(day, False):
            days, day = days + 1, day - dt.timedelta(days=1)
        found[labels] = days
    return found


def _recovered(store: state.Store, case: content.Scored) -> tuple[str, list[str]]:
    """When the monitor's last scored day (up to ``STREAK_DAYS`` back) alerted: its date, and
    the series anomalous then that are not any more (their labels joined by ``/``)."""
    earlier = store.days(case.monitor.name, case.day - dt.timedelta(days=STREAK_DAYS),
                         case.day - dt.timedelta(days=1))  # fmt: skip
    if not earlier or not earlier[-1].alert:
        return "", []
    then = store.history(case.monitor.name, earlier[-1].date, earlier[-1].date)
    flagged = then[then["is_anomaly"].fillna(False).astype(bool)]
    now = case.scored[case.scored["is_anomaly"].astype(bool)]
    still = {content.series_labels(row, case.dimensions) for _, row in now.iterrows()}
    labels = [content.series_labels(row, case.dimensions) for _, row in flagged.iterrows()]
    return earlier[-1].date.isoformat(), ["/".join(label) for label in labels if label not in still]


def _model_and_counts(
    settings, monitor, day, model, latest: db.Latest | None
) -> tuple[tracking.LoadedModel, pd.DataFrame]:
    """``model`` (default: the monitor's production model, loaded meanwhile in a second
    thread, with the plotting library) and the day's counts (``latest``: the freshness column
    to follow). The query waits on the database and loading on Python, so the two overlap."""
    end = day + dt.timedelta(days=1)
    if model is not None:
        return model, _fetch(settings, monitor, day, end, latest)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-model")
    loading = pool.submit(_load_for_scoring, settings, monitor)
    try:
        raw = _fetch(settings, monitor, day, end, latest)
    except VolumeMonitorError:
        if not deadline.expired():  # past it, the run ends now, whatever the model's fate
            loading.result()  # without a model no day can be scored: its error comes first
        raise
    finally:
        pool.shutdown(wait=False)
    return loading.result(), raw


def _recent_counts(
    store: state.Store,
    monitor: str,
    day: dt.date,
    detector,
    dimensions: list[str],
    verdicts: Sequence[state.Feedback],
) -> pd.DataFrame:
    """The stored counts of ``day``'s weekday in the weeks before it (training's and those
    scored since), ``kept`` where a baseline may be taken from them (inside their range or
    called normal, and not left out by one of the monitor's ``verdicts``: before a new
    level, an incident): each weekday level follows the season between two trainings (see
    ``VolumeDetector.score``)."""
    weeks = detector.recent_weeks + RECENT_SPARE_WEEKS
    stored = store.on_days(monitor, [day - dt.timedelta(weeks=k) for k in range(1, weeks + 1)])
    if stored.empty:
        return stored[["date", *dimensions, "count"]].assign(kept=np.zeros(0, dtype=bool))
    judged = feedback.for_training(stored.set_index("date"), dimensions, verdicts, stored[:0])
    kept = (usual_rows(stored) | judged.normal) & judged.keep
    return stored[["date", *dimensions, "count"]].assign(kept=kept)


def _expected_day(verdicts: Sequence[state.Feedback], day: dt.date) -> known_days.KnownDay | None:
    """A whole day someone called ``expected``, as a known day whose alert is suppressed."""
    item = feedback.whole_day_expected(verdicts, day)
    if item is None:
        return None
    label = f"expected: {item.note}" if item.note else "expected"
    return known_days.KnownDay(day, label, suppress_alert=True, exclude_from_training=True)


def _late_data(
    settings: Settings, monitor: MonitorSpec, day: dt.date, latest: db.Latest | None
) -> str | None:
    """Why ``day`` was read before it was complete, from the monitor's freshness column
    (``latest``, as the counts query filled it) or query; None when it is complete or the
    monitor declares neither."""
    if latest is not None:
        found = freshness.of_value(latest.value, monitor, day, settings.timezone)
    elif monitor.freshness_path is not None:
        engine = _engine(settings, monitor)
        try:
            found = freshness.read(engine, monitor, day, settings.timezone)
        finally:
            engine.dispose()
    else:
        return None
    log.info("freshness: %s %s latest event %s", monitor.name, day, found.latest)
    return found.reason() if found.late else None


def _engine(settings: Settings, monitor: MonitorSpec):
    """The monitor's database, read-only, each query bounded by ``VM_QUERY_TIMEOUT`` and the
    run's deadline."""
    return db.make_engine(
        monitor.database_url,
        connect_timeout=settings.connect_timeout,
        query_timeout=deadline.bounded(settings.query_timeout),
    )


def _load_for_scoring(settings: Settings, monitor: MonitorSpec) -> tracking.LoadedModel:
    model = tracking.load_model(settings, None, monitor)
    plots.load_backend()
    return model


def _fetch(
    settings: Settings,
    monitor: MonitorSpec,
    start: dt.date,
    end: dt.date,
    latest: db.Latest | None = None,
):
    """Counts per day and series for ``[start, end)``: the query's rows are reduced chunk by
    chunk (user agent → OS family, summed), so memory stays flat however many rows it returns,
    and a day holding more than ``VM_MAX_SERIES`` series is refused before it costs the
    memory. User agents seen on earlier nights come from ``VM_UA_CACHE``. The monitor's
    freshness column is no dimension: its latest value goes to ``latest``."""
    if latest is None and monitor.freshness_column:
        latest = db.Latest(monitor.freshness_column)
    engine = _engine(settings, monitor)
    query = db.read_query(monitor.query_path)
    cache = agents.FamilyCache(settings.ua_cache_path)
    chunks = db.fetch_chunks(engine, query, start, end, monitor.dimensions, latest=latest)
    try:
        counts = etl.gather(chunks, cache, settings.max_series)
    finally:
        engine.dispose()
    if cache.looked_up:
        log.info(
            "agents: %d user agents looked up, %d new parsed in %.2fs, the rest from the cache",
            cache.looked_up, cache.added, cache.parse_seconds,
        )  # fmt: skip
        cache.save()
    return counts


def _check_model_fits(model: tracking.LoadedModel, monitor: MonitorSpec, dimensions) -> None:
    problem = model.mismatch(monitor, dimensions)
    if problem:
        raise ModelMismatchError(
            f"{model.uri} (version {model.version}) cannot score the monitor {monitor.name!r}: "
            f"{problem}"
        )


def _reread(result: ScoreResult) -> ScoreResult:
    """``result`` with its summary as the day's folder now holds it (after delivery)."""
    summary = results.read_run_summary(result.folder)
    return replace(result, summary=summary) if summary else result


def _summary(monitor, day, scored, dimensions, decision, model, delivered, known_day):
    """The day's :class:`RunSummary`; ``delivered`` are the outbox rows of its alert already
    sent for this day and model, which stay recorded."""
    return RunSummary(
        date=day.isoformat(),
        monitor=monitor.name,
        rows=len(scored),
        anomalies=decision.anomalies,
        anomaly_share=round(decision.share, 6),
        alert=decision.alert,
        reasons=decision.reasons,
        model_uri=model.uri,
        model_version=model.version,
        run_id=model.run_id,
        notified=bool(delivered),
        notified_at=min(d.sent_at or "" for d in delivered) or None if delivered else None,
        channels={d.channel: d.status for d in delivered},
        missing_day=decision.missing_day,
        groups=content.group_lines(scored, dimensions),
        silenced=decision.silenced,
        severity=policy.severity(scored, dimensions, decision.missing_day)
        if decision.alert
        else None,
        known_day=known_day.label if known_day else None,
        scored_at=clock.now_utc(),
        late_data=decision.late_data,
    )


def _day_record(summary: RunSummary, kind: str) -> state.DayRecord:
    return state.DayRecord(
        monitor=summary.monitor,
        date=dt.date.fromisoformat(summary.date),
        scored_at=summary.scored_at,
        kind=kind,
        model_uri=summary.model_uri,
        model_version=summary.model_version,
        run_id=summary.run_id,
        rows=summary.rows,
        anomalies=summary.anomalies,
        alert=summary.alert,
        missing_day=summary.missing_day,
        summary=summary.as_dict(),
    )


def _log_run(
    settings, monitor, detector, frame, scored, metrics, params, verdicts
) -> tuple[str, str]:
    """Log the training run (parameters, metrics, score histogram, the verdicts it used,
    model) to MLflow."""
    start, end = (f"{d:%Y-%m-%d}" for d in (frame.index.min(), frame.index.max()))
    with tempfile.TemporaryDirectory() as scratch:
        used = Path(scratch) / FEEDBACK_FILE
        used.write_text(json.dumps([_verdict(v) for v in verdicts], indent=2), encoding="utf-8")
        histogram = plots.plot_histogram(
            scored["score"].to_numpy(), Path(scratch) / results.HISTOGRAM_FILE,
            f"{monitor.name}, training {start}..{end}: decision function",
            params["contamination"],
        )  # fmt: skip
        drawn = [histogram, *_explored(detector, scored, Path(scratch), monitor.name, start, end)]
        described = Path(scratch) / results.DESCRIBE_FILE
        results.describe(frame, detector.dimensions).to_csv(described, index=False)
        levels = Path(scratch) / results.ALERT_LEVELS_FILE
        results.write_alert_levels(levels, detector)
        run_params = {
            **params, "window_start": start, "window_end": end,
            "monitor": monitor.name, "dimensions": ",".join(detector.dimensions),
            "query": monitor.query_path.name,
            "database": make_url(monitor.database_url).get_backend_name(),
        }  # fmt: skip
        run_id, version = tracking.log_training(
            settings, monitor, detector, frame, run_params, metrics, drawn,
            [used, described, levels],
        )  # fmt: skip
        _keep_model_files(settings, monitor.name, version, [*drawn, described, levels])
        return run_id, version


def _explored(detector, scored, folder: Path, monitor: str, start: str, end: str) -> list[Path]:
    """The training data's plots beside the histogram: the deviations (a histogram, a box
    plot per value of the first dimension) and the decision boundary; a plot that cannot be
    drawn is left out with a warning."""
    window = f"{monitor}, training {start}..{end}"
    deviations, boundary = folder / results.DEVIATIONS_FILE, folder / results.BOUNDARY_FILE
    if "deviation" in scored.columns and scored["deviation"].notna().any():
        _drawn(plots.plot_deviations, scored, detector.dimensions[0], deviations,
               f"{window}: deviations from the baselines")  # fmt: skip
    _drawn(_plot_boundary, detector, boundary, f"{window}: decision boundary")
    return [path for path in (deviations, boundary) if path.exists()]


def _keep_model_files(settings: Settings, monitor: str, version: str, paths: list[Path]) -> None:
    """Copy what training found in its data to ``results/<monitor>/models/v<version>/``,
    where the web service's model page reads it."""
    folder = results.model_dir(settings.results_dir, monitor, version)
    try:
        with files.replaced_folder(folder) as building:
            for path in paths:
                shutil.copyfile(path, building / path.name)
    except OSError as exc:
        raise ResultsError(
            f"cannot write the model's files to {folder}: {exc.strerror or exc}"
        ) from None


def _verdict(item: state.Feedback) -> dict[str, Any]:
    return {"date": item.date.isoformat(), "verdict": item.verdict, "matchers": item.matchers,
            "note": item.note, "author": item.author, "id": item.id}  # fmt: skip


def _judged(
    settings, monitor, frame, dimensions, start: dt.date, clean: bool
) -> tuple[feedback.TrainingFeedback, dict[str, float]]:
    """The monitor's verdicts and alerted series-days applied to the training ``frame``,
    with the run's feedback metrics: verdicts used, rows left out by reason, and the live
    precision (alerts confirmed / alerts judged, over every day scored since ``start``)."""
    today = clock.today(settings)
    with state.open_store(settings.state_url) as store:
        verdicts = store.all_feedback(monitor.name)
        alerted = store.anomalies(monitor.name, start, today)
        alerted_days = {d.date for d in store.days(monitor.name, start, today) if d.alert}
    found = feedback.for_training(frame, dimensions, verdicts, alerted, clean)
    precision = feedback.live_precision(verdicts, alerted_days)
    metrics = {"feedback_used": float(len(found.used)), "alerts_judged": float(precision.judged)}
    metrics.update({f"left_out_{reason}": float(n) for reason, n in found.left_out.items()})
    if precision.value is not None:
        metrics["live_precision"] = precision.value
    if found.left_out:
        reasons = ", ".join(f"{n} {reason}" for reason, n in found.left_out.items())
        log.info(
            "train: rows left out of training: %s (%d verdicts used)", reasons, len(found.used)
        )
    return found, metrics


def _without_excluded_days(raw: pd.DataFrame, monitor: MonitorSpec) -> pd.DataFrame:
    """``raw`` without the calendar's days marked ``exclude_from_training``."""
    calendar = known_days.read_calendar(monitor.calendar_path)
    excluded = known_days.excluded_from_training(calendar)
    if not excluded:
        return raw
    keep = ~raw["date"].isin(pd.to_datetime(sorted(excluded)))
    log.info("train: %d calendar day(s) left out of training", raw.loc[~keep, "date"].nunique())
    return raw[keep]


def _warn_if_short(frame: pd.DataFrame) -> None:
    days = frame.index.nunique()
    if days < MIN_TRAINING_DAYS:
        log.warning(
            "train: only %d days of history; %d or more give stable weekday baselines",
            days, MIN_TRAINING_DAYS,
        )  # fmt: skip


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


def _training_metrics(frame, scored, dimensions) -> dict[str, float]:
    scores = scored["score"].to_numpy()
    quantiles = np.quantile(scores, [0.01, 0.05, 0.5, 0.95])
    return {
        "rows": float(len(frame)),
        "series": float(len(frame[dimensions].drop_duplicates())),
        "days": float(frame.index.nunique()),
        "anomaly_share": float(scored["is_anomaly"].mean()),
        "outlier_share": float((scores < 0).mean()),
        "score_p01": float(quantiles[0]),
        "score_p05": float(quantiles[1]),
        "score_p50": float(quantiles[2]),
        "score_p95": float(quantiles[3]),
    }


def _calibration_metrics(detector) -> dict[str, float]:
    """The alert levels training set (``alert_level_series``, ``alert_level_day``,
    ``alert_level_channelid``, …) and what they did on the days held back."""
    calibration = detector.calibration
    if calibration is None:
        return {}
    names = [name.replace(" × ", "_x_") for name in detector.level_names]
    metrics = {
        f"alert_level_{name}": level
        for name, level in zip(names, calibration.alert_levels, strict=True)
    }
    metrics.update(
        calibration_days=float(calibration.days),
        calibration_false_days=float(calibration.days_over),
    )
    if calibration.days:
        metrics["calibration_false_per_30_days"] = calibration.realised
    return metrics


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
