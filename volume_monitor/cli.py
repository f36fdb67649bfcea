"""The ``volume-monitor`` command. ``train.py`` and ``deploy.py`` call it too.

Exit codes: 0 done (scored, alert or not); 1 a known error, reported in one line; 3 scored and
results written, but the alert could not be delivered.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from volume_monitor import clock, deadline
from volume_monitor.config import (
    DEFAULT_MONITOR,
    DEFAULTS,
    Settings,
    load_settings,
    redact_url,
    warn_unknown_keys,
)
from volume_monitor.errors import (
    AlertDeliveryError,
    ConfigError,
    DatabaseError,
    VolumeMonitorError,
)
from volume_monitor.logs import mask, setup_logging

if TYPE_CHECKING:  # the stages (pandas, pyarrow) are imported once the process is set up
    from volume_monitor import jobs

log = logging.getLogger("volume_monitor")

# The verdicts of ``volume-monitor feedback`` (the state store's, named here so that parsing
# the command line does not import the store).
VERDICTS = ("normal", "expected", "incident", "new-level")
RUN_METRICS = {
    "rows",
    "series",
    "anomaly_share",
    "bench_series_f1",
    "bench_false_alerts_per_30_days",
    "live_precision",
    "alerts_judged",
    "feedback_used",
}


# Set for this process, unless its environment says otherwise, before the stages are imported.
PROCESS_DEFAULTS = {
    # pandas keeps strings in Arrow arrays. Arrow's default allocator holds on to freed memory;
    # the system allocator returns it, which lowers a nightly run's peak by ~18 MB. Arrow reads
    # this when it is imported.
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    # MLflow's defaults retry an unreachable server for minutes; a nightly job should say so
    # sooner.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
# A run allocates millions of short-lived row tuples and frames without reference cycles, on
# top of hundreds of thousands of objects from imported libraries. At CPython's default
# thresholds (700, 10, 10) the collector ran 2,300 times while a 2-million-event day was read,
# eleven of them over every object: 2.1 s of a 12 s night. At 10,000 it ran 110 times (0.5 s);
# higher still, a 400-day backfill's figures (reference cycles) wait longer to be freed.
GC_THRESHOLDS = (10_000, 10, 10)


def entry_point(argv: Sequence[str] | None = None) -> int:
    """:func:`main` as a process runs it (``train.py``, ``deploy.py``, ``volume-monitor``).
    Its objects are then frozen out of the collector: at exit the interpreter would otherwise
    walk every object of pandas, scikit-learn and MLflow once more, about 1 s of a night's
    run."""
    code = main(argv)
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    for key, value in PROCESS_DEFAULTS.items():
        os.environ.setdefault(key, value)
    gc.set_threshold(*GC_THRESHOLDS)
    parser = build_parser()
    args = parser.parse_args(argv)
    settings: Settings | None = None
    logging_ready = False
    try:
        settings = load_settings()
        setup_logging(settings.log_file, settings.log_level, settings.secrets)
        logging_ready = True
        warn_unknown_keys(settings)
        return args.handler(settings, args) or 0
    except (VolumeMonitorError, deadline.RunTimeout) as exc:
        return _report(exc, settings, logging_ready)


def _report(exc: BaseException, settings: Settings | None, logging_ready: bool) -> int:
    """One line for the error that ended the run (see :func:`deadline.outcome`); its exit
    code."""
    reason, code = deadline.outcome(exc)
    message = mask(reason, settings.secrets if settings else ())
    kind = "skipped" if code == 0 else "error"
    if logging_ready:
        log.log(logging.WARNING if kind == "skipped" else logging.ERROR, "%s: %s", kind, message)
    else:
        print(f"volume-monitor: {kind}: {message}", file=sys.stderr)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="volume-monitor",
        description="Watch the daily volume of events in a database and alert on anomalies.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model on a window and log it to MLflow")
    train.add_argument("--start", type=_date, help="first day (default: 365 days before --end)")
    train.add_argument("--end", type=_date, help="day after the last one (default: today)")
    train.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model parameter, e.g. --param contamination=0.1",
    )
    train.add_argument("--promote", action="store_true", help="give the new version the alias")
    _monitor_option(train)
    train.set_defaults(handler=_train)

    deploy = commands.add_parser("deploy", help="score a day (or a range) with the model")
    deploy.add_argument(
        "--date", type=_date,
        help="the day to score (default: yesterday, or the latest day settle_hours past)",
    )  # fmt: skip
    deploy.add_argument("--start", type=_date, help="backfill: the first day to score")
    deploy.add_argument("--end", type=_date, help="backfill: the last day to score (included)")
    deploy.add_argument("--notify", action="store_true", help="backfill: email the alerts too")
    deploy.add_argument(
        "--model", metavar="VERSION", help="backfill: score with this model version"
    )
    deploy.add_argument("--dry-run", action="store_true", help="write results, send nothing")
    deploy.add_argument("--force", action="store_true", help="send the alert even if already sent")
    _monitor_option(deploy)
    deploy.set_defaults(handler=_deploy)

    promote = commands.add_parser("promote", help="give a model version the production alias")
    promote.add_argument("reference", metavar="RUN_ID|VERSION")
    _monitor_option(promote, "the monitor whose model it is (needed with several monitors)")
    promote.set_defaults(handler=_promote)

    runs = commands.add_parser("runs", help="list training runs and the production version")
    _monitor_option(runs)
    runs.set_defaults(handler=_runs)

    schedule = commands.add_parser("schedule", help="run the nightly job under APScheduler")
    _monitor_option(schedule)
    schedule.set_defaults(handler=_schedule)

    history = commands.add_parser(
        "history", help="daily counts, expected range and verdicts from the state store"
    )
    history.add_argument("--monitor", help="the monitor (needed with several monitors)")
    history.add_argument(
        "--series", action="append", default=[], metavar="DIM=VALUE",
        help="keep the series with this dimension value (repeatable); default: all, summed",
    )  # fmt: skip
    history.add_argument("--days", type=_positive, default=60, help="days up to --end (60)")
    history.add_argument("--end", type=_date, help="the last day (default: yesterday)")
    history.add_argument("--format", choices=("table", "csv", "json"), default="table")
    history.set_defaults(handler=_history)

    feedback = commands.add_parser(
        "feedback", help="say what a scored day was (the next training learns it), or list"
    )
    feedback.add_argument(
        "verdict", choices=(*VERDICTS, "list"),
        help="normal (a false alarm), expected (a known event), incident (a real fault), "
        "new-level (the level changed for good), or list",
    )  # fmt: skip
    feedback.add_argument("--monitor", help="the monitor (needed with several)")
    feedback.add_argument("--date", type=_date, help="the day the verdict is about")
    feedback.add_argument(
        "--match", action="append", default=[], metavar="DIMENSION=VALUE",
        help="only the series with this value (repeat: all must hold)",
    )  # fmt: skip
    feedback.add_argument("--note", help="what happened, in a few words")
    feedback.set_defaults(handler=_feedback)
    silence = commands.add_parser("silence", help="keep series out of alerts for a while")
    actions = silence.add_subparsers(dest="action", required=True, metavar="add|list|expire")
    add = actions.add_parser("add", help="silence a monitor's series up to a day")
    add.add_argument("--monitor", help="the monitor (needed with several monitors)")
    add.add_argument(
        "--match", action="append", default=[], metavar="DIM=VALUE",
        help="only series with this dimension value (repeatable); default: every series",
    )  # fmt: skip
    add.add_argument("--until", type=_date, required=True, help="the last silenced day")
    add.add_argument("--reason", required=True, help="why; shown with the silenced series")
    listing = actions.add_parser("list", help="the silences active today")
    listing.add_argument("--monitor", help="only this monitor's")
    listing.add_argument("--all", action="store_true", help="expired and past ones too")
    ending = actions.add_parser("expire", help="end a silence now")
    ending.add_argument("id", type=_positive, help="the silence's number (#N in the list)")
    silence.set_defaults(handler=_silence)

    doctor = commands.add_parser(
        "doctor", help="check the configuration end to end and print what is wrong"
    )
    doctor.add_argument(
        "--no-smtp-login", action="store_true", help="do not contact the SMTP server"
    )
    _monitor_option(doctor)
    doctor.set_defaults(handler=_doctor)

    evaluate = commands.add_parser(
        "evaluate", help="score detectors on histories with injected faults (generated or real)"
    )
    evaluate.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1, 2, 3],
        help="one scenario per seed (default: 1 2 3)",
    )
    evaluate.add_argument(
        "--real", nargs="?", const="bench/data", metavar="DIR",
        help="score the real development set in DIR (default: bench/data) instead",
    )  # fmt: skip
    evaluate.add_argument("--no-log", action="store_true", help="do not log runs to MLflow")
    evaluate.set_defaults(handler=_evaluate)

    serve = commands.add_parser(
        "serve", help="serve the pages, the feedback buttons, /metrics and /healthz"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=_positive, default=8050, help="(default: %(default)s)")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo-db", help="write the demo database: activityhistory and orders tables"
    )
    demo.add_argument(
        "--url", default=DEFAULTS["VM_DATABASE_URL"], help="database URL (default: %(default)s)"
    )
    demo.add_argument("--days", type=_positive, default=400)
    demo.add_argument("--events-per-day", type=_positive, default=5000)
    demo.add_argument("--orders-per-day", type=_positive, default=2000)
    demo.add_argument(
        "--replace",
        action="store_true",
        help="overwrite an activityhistory table that the demo did not write",
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--last-day", type=_date, help="the last day (default: yesterday)")
    demo.set_defaults(handler=_demo_db)
    return parser


def _monitor_option(parser: argparse.ArgumentParser, text: str | None = None) -> None:
    parser.add_argument(
        "--monitor", action="append", default=[], metavar="NAME",
        help=text or "only this monitor (repeatable; default: every monitor)",
    )  # fmt: skip


def _one_monitor(settings: Settings, args: argparse.Namespace):
    """The monitor a command for one monitor works on: the one named, or the only one."""
    if len(args.monitor) > 1:
        raise ConfigError("name one monitor: this command works on one at a time")
    return settings.monitor(args.monitor[0] if args.monitor else None)


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import jobs

    with deadline.limit(settings.run_timeout):
        outcomes = jobs.train_monitors(
            settings, args.monitor, args.start, args.end, _pairs(args.param), args.promote
        )
    for outcome in outcomes:
        if outcome.error is None:
            result, monitor = outcome.result, settings.monitor(outcome.monitor)
            alias = f", alias @{settings.model_alias}" if result.promoted else ""
            print(f"run id: {result.run_id}")
            print(f"model: {monitor.model_name} version {result.version}{alias}")
    jobs.raise_failures(outcomes)
    return 0


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import jobs

    if args.start or args.end:
        return _backfill(settings, args)
    if args.notify or args.model:
        raise ConfigError("--notify and --model go with a backfill: --start D --end D")
    with deadline.limit(settings.run_timeout):
        report = jobs.nightly(
            settings, args.date, args.monitor, dry_run=args.dry_run, force=args.force
        )
    for outcome in report.outcomes:
        if outcome.error is None:
            print(_scored_line(outcome.monitor, outcome.result))
    jobs.raise_failures(report.outcomes)
    if report.undelivered:
        raise AlertDeliveryError("; ".join(report.undelivered))
    return 0


def _scored_line(monitor: str, result: jobs.ScoreResult) -> str:
    """``orders 2026-06-30: 3 anomalous of 16 series, alert yes; results in …`` (the default
    monitor unnamed)."""
    summary = result.summary
    who = "" if monitor == DEFAULT_MONITOR else f"{monitor} "
    return (
        f"{who}{summary.date}: {summary.anomalies} anomalous of {summary.rows} series, "
        f"alert {'yes' if summary.alert else 'no'}; results in {result.folder}"
    )


def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import jobs

    if not (args.start and args.end) or args.date:
        raise ConfigError("a backfill needs both --start and --end, and no --date")
    if args.dry_run and args.notify:
        raise ConfigError("--dry-run and --notify contradict each other")
    progress = _progress_bar if sys.stderr.isatty() else None

    def backfill(monitor) -> list[jobs.ScoreResult]:
        try:
            return jobs.backfill(
                settings, args.start, args.end, notify=args.notify, version=args.model,
                progress=progress, monitor=monitor,
            )  # fmt: skip
        finally:
            if progress:
                print(file=sys.stderr)

    outcomes = jobs.run_each(settings.selected(args.monitor), backfill)
    for outcome in outcomes:
        if outcome.error is None:
            print(backfill_report(outcome.result, args.notify))
    jobs.raise_failures(outcomes)
    return 0


def _progress_bar(done: int, total: int, day: dt.date, width: int = 30) -> None:
    print(f"\r{progress_line(done, total, day, width)}", end="", file=sys.stderr, flush=True)


def progress_line(done: int, total: int, day: dt.date, width: int = 30) -> str:
    """``[#########.....................]  9/30 2026-06-09``"""
    filled = width * done // total
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:>{len(str(total))}}/{total} {day}"


