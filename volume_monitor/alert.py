"""The alert stage: decide whether a scored day breaches the thresholds, compose the email,
and send it with yagmail.

yagmail is always given the credentials explicitly (otherwise it falls back to the keyring and
an interactive password prompt, which hangs under cron), a connection timeout, and its result
is checked: it returns False after its retries instead of raising.
"""

from __future__ import annotations

import datetime as dt
import logging
import smtplib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from volume_monitor import report
from volume_monitor.config import Settings, SmtpSettings
from volume_monitor.errors import AlertDeliveryError
from volume_monitor.known_days import KnownDay

log = logging.getLogger(__name__)

MAX_LISTED = 25


@dataclass(frozen=True)
class Decision:
    alert: bool
    reasons: list[str]
    anomalies: int
    share: float


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    recipients: tuple[str, ...]
    attachments: list[Path] = field(default_factory=list)

    def as_text(self, sender: str) -> str:
        """The message as a readable text file, for when no SMTP server is configured."""
        names = ", ".join(p.name for p in self.attachments) or "none"
        return (
            f"From: {sender}\nTo: {', '.join(self.recipients) or '(ALERT_TO not set)'}\n"
            f"Subject: {self.subject}\nAttachments: {names}\n\n{self.body}"
        )


def decide(
    scored: pd.DataFrame,
    settings: Settings,
    missing_day: bool,
    known_day: KnownDay | None = None,
) -> Decision:
    """Alert on a missing day, on at least ``VM_ALERT_MIN_ANOMALIES`` anomalous series (0
    turns that rule off), or, when ``VM_ALERT_SHARE`` is set, on an anomalous share of the
    day's series at or above it — unless the calendar marks the day to be suppressed (the
    reasons are kept)."""
    anomalies = int(scored["is_anomaly"].sum())
    share = anomalies / len(scored) if len(scored) else 0.0
    reasons = []
    if missing_day:
        reasons.append("missing day: the query returned no rows")
    if settings.alert_min_anomalies and anomalies >= settings.alert_min_anomalies:
        reasons.append(f"{anomalies} anomalous series (threshold {settings.alert_min_anomalies})")
    if settings.alert_share is not None and share >= settings.alert_share:
        reasons.append(f"anomalous share {share:.1%} >= {settings.alert_share:.1%}")
    if reasons and known_day is not None and known_day.suppress_alert:
        reasons.append(f"alert suppressed: known day '{known_day.label}'")
        return Decision(False, reasons, anomalies, share)
    return Decision(bool(reasons), reasons, anomalies, share)


MIN_GROUP = 3  # anomalous series of one channel that move the same way make a group line


def group_lines(scored: pd.DataFrame) -> list[str]:
    """One line per channel where at least ``MIN_GROUP`` series are anomalous in the same
    direction, e.g. ``channel web: 31 of 32 series high (mostly duplicate)``."""
    lines = []
    for channel, rows in scored.groupby("channelid", sort=True):
        anomalous = rows[rows["is_anomaly"]]
        for direction, moved in anomalous.groupby("direction", sort=True):
            if len(moved) < MIN_GROUP:
                continue
            cause = moved["cause"].mode().iloc[0] if moved["cause"].any() else "anomalous"
            lines.append(
                f"channel {channel}: {len(moved)} of {len(rows)} series {direction} "
                f"(mostly {cause})"
            )
    return lines


def compose(
    day: dt.date,
    scored: pd.DataFrame,
    decision: Decision,
    model: str,
    results: Path,
    recipients: tuple[str, ...],
    attachments: list[Path],
) -> Message:
    """Subject naming the date and what is wrong; body listing each anomalous series."""
    anomalous = report.worst_first(scored[scored["is_anomaly"]])
    missing = any(r.startswith("missing day") for r in decision.reasons)
    if missing:
        subject = f"[volume-monitor] {day}: no data at all (missing day)"
    else:
        worst = anomalous.iloc[0] if len(anomalous) else None
        tail = f", worst {_series(worst)} {worst['direction']}" if worst is not None else ""
        subject = f"[volume-monitor] {day}: {len(anomalous)} anomalous series{tail}"
    lines = [
        f"volume-monitor scored {day} with {model}.",
        "Why this alert: " + "; ".join(decision.reasons) + ".",
        "",
    ]
    groups = group_lines(scored)
    if groups:
        lines += ["Moving together:", *[f"- {g}" for g in groups], ""]
    if len(anomalous):
        lines += ["Anomalous series (channel / action / OS family):", ""]
        lines += [_line(row) for _, row in anomalous.head(MAX_LISTED).iterrows()]
        if len(anomalous) > MAX_LISTED:
            lines.append(f"... and {len(anomalous) - MAX_LISTED} more in scores.csv")
        lines.append("")
    lines += [f"All results: {results}", "The decision-function histogram is attached."]
    return Message(subject, "\n".join(lines) + "\n", recipients, attachments)


def send(smtp: SmtpSettings, message: Message) -> list[str]:
    """Deliver ``message``; return the recipients the server refused while accepting the
    others. Raise :class:`AlertDeliveryError` with a one-line reason when nobody got it."""
    if not message.recipients:
        raise AlertDeliveryError("ALERT_TO is empty: nobody to send the alert to")
    try:
        with _client(smtp) as client:
            result = client.send(
                to=list(message.recipients),
                subject=message.subject,
                contents=message.body,
                attachments=[str(p) for p in message.attachments],
            )
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertDeliveryError(
            f"cannot send the alert through {smtp.host}:{smtp.port}: {_reason(exc)}"
        ) from None
    if result is False:  # yagmail's answer after its retries on a dropped connection
        raise AlertDeliveryError(f"the SMTP server {smtp.host}:{smtp.port} dropped the connection")
    refused = sorted(result or {})
    log.info("alert: sent %r to %s", message.subject, ", ".join(message.recipients))
    return refused


def _client(smtp: SmtpSettings):
    """A yagmail client that logs in as ``SMTP_USER`` (if set) and sends as ``ALERT_FROM``;
    the password is always given, so yagmail never asks the keyring or a terminal for it."""
    import yagmail

    class Client(yagmail.SMTP):
        def _login(self, password):
            sender, self.user = self.user, smtp.user
            try:
                super()._login(password)
            finally:
                self.user = sender

    return Client(
        user=smtp.sender,
        password=smtp.password or None,
        host=smtp.host,
        port=smtp.port,
        smtp_ssl=smtp.ssl,
        smtp_starttls=smtp.starttls,
        smtp_skip_login=not smtp.user,
        soft_email_validation=False,
        timeout=smtp.timeout,
    )


def _series(row: pd.Series) -> str:
    return f"{row['channelid']}/{row['actioncode']}/{row['os_family']}"


def _line(row: pd.Series) -> str:
    expected = f"{row['expected_low']:.0f}-{row['expected_high']:.0f}"
    return (
        f"- {_series(row)}: {row['count']} events, expected {expected}, "
        f"{row['direction'] or 'n/a'}, {row['cause'] or 'anomalous'} "
        f"({row['deviation']:+.1f} spreads, score {row['score']:.3f})"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return f"{exc.smtp_code} {text}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
