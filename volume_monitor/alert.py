"""The alert's content and its email: compose the message of a day that alerts (the decision
is ``alerting.policy``'s), combine a night's messages, and send them with yagmail.

yagmail is always given the credentials explicitly (otherwise it falls back to the keyring and
an interactive password prompt, which hangs under cron), a connection timeout, and its result
is checked: it returns False after its retries instead of raising.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import json
import logging
import smtplib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from html import escape
from pathlib import Path

import pandas as pd

from volume_monitor import results
from volume_monitor.alerting import policy
from volume_monitor.config import DEFAULT_MONITOR, MonitorSpec, SmtpSettings
from volume_monitor.errors import AlertDeliveryError

log = logging.getLogger(__name__)

# Headers up to RFC 5322's hard limit stay on one line, so a long subject is never folded.
MIME_POLICY = email.policy.default.clone(max_line_length=998)

MAX_LISTED = 25


@dataclass(frozen=True)
class Message:
    """An alert: a plain-text body, the same content as HTML, and PNG images shown inline in
    the HTML and attached for mail readers that show only text."""

    subject: str
    body: str
    recipients: tuple[str, ...]
    images: list[Path] = field(default_factory=list)
    html: str = ""
    monitor: str = DEFAULT_MONITOR

    def as_text(self, sender: str) -> str:
        """The message as a readable text file, for when no SMTP server is configured."""
        names = ", ".join(p.name for p in self.images) or "none"
        return (
            f"From: {sender}\nTo: {', '.join(self.recipients) or '(ALERT_TO not set)'}\n"
            f"Subject: {self.subject}\nAttachments: {names}\n\n{self.body}"
        )

    def as_mime(self, sender: str) -> EmailMessage:
        """A MIME message: text and HTML alternatives, each image inline in the HTML (by
        ``cid``) and named after its file."""
        mime = EmailMessage(policy=MIME_POLICY)
        mime["Subject"], mime["From"] = self.subject, sender
        mime["To"] = ", ".join(self.recipients)
        mime["Date"], mime["Message-ID"] = formatdate(localtime=True), make_msgid("volume-monitor")
        mime.set_content(self.body)
        mime.add_alternative(self.html or f"<pre>{escape(self.body)}</pre>", subtype="html")
        html_part = mime.get_payload()[1]
        for path in self.images:
            html_part.add_related(
                path.read_bytes(), "image", "png", cid=f"<{_content_id(path)}>",
                filename=path.name, disposition="inline",
            )  # fmt: skip
        return mime

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "images": [str(p) for p in self.images]}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Message:
        data = json.loads(text)
        return cls(
            data["subject"], data["body"], tuple(data["recipients"]),
            [Path(p) for p in data["images"]], data.get("html", ""),
            data.get("monitor", DEFAULT_MONITOR),
        )  # fmt: skip


MIN_GROUP = 3  # anomalous series of one segment that move the same way make a group line


def group_lines(scored: pd.DataFrame, dimensions: Sequence[str]) -> list[str]:
    """One line per value of the first dimension where at least ``MIN_GROUP`` series are
    anomalous in the same direction, e.g. ``channelid=web: 31 of 32 series high (mostly
    duplicate)``; with a single dimension, one line for all series."""
    first = dimensions[0] if len(dimensions) > 1 else None
    segments = scored.groupby(first, sort=True) if first else [("all series", scored)]
    lines = []
    for value, rows in segments:
        anomalous = rows[policy.sendable(rows)]
        name = f"{first}={value}" if first else value
        for direction, moved in anomalous.groupby("direction", sort=True):
            if len(moved) < MIN_GROUP:
                continue
            cause = moved["cause"].mode().iloc[0] if moved["cause"].any() else "anomalous"
            lines.append(f"{name}: {len(moved)} of {len(rows)} series {direction} (mostly {cause})")
    return lines


@dataclass(frozen=True)
class Scored:
    """A monitor's scored day, as an alert needs it."""

    monitor: MonitorSpec
    day: dt.date
    scored: pd.DataFrame
    dimensions: list[str]
    decision: policy.Decision
    model: str  # e.g. "models:/volume-monitor@production (version 3)"
    folder: Path
    # per listed series (its labels in dimension order): days in a row it has been anomalous
    days_off: dict[tuple[str, ...], int] = field(default_factory=dict)


def to_list(case: Scored) -> tuple[pd.DataFrame, int]:
    """The anomalous series an alert lists, worst first (sendable, not explained by a missing
    day or a stalled segment, at most ``MAX_LISTED``), and how many more there are."""
    scored, dimensions = case.scored, case.dimensions
    explained = policy.inhibited_rows(scored, dimensions, case.decision.missing_day)
    anomalous = results.worst_first(scored[policy.sendable(scored) & ~explained])
    listed = anomalous.head(MAX_LISTED)
    return listed, len(anomalous) - len(listed)


