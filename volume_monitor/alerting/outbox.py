"""The outbox: every alert and "resolved" notice for every channel, kept in the state store
under its idempotency key (monitor, date, channel, kind) and delivered from there, so a
message is sent once, kept when it cannot be, and never lost or repeated by a rerun.

::

    pending ──sent──> sent
       │  └─failed──> failed ──the next run, marked late──> sent | failed (up to LATE_DAYS)
       ├─ the day is re-scored normal ──> withdrawn
       └─ email: the message left, its receipt unconfirmed ──> handed over (never sent again)
    abandoned: a damaged record, or a channel the monitor no longer has

A run queues its monitors' alerts, then :func:`flush` sends everything waiting for them:
tonight's and earlier failures, one message per channel address (grouped channels), each
under a deadline, the whole step under ``VM_DELIVERY_TIMEOUT``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from volume_monitor import clock, memory, state
from volume_monitor.alerting.channels import Context, Sent, channel
from volume_monitor.alerting.content import Alert
from volume_monitor.config import CHANNELS, MonitorSpec, Route, Settings
from volume_monitor.errors import AlertDeliveryError
from volume_monitor.state import DELIVERED, Delivery

log = logging.getLogger(__name__)

LATE_DAYS = 7  # how far back a run looks for deliveries still waiting
RESOLVE_DAYS = 7  # how far back an alert can be resolved


@dataclass(frozen=True)
class Attempted:
    """One delivery after a run tried it."""

    delivery: Delivery
    late: bool = False
    refused: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    attempted: list[Attempted]
    failures: list[str]  # one line per message that could not be delivered


# --- queueing --------------------------------------------------------------------------


def queue(
    store: state.Store, notice: Alert, routes: Sequence[Route], force: bool = False
) -> list[str]:
    """Keep ``notice`` in the outbox for each route that takes it (an alert: its severity);
    a channel that already has it (an alert: from the same model version) is skipped unless
    ``force``. Returns the channels it was queued for."""
    day = dt.date.fromisoformat(notice.date)
    queued = []
    for route in routes:
        if notice.kind == "alert" and not route.takes(notice.severity):
            continue
        earlier = store.delivery(notice.monitor, day, route.channel, notice.kind)
        if earlier is not None and not force and _has(earlier, notice):
            continue
        store.record_delivery(
            Delivery(
                notice.monitor, day, route.channel, notice.kind, "pending",
                attempts=earlier.attempts if earlier else 0,
                last_error=None if force or earlier is None else earlier.last_error,
                payload=notice.to_json(), model_version=notice.model_version,
                created_at=earlier.created_at if earlier else clock.now_utc(),
            )
        )  # fmt: skip
        queued.append(route.channel)
    return queued


def _has(earlier: Delivery, notice: Alert) -> bool:
    """Whether ``earlier`` already delivered ``notice``."""
    if earlier.status not in DELIVERED:
        return False
    return notice.kind == "resolved" or earlier.model_version == notice.model_version


def delivered(store: state.Store, monitor: str, day: dt.date, version: str) -> list[Delivery]:
    """The alerts of ``monitor`` on ``day`` that some channel delivered for model ``version``."""
    found = [store.delivery(monitor, day, name, "alert") for name in CHANNELS]
    return [d for d in found if d and d.status in DELIVERED and d.model_version == version]


def withdraw(store: state.Store, monitor: str, day: dt.date) -> None:
    """The alerts of ``monitor`` on ``day`` still waiting are never sent: a re-score found
    the day normal."""
    for name in CHANNELS:
        waiting = store.delivery(monitor, day, name, "alert")
        if waiting is not None and waiting.status in state.UNDELIVERED:
            store.record_delivery(replace(waiting, status="withdrawn"))
            log.info("alert: %s of %s is normal now; its %s alert is withdrawn",
                     day, monitor, name)  # fmt: skip


def to_resolve(store: state.Store, monitor: MonitorSpec, day: dt.date):
    """For a normal ``day``: the alerting days just before it (the last scored days, while
    they alerted), and the routes of ``monitor`` that delivered one of their alerts or still
    have one waiting (the notice then follows it, in the same message)."""
    records = store.days(monitor.name, day - dt.timedelta(days=RESOLVE_DAYS), day)
    alerted = []
    for record in reversed([r for r in records if r.date < day]):
        if not record.alert:
            break
        alerted.append(record.date)
    routes = [
        route
        for route in monitor.routes
        if any(_has_alert(store, monitor.name, d, route.channel) for d in alerted)
    ]
    return sorted(alerted), routes


def _has_alert(store: state.Store, monitor: str, day: dt.date, name: str) -> bool:
    found = store.delivery(monitor, day, name, "alert")
    return found is not None and found.status in (*DELIVERED, *state.UNDELIVERED)


# --- sending ---------------------------------------------------------------------------


def flush(
    settings: Settings, store: state.Store, day: dt.date, monitors: Sequence[MonitorSpec]
) -> Report:
    """Deliver everything waiting for ``monitors`` from the ``LATE_DAYS`` days up to ``day``:
    grouped channels get one message per address, the others one per notice; what is older
    than ``day`` or failed before is marked late. Nothing here raises for a channel: each
    failure is recorded, and reported as one line."""
    by_name = {monitor.name: monitor for monitor in monitors}
    since = day - dt.timedelta(days=LATE_DAYS)
    order = {name: number for number, name in enumerate(by_name)}
    waiting = sorted(
        (
            row
            for name in CHANNELS
            for row in store.undelivered(name, since, day + dt.timedelta(days=1))
            if row.monitor in by_name
        ),
        key=lambda row: (row.date, order[row.monitor]),
    )
    batches, failures = _batches(store, waiting, by_name, day)
    attempted: list[Attempted] = []
    ends = time.monotonic() + settings.delivery_timeout
    for route, items in batches.values():
        done, failure = _deliver(settings, store, route, items, ends)
        attempted += done
        if failure:
            failures.append(failure)
    if batches:  # each message was built in its own thread, whose allocator arena keeps
        memory.give_back()  # the freed pages: a long backfill would grow by them
    return Report(attempted, failures)


@dataclass
class _Item:
    row: Delivery
    notice: Alert
    late: bool


def _batches(store, waiting, by_name, day) -> tuple[dict[Any, tuple[Route, list[_Item]]], list]:
    """The waiting rows as messages: grouped by address (one message each) where the channel
    groups, alone otherwise. A row that cannot be read, or whose channel is gone, is
    abandoned with one line."""
    batches: dict[Any, tuple[Route, list[_Item]]] = {}
    failures = []
    for row in waiting:
        route = by_name[row.monitor].route(row.channel)
        problem = None if route else f"the monitor has no {row.channel} channel any more"
        notice = None
        if route is not None:
            try:
                notice = Alert.from_json(row.payload or "")
            except (ValueError, TypeError, KeyError) as exc:
                problem = f"the outbox record is damaged ({type(exc).__name__}: {exc})"
        if problem:
            store.record_delivery(replace(row, status="abandoned", last_error=problem))
            failures.append(f"{row.channel}: {row.kind} of {row.monitor} {row.date}: {problem}")
            log.warning("alert: %s", failures[-1])
            continue
        late = row.date < day or row.last_error is not None
        if late:
            notice = replace(notice, late=row.last_error or "an earlier run did not send it")
        grouped = channel(row.channel).GROUPED
        key = route.address if grouped else (*route.address, row.monitor, row.date, row.kind)
        batches.setdefault(key, (route, []))[1].append(_Item(row, notice, late))
    return batches, failures


def _deliver(settings, store, route: Route, items: list[_Item], ends: float):
    """Send one message; record what happened to each of its rows."""
    names = ", ".join(f"{item.row.kind} of {item.row.monitor} {item.row.date}" for item in items)
    left = ends - time.monotonic()
    if left <= 0:
        error = f"{route.channel}: the delivery step ran out of time (VM_DELIVERY_TIMEOUT)"
        return _failed(store, items, error), f"{error}; kept for the next run: {names}"
    attempt = _HandOver(store, [item.row for item in items])
    context = Context(settings, attempt.hand_over)
    module = channel(route.channel)
    sent, error = _within(left, lambda: module.send(route, [i.notice for i in items], context))
    if error is None:
        return _sent(store, items, sent), None
    if attempt.give_up() and isinstance(error, TimeoutError):  # it left: never resend
        note = f"{route.channel}: the message left but was not confirmed within {left:.0f} s"
        return _sent(store, items, Sent(note=note), "handed over"), None
    reason = str(error) if isinstance(error, AlertDeliveryError) else _unexpected(route, error)
    if isinstance(error, TimeoutError):
        reason = f"{route.channel}: no answer within {left:.0f} s (VM_DELIVERY_TIMEOUT)"
    log.warning("alert: %s; kept for the next run: %s", reason, names)
    return _failed(store, items, reason), f"{reason}; kept for the next run: {names}"


def _unexpected(route: Route, error: BaseException) -> str:
    first = str(error).splitlines()[0] if str(error) else ""
    return f"{route.channel}: cannot build or send the message ({type(error).__name__}: {first})"


def _sent(store, items: list[_Item], sent: Sent, status: str = "sent") -> list[Attempted]:
    now = clock.now_utc()
    done = []
    for item in items:
        row = store.record_delivery(
            replace(item.row, status=status, attempts=item.row.attempts + 1, sent_at=now,
                    last_error=sent.note or None)
        )  # fmt: skip
        done.append(Attempted(row, item.late, sent.refused))
        if item.late:
            log.warning("alert: the %s %s of %s %s was delivered late", row.channel, row.kind,
                        row.monitor, row.date)  # fmt: skip
    return done


def _failed(store, items: list[_Item], error: str) -> list[Attempted]:
    return [
        Attempted(store.record_delivery(
            replace(item.row, status="failed", attempts=item.row.attempts + 1, last_error=error)
        ), item.late)
        for item in items
    ]  # fmt: skip


class _HandOver:
    """The moment a message leaves for good (see ``Context.hand_over``): its rows are
    recorded ``handed over`` first, so that a run killed before the server's answer never
    sends it again. Once the run has given up waiting, the message may no longer leave."""

    def __init__(self, store: state.Store, rows: list[Delivery]):
        self._store, self._rows = store, rows
        self._lock = threading.Lock()
        self._given_up = self._handed = False

    def hand_over(self) -> bool:
        with self._lock:
            if self._given_up:
                return False
            for row in self._rows:
                self._store.record_delivery(replace(row, status="handed over"))
            self._handed = True
            return True

    def give_up(self) -> bool:
        """Stop the message from leaving; whether it already had."""
        with self._lock:
            self._given_up = True
            return self._handed


def _within(seconds: float, work: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``work()``'s value, or the error it raised, or :class:`TimeoutError` after
    ``seconds`` (the work is left behind in a daemon thread: a receiver that trickles its
    answer can hold it, never the run)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except Exception as exc:  # reported by the caller, one line
            box["error"] = exc

    thread = threading.Thread(target=run, name="deliver", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return None, TimeoutError()
    return box.get("value"), box.get("error")