SCREEN_DAYS = 30  # alerting days listed on the backfill's closing screen


def backfill_report(results: list[jobs.ScoreResult], notified: bool) -> str:
    """One screen: days scored, the days that alerted and why (missing days as ranges, at
    most ``SCREEN_DAYS`` others), the missing days."""
    summaries = [r.summary for r in results]
    alerting = [s for s in summaries if s.alert]
    missing = [s.date for s in summaries if s.missing_day]
    others = [s for s in alerting if not s.missing_day]
    versions = sorted({str(s.model_version) for s in summaries})
    first, last = summaries[0].date, summaries[-1].date
    who = "" if summaries[0].monitor == DEFAULT_MONITOR else f"{summaries[0].monitor} "
    hidden = len(others) - SCREEN_DAYS
    lines = [
        f"{who}backfill {first}..{last}: {len(summaries)} days scored with model version "
        f"{', '.join(versions)}",
        f"days alerting: {len(alerting)}",
        *[f"  {s.date}: {s.anomalies} anomalous; {s.reasons[0]}" for s in others[:SCREEN_DAYS]],
        *([f"  ... and {hidden} more (volume-monitor history)"] if hidden > 0 else []),
        f"missing days: {len(missing)}" + (f" ({', '.join(_ranges(missing))})" if missing else ""),
        "emails: "
        + (f"{sum(s.notified for s in alerting)} sent" if notified
           else "none sent (--notify sends them); each alert is in its day's email.txt"),
        f"results in {results[0].folder.parent}",
    ]  # fmt: skip
    return "\n".join(lines)