def compose(case: Scored, recipients: tuple[str, ...], images: list[Path]) -> Message:
    """The alert: a subject naming the monitor, the date and what is wrong, why it was sent,
    the owner and runbook, the groups that moved together, a table of the anomalous series
    (worst first, with count, expected range, direction, cause, deviation and score), the
    model that scored, and the plots."""
    scored, dimensions = case.scored, case.dimensions
    listed, more = to_list(case)
    intro = _intro(case)
    groups = group_lines(scored, dimensions)
    text = [*intro, ""]
    if groups:
        text += ["Moving together:", *[f"- {g}" for g in groups], ""]
    if len(listed):
        text += [f"Anomalous series ({' / '.join(dimensions)}):", ""]
        text += [
            _line(row, dimensions, case.days_off.get(series_labels(row, dimensions), 0))
            for _, row in listed.iterrows()
        ]
        text += [f"... and {more} more in scores.csv"] if more > 0 else []
        text.append("")
    text += [f"All results: {case.folder}"]
    text += [f"Plots attached: {', '.join(p.name for p in images)}."]
    html = _html(intro, groups, listed, more, case, images)
    subject = f"[volume-monitor] {_headline(case, listed, len(listed) + more)}"
    return Message(subject, "\n".join(text) + "\n", recipients, images, html, case.monitor.name)


def _headline(case: Scored, listed: pd.DataFrame, anomalies: int) -> str:
    """``orders 2026-06-30: 3 anomalous series, worst DE/paypal missing`` (the default
    monitor is not named)."""
    who = "" if case.monitor.name == DEFAULT_MONITOR else f"{case.monitor.name} "
    if case.decision.missing_day:
        return f"{who}{case.day}: no data at all (missing day)"
    stalled = policy.stalled_segments(case.scored, case.dimensions)
    if stalled:
        segment, series = stalled[0]
        others = f" and {len(stalled) - 1} more" if len(stalled) > 1 else ""
        return f"{who}{case.day}: {segment} stopped, all {series} series{others}"
    if not len(listed):
        return f"{who}{case.day}: alert"
    worst = listed.iloc[0]
    return (
        f"{who}{case.day}: {anomalies} anomalous series, "
        f"worst {_series(worst, case.dimensions)} {worst['direction']}"
    )


def combine(day: dt.date, messages: list[Message], recipients: tuple[str, ...]) -> Message:
    """One message for the night: each monitor's alert a section of it, in the order given.
    A single alert is returned as it is (to ``recipients``)."""
    if len(messages) == 1:
        return replace(messages[0], recipients=recipients)
    names = [m.monitor for m in messages]
    subject = f"[volume-monitor] {day}: {len(messages)} monitors alerting ({', '.join(names)})"
    lead = f"{len(messages)} monitors alerted for {day}: {', '.join(names)}."
    body = [lead, ""]
    html = [f"<p>{escape(lead)}</p>"]
    for message in messages:
        body += [f"== {message.monitor}: {message.subject.removeprefix('[volume-monitor] ')}"]
        body += ["", message.body]
        inner = message.html.removeprefix("<html><body>").removesuffix("</body></html>")
        html += [f"<h2>{escape(message.monitor)}</h2>", inner]
    images = [image for message in messages for image in message.images]
    return Message(
        subject, "\n".join(body), recipients, images,
        "<html><body>" + "".join(html) + "</body></html>", ",".join(names),
    )  # fmt: skip


def _intro(case: Scored) -> list[str]:
    day, scored, decision, model = case.day, case.scored, case.decision, case.model
    lines = [f"volume-monitor scored {day} for the monitor {case.monitor.name} with {model}."]
    if case.monitor.owner:
        lines.append(f"Owner: {case.monitor.owner}.")
    if case.monitor.runbook:
        lines.append(f"Runbook: {case.monitor.runbook}")
    if decision.missing_day:
        expected = float(scored["expected_low"].sum()), float(scored["expected_high"].sum())
        lines.append(
            f"No events at all were recorded for {day}: the query returned no rows, where "
            f"{expected[0]:.0f} to {expected[1]:.0f} events were expected over {len(scored)} "
            "series. Check that the loads ran and the pipeline is not stalled."
        )
    for segment, series in policy.stalled_segments(scored, case.dimensions):
        lines.append(
            f"{segment}: every one of its {series} series stopped or stalled (its series are "
            "not listed one by one)."
        )
    lines.append("Why this alert: " + "; ".join(decision.reasons) + ".")
    severity = policy.severity(scored, case.dimensions, decision.missing_day)
    lines.append(f"Severity: {severity}.")
    if decision.silenced:
        lines.append(
            f"{decision.silenced} more anomalous series are silenced and not listed "
            "(volume-monitor silence list)."
        )
    return lines


