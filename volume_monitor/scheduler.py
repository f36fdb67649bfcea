"""The built-in scheduler: the nightly scoring job under APScheduler, from ``VM_SCHEDULE`` (a
five-field cron expression) in ``VM_TIMEZONE``. An alternative to the ``crontab`` line."""

from __future__ import annotations

import logging
from collections.abc import Callable

from volume_monitor import jobs
from volume_monitor.config import Settings
from volume_monitor.errors import ConfigError, VolumeMonitorError

log = logging.getLogger(__name__)

MISFIRE_GRACE_SECONDS = 6 * 3600


def nightly(settings: Settings) -> int:
    """Score yesterday (see :func:`jobs.deploy`). Known errors are logged, not raised, so the
    scheduler keeps running."""
    day = jobs.yesterday(settings)
    log.info("schedule: nightly run for %s", day)
    try:
        jobs.deploy(settings, day)
        return 0
    except VolumeMonitorError as exc:
        failed = exc.exit_code != 0
        log.log(logging.ERROR if failed else logging.WARNING, "nightly run for %s: %s", day, exc)
        return exc.exit_code


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


def run(settings: Settings) -> None:
    """Run the nightly job on schedule until interrupted."""
    scheduler = build_scheduler(settings, lambda: nightly(settings))
    log.info("schedule: '%s' (%s); Ctrl-C to stop", settings.schedule, settings.timezone)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("schedule: stopped")