def _ranges(days: list[str]) -> list[str]:
    """ISO dates in order as runs of consecutive days: ``2024-01-01..2024-03-31 (91 days)``."""
    runs: list[list[dt.date]] = []
    for day in map(dt.date.fromisoformat, days):
        if runs and day - runs[-1][-1] == dt.timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return [f"{r[0]}..{r[-1]} ({len(r)} days)" if len(r) > 1 else str(r[0]) for r in runs]


def _promote(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import tracking

    monitor = _one_monitor(settings, args)
    version = tracking.promote(settings, args.reference, monitor)
    print(f"{monitor.model_name} version {version} is now @{settings.model_alias}")
    return 0


def _runs(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import tracking

    monitors = settings.selected(args.monitor)
    for monitor in monitors:
        runs = tracking.list_runs(settings, monitor)
        columns = ["run_id", "start_time", "version", "alias"] + [
            c
            for c in runs.columns
            if c.startswith("metrics.") and c.split(".", 1)[1] in RUN_METRICS
        ]
        if len(monitors) > 1:
            print(f"== {monitor.name} ({monitor.model_name})")
        print(runs[columns].to_string(index=False) if len(runs) else "no training runs yet")
    return 0


def _history(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import history, state

    monitor = settings.monitor(args.monitor)
    end = args.end or clock.yesterday(settings)
    start = end - dt.timedelta(days=args.days - 1)
    match = _pairs(args.series, "--series")
    with state.open_store(settings.state_url) as store:
        table = history.series_history(store, monitor.name, start, end, match)
    print(history.render(table, args.format), end="")
    return 0


def _feedback(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import feedback, state

    with state.open_store(settings.state_url) as store:
        if args.verdict == "list":
            name = settings.monitor(args.monitor).name if args.monitor else None
            print(feedback.render(store.all_feedback(name)), end="")
            return 0
        if args.date is None:
            raise ConfigError("--date is needed: the day the verdict is about")
        monitor = settings.monitor(args.monitor)
        matchers = _pairs(args.match, "--match")
        kept = feedback.add(
            store, monitor.name, args.date, args.verdict, matchers, args.note,
            clock.today(settings),
        )  # fmt: skip
    print(f"feedback #{kept.id} kept: {feedback.EFFECTS[kept.verdict]}", end=": ")
    print(feedback.render([kept]), end="")
    return 0


def _silence(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import state
    from volume_monitor.alerting import silences

    today = clock.today(settings)
    with state.open_store(settings.state_url) as store:
        if args.action == "add":
            monitor = settings.monitor(args.monitor)
            matchers = _pairs(args.match, "--match")
            kept = silences.add(store, monitor, matchers, args.until, args.reason, today)
            print(f"silence #{kept.id} added", end=": ")
            print(silences.render([kept], today), end="")
        elif args.action == "expire":
            silences.expire(store, args.id)
            print(f"silence #{args.id} expired")
        else:
            name = settings.monitor(args.monitor).name if args.monitor else None
            found = store.silences(name, active_on=None if args.all else today)
            print(silences.render(found, today), end="")
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from volume_monitor.web.app import create_app

    app = create_app(settings)
    mode = "answers need VM_WEB_TOKEN" if settings.web_token else "read-only: no VM_WEB_TOKEN"
    log.info("serve: http://%s:%d/ (%s)", args.host, args.port, mode)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import doctor

    checks = doctor.run_checks(settings, smtp_login=not args.no_smtp_login, names=args.monitor)
    print(doctor.format_report(checks))
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(failed)} problem(s): {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import evaluate, tracking

    if args.real:
        return _evaluate_real(settings, Path(args.real), args.no_log)
    seeds = tuple(args.seeds)
    table, scored = evaluate.run_benchmark(seeds)
    print(table.T.to_string(float_format=lambda v: f"{v:.3f}"))
    if args.no_log:
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        plots = {
            name: evaluate.plot_detector(name, frame, Path(scratch) / name)
            for name, frame in scored.items()
        }
        runs = tracking.log_evaluation(settings, table, evaluate.DETECTORS, seeds, plots)
    print(f"logged {len(runs)} runs with plots to experiment {tracking.EVALUATE_EXPERIMENT}")
    return 0


def _evaluate_real(settings: Settings, folder: Path, no_log: bool) -> int:
    from volume_monitor import tracking
    from volume_monitor.evaluate import real

    found = real.run_real(folder)
    print(found.T.to_string(float_format=lambda v: f"{v:.3f}"))
    if no_log:
        return 0
    wide = real.flattened(found)
    params = {name: {"data": str(folder)} for name in wide.index}
    runs = tracking.log_evaluation(settings, wide, params, "real")
    print(f"logged {len(runs)} runs to experiment {tracking.EVALUATE_EXPERIMENT}")
    return 0


def _schedule(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import scheduler

    settings.selected(args.monitor)  # an unknown name is refused now, not at night
    scheduler.run(settings, args.monitor)
    return 0


def _demo_db(settings: Settings, args: argparse.Namespace) -> int:
    from volume_monitor import db, demo

    url = args.url
    last_day = args.last_day or clock.yesterday(settings)
    spec = demo.DemoSpec(
        last_day, days=args.days, events_per_day=args.events_per_day, seed=args.seed
    )
    orders = demo.OrdersSpec(
        last_day, days=args.days, orders_per_day=args.orders_per_day, seed=args.seed
    )
    engine = db.make_engine(url, must_exist=False, read_only=False)
    try:
        events = demo.write_demo(engine, spec, replace=args.replace)
        written = demo.write_orders_demo(engine, orders, replace=args.replace)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot write the demo database: {db.first_line(exc)}") from None
    finally:
        engine.dispose()
    print(
        f"wrote {events} events and {written} orders ({spec.days} days up to {last_day}) "
        f"to {redact_url(url)}"
    )
    return 0


def _pairs(items: list[str], option: str = "--param") -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} expects KEY=VALUE, not {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expects a whole number of at least 1, not {text!r}")
    return number


EARLIEST, LATEST = dt.date(1900, 1, 1), dt.date(9999, 1, 1)  # room for windows around a day


def _date(text: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None
    if not EARLIEST <= day < LATEST:
        raise argparse.ArgumentTypeError(f"{text} is out of range ({EARLIEST} to {LATEST})")
    return day


if __name__ == "__main__":
    sys.exit(entry_point())