def _html(intro, groups, listed, more, case: Scored, images) -> str:
    """The HTML body: the same content as the text, as a table, with the plots inline."""
    head = "".join(f"<p>{escape(line)}</p>" for line in intro)
    moving = "".join(f"<li>{escape(g)}</li>" for g in groups)
    header = "".join(f"<th>{escape(c)}</th>" for c in TABLE_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in _cells(row, case)) + "</tr>"
        for _, row in listed.iterrows()
    )
    parts = [head]
    if moving:
        parts.append(f"<p>Moving together:</p><ul>{moving}</ul>")
    if rows:
        parts.append(f'<table border="1" cellpadding="4" cellspacing="0">'
                     f"<tr>{header}</tr>{rows}</table>")  # fmt: skip
        parts += [f"<p>... and {more} more in scores.csv</p>"] if more > 0 else []
    parts += [f'<p><img src="cid:{_content_id(p)}" alt="{escape(p.name)}"></p>' for p in images]
    parts.append(f"<p>All results: {escape(str(case.folder))}</p>")
    return "<html><body>" + "".join(parts) + "</body></html>"


TABLE_COLUMNS = (
    "series", "count", "expected", "direction", "cause", "deviation", "score", "why flagged",
)  # fmt: skip


def series_labels(row: pd.Series, dimensions: Sequence[str]) -> tuple[str, ...]:
    """A series' labels in dimension order: how ``Scored.days_off`` keys it."""
    return tuple(str(row[d]) for d in dimensions)


def _cells(row: pd.Series, case: Scored) -> list[str]:
    dimensions = case.dimensions
    days_off = case.days_off.get(series_labels(row, dimensions), 0)
    return [
        _series(row, dimensions), str(row["count"]), _expected(row), row["direction"] or "n/a",
        row["cause"] or "anomalous", f"{row['deviation']:+.1f} spreads", f"{row['score']:.3f}",
        why_flagged(row) + _streak(days_off),
    ]  # fmt: skip


def why_flagged(row: pd.Series) -> str:
    """How far outside its own expected range a series is, as a share of the nearer bound
    (``100% under its range``), or that it moved with its group while inside it."""
    count, low, high = float(row["count"]), float(row["expected_low"]), float(row["expected_high"])
    if pd.isna(low) or pd.isna(high):
        return "no range: a series not seen in training"
    if count > high:
        return f"{(count - high) / high:.0%} over its range" if high > 0 else "over its range"
    if count < low:
        return f"{(low - count) / low:.0%} under its range"
    return "inside its range, moved with its group"


def _expected(row: pd.Series) -> str:
    return f"{row['expected_low']:.0f}-{row['expected_high']:.0f}"


def _content_id(path: Path) -> str:
    """Unique within a night's message: the monitor's folder name and the file's."""
    return f"{path.parent.parent.name}.{path.stem}@volume-monitor"


def mark_late(message: Message, failure: str, recipients: tuple[str, ...]) -> Message:
    """``message`` resent late to today's ``recipients``: the subject says so, and the body
    starts with why it did not go out on time."""
    why = failure or "the SMTP server failed"
    note = f"Sent late: this alert could not be delivered when it was raised ({why})."
    return replace(
        message,
        subject=message.subject.replace("[volume-monitor]", "[volume-monitor] LATE", 1),
        body=f"{note}\n\n{message.body}",
        html=message.html.replace("<body>", f"<body><p><b>{escape(note)}</b></p>", 1),
        recipients=recipients,
    )


def send(smtp: SmtpSettings, message: Message) -> list[str]:
    """Deliver ``message``; return the recipients the server refused while accepting the
    others. Raise :class:`AlertDeliveryError` with a one-line reason when nobody got it."""
    if not message.recipients:
        raise AlertDeliveryError("ALERT_TO is empty: nobody to send the alert to")
    try:
        with _client(smtp) as client:
            result = client.send_mime(list(message.recipients), message.as_mime(smtp.sender))
    except (smtplib.SMTPException, OSError) as exc:
        raise AlertDeliveryError(
            f"cannot send the alert through {smtp.host}:{smtp.port}: {smtp_reason(exc)}"
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
        def send_mime(self, recipients: list[str], mime: EmailMessage):
            """Send a prepared MIME message with yagmail's connection, login and retries."""
            self.login()
            return self._attempt_send(recipients, mime.as_string())

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


def _series(row: pd.Series, dimensions: Sequence[str]) -> str:
    return "/".join(series_labels(row, dimensions))


def _line(row: pd.Series, dimensions: Sequence[str], days_off: int = 0) -> str:
    return (
        f"- {_series(row, dimensions)}: {row['count']} events, expected {_expected(row)}, "
        f"{row['direction'] or 'n/a'}, {row['cause'] or 'anomalous'} "
        f"({row['deviation']:+.1f} spreads, score {row['score']:.3f}; {why_flagged(row)}"
        f"{_streak(days_off)})"
    )


def _streak(days_off: int) -> str:
    return f"; off {days_off} days in a row" if days_off > 1 else ""


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)


def smtp_reason(exc: BaseException) -> str:
    """The one-line cause of an SMTP failure: the server's reply as code and text, or the
    exception's first line."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{address} ({code} {_text(reply)})"
            for address, (code, reply) in exc.recipients.items()
        )
        return f"every recipient was refused: {refused}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
