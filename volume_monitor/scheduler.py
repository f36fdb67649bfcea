"""The built-in scheduler: the nightly scoring job under APScheduler, from ``VM_SCHEDULE`` (a
five-field cron expression) in ``VM_TIMEZONE``. An alternative to the ``crontab`` line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from volume_monitor import clock, deadline, jobs
from volume_monitor.config import Settings
from volume_monitor.errors import AlertDeliveryError, ConfigError, VolumeMonitorError

log = logging.getLogger(__name__)

MISFIRE_GRACE_SECONDS = 6 * 3600


def nightly(settings: Settings, names: Sequence[str] | None = None) -> int:
    """Score yesterday for the monitors ``names`` (default: all; see :func:`jobs.nightly`).
    Known errors are logged, not raised, so the scheduler keeps running."""
    day = clock.yesterday(settings)
    log.info("schedule: nightly run for %s", day)
    try:
        with deadline.limit(settings.run_timeout):  # off the main thread: the queries only
            report = jobs.nightly(settings, None, names)  # each monitor's settled day
        jobs.raise_failures(report.outcomes)
        if report.undelivered:
            raise AlertDeliveryError("; ".join(report.undelivered))
        return 0
    except (VolumeMonitorError, deadline.RunTimeout) as exc:
        reason, code = deadline.outcome(exc)
        log.log(logging.ERROR if code else logging.WARNING, "nightly run for %s: %s", day, reason)
        return code


def build_scheduler(settings: Settings, job: Callable[[], object], blocking: bool = True):
    """A scheduler with ``job`` on the configured cron trigger: missed runs are coalesced into
    one, never two at once, and a run late by up to six hours still happens."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    try:
        trigger = CronTrigger.from_crontab(settings.schedule, timezone=settings.timezone)
    except ValueError as exc:
        raise ConfigError(f"VM_SCHEDULE is not a valid cron expression ({exc})") from None
    scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone=settings.timezone)
    scheduler.add_job(
        job,
        trigger,
        id="nightly-score",
        name="score yesterday",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=MISFIRE_GRACE_SECONDS,
    )
    return scheduler


def run(settings: Settings, names: Sequence[str] | None = None) -> None:
    """Run the nightly job of the monitors ``names`` (default: all) on schedule until
    interrupted."""
    scheduler = build_scheduler(settings, lambda: nightly(settings, names))
    log.info("schedule: '%s' (%s); Ctrl-C to stop", settings.schedule, settings.timezone)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("schedule: stopped")
