"""Email through SMTP (yagmail's connection and login): one message a night per recipient
list, every monitor's alert a section of it; plain text, and HTML from a Jinja2 template
(tables and inline styles, as Gmail and Outlook show them) with the plots inline.

The message is handed over with the SMTP commands themselves, not a library's retrying send:
a retry after the server took the message would send it twice. Just before the message's
last line is written, ``context.hand_over()`` records that it is leaving; if the server then
never confirms, the message counts as delivered but unconfirmed and is not sent again.

yagmail is always given the credentials explicitly (otherwise it falls back to the keyring and
an interactive password prompt, which hangs under cron) and a connection timeout.
"""

from __future__ import annotations

import email.policy
import logging
import re
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from functools import cache
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from volume_monitor.alerting.channels import Context, Sent
from volume_monitor.alerting.content import (
    PREFIX,
    Alert,
    SeriesLine,
    one_line,
    percent,
    streak,
    total_line,
)
from volume_monitor.config import Route, SmtpSettings
from volume_monitor.errors import AlertDeliveryError

log = logging.getLogger(__name__)

GROUPED = True
# Headers up to RFC 5322's hard limit stay on one line, so a long subject is never folded.
MIME_POLICY = email.policy.default.clone(max_line_length=998)
SMTP_POLICY = MIME_POLICY.clone(linesep="\r\n")
TABLE_COLUMNS = (
    "series", "count", "expected", "change", "direction", "cause", "deviation", "score",
    "why flagged",
)  # fmt: skip
SEVERITY_COLORS = {"critical": "#b3261e", "error": "#c2410c", "warning": "#a16207"}


class Unconfirmed(Exception):
    """The server took the whole message but never confirmed it."""


def send(route: Route, alerts: list[Alert], context: Context) -> Sent:
    """Send one message with ``alerts`` to the route's recipients; the recipients the server
    refused while accepting the others are returned."""
    smtp = context.settings.smtp
    if not route.recipients:
        raise AlertDeliveryError("email: nobody to send the alert to (ALERT_TO is empty)")
    mime = as_mime(alerts, smtp.sender, route.recipients)
    where = f"email ({smtp.host}:{smtp.port})"
    try:
        with _client(smtp) as client:
            client.login()
            refused = _transmit(client.smtp, smtp.sender, route.recipients, mime, context)
    except Unconfirmed as exc:
        note = f"{where}: the server took the message but did not confirm it ({exc}); not resent"
        log.warning("alert: %s", note)
        return Sent(note=note)
    except (smtplib.SMTPException, OSError, UnicodeError) as exc:
        raise AlertDeliveryError(f"{where}: {smtp_reason(exc)}") from None
    log.info("alert: sent %r to %s", mime["Subject"], ", ".join(route.recipients))
    return Sent(refused=refused)


def subject(alerts: Sequence[Alert]) -> str:
    if len(alerts) == 1:
        return one_line(alerts[0].subject)
    names = ", ".join(alert.monitor for alert in alerts)
    dates = ", ".join(sorted({alert.date for alert in alerts}))
    late = " LATE" if all(alert.late for alert in alerts) else ""
    what = "monitors alerting" if all(a.kind == "alert" for a in alerts) else "notices"
    return one_line(f"{PREFIX}{late} {dates}: {len(alerts)} {what} ({names})")


def as_text(alerts: Sequence[Alert]) -> str:
    """The plain-text body: each alert's text, under its monitor's name when there are
    several."""
    if len(alerts) == 1:
        return text(alerts[0])
    parts = [lead(alerts), ""]
    for alert in alerts:
        parts += [f"== {alert.monitor}: {alert.headline}", "", text(alert)]
    return "\n".join(parts)


def lead(alerts: Sequence[Alert]) -> str:
    """The first line of a message holding several notices."""
    if all(alert.kind == "alert" and not alert.late for alert in alerts):
        return f"{len(alerts)} monitors alerted: {', '.join(a.monitor for a in alerts)}."
    what = [f"{a.monitor} {a.date} {a.kind}{' (late)' if a.late else ''}" for a in alerts]
    return f"{len(alerts)} notices: {', '.join(what)}."


def text(alert: Alert) -> str:
    lines = []
    if alert.late:
        lines += [f"Sent late: this alert could not be delivered when it was raised "
                  f"({alert.late}).", ""]  # fmt: skip
    lines += alert.summary[:1]
    lines += [f"Owner: {alert.owner}."] if alert.owner else []
    lines += [f"Runbook: {alert.runbook}"] if alert.runbook else []
    lines += alert.summary[1:]
    lines += [total_line(alert.total) + "."] if alert.total else []
    lines += [f"The day: {alert.link}"] if alert.link else []
    lines.append("")
    if alert.groups:
        lines += ["Moving together:", *[f"- {group}" for group in alert.groups], ""]
    if alert.series:
        lines += [f"Anomalous series ({' / '.join(alert.dimensions)}):", ""]
        lines += [series_line(line) for line in alert.series]
        lines += [f"... and {alert.more} more in scores.csv"] if alert.more > 0 else []
        lines.append("")
    lines.append(f"All results: {alert.folder}")
    present, missing = _images(alert)
    if present:
        lines.append(f"Plots attached: {', '.join(p.name for p in present)}.")
    if missing:
        lines.append(f"Plots no longer available: {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


def series_line(line: SeriesLine) -> str:
    deviation = f"{spreads(line.deviation)}, " if line.deviation is not None else ""
    return (
        f"- {line.name}: {line.count} events, expected {line.expected_range}"
        f"{percent(line.change)}, {line.direction}, {line.cause} "
        f"({deviation}score {line.score:.3f}; {line.why}{streak(line.days_off)})"
    )


def spreads(deviation: float | None) -> str:
    return f"{deviation:+.1f} spreads" if deviation is not None else "n/a"


def as_html(alerts: Sequence[Alert], inline: bool = True) -> str:
    """The HTML body, from ``templates/email.html.j2``; the plots shown from the message's
    parts (``inline``) or from files beside the page."""
    images = {alert.monitor: [] for alert in alerts}
    missing = {alert.monitor: [] for alert in alerts}
    for alert in alerts:
        present, gone = _images(alert)
        images[alert.monitor] += [
            {"src": f"cid:{content_id(alert, p)}" if inline else p.name, "name": p.name}
            for p in present
        ]
        missing[alert.monitor] += gone
    return _template().render(
        alerts=alerts, subject=subject(alerts), lead=lead(alerts), columns=TABLE_COLUMNS,
        colors=SEVERITY_COLORS,
        images=images, missing_images=missing, total_line=total_line, percent=percent,
        streak=streak, spreads=spreads,
    )  # fmt: skip


def as_mime(alerts: Sequence[Alert], sender: str, recipients: Sequence[str]) -> EmailMessage:
    """A MIME message: text and HTML alternatives, each plot inline in the HTML (by ``cid``)
    and named after its file; a plot whose file is gone is left out."""
    mime = EmailMessage(policy=MIME_POLICY)
    mime["Subject"], mime["From"] = subject(alerts), sender
    mime["To"] = ", ".join(recipients)
    mime["Date"], mime["Message-ID"] = formatdate(localtime=True), make_msgid("volume-monitor")
    mime.set_content(as_text(alerts))
    mime.add_alternative(as_html(alerts), subtype="html")
    html_part = mime.get_payload()[1]
    for alert in alerts:
        for path in _images(alert)[0]:
            html_part.add_related(
                path.read_bytes(), "image", "png", cid=f"<{content_id(alert, path)}>",
                filename=path.name, disposition="inline",
            )  # fmt: skip
    return mime


def content_id(alert: Alert, path: Path) -> str:
    """Unique within a night's message: the monitor and the file's name."""
    return f"{alert.monitor}.{path.stem}@volume-monitor"


def _images(alert: Alert) -> tuple[list[Path], list[str]]:
    """The alert's plots that still exist, and the names of those that do not."""
    paths = [Path(image) for image in alert.images]
    return [p for p in paths if p.is_file()], [p.name for p in paths if not p.is_file()]


@cache
def _template():
    environment = Environment(
        loader=PackageLoader("volume_monitor.alerting.channels", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("email.html.j2")


# --- SMTP ------------------------------------------------------------------------------


def _transmit(conn: smtplib.SMTP, sender, recipients, mime: EmailMessage, context) -> list[str]:
    """The SMTP transaction: envelope, ``DATA``, the hand-over, the message. Returns the
    recipients refused while others were accepted."""
    conn.ehlo_or_helo_if_needed()
    code, reply = conn.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused = {}
    for address in recipients:
        try:
            code, reply = conn.rcpt(address)
        except UnicodeEncodeError:
            code, reply = 553, b"not an ASCII address, which this server cannot take"
        if code not in (250, 251):
            refused[address] = (code, reply)
    if len(refused) == len(recipients):
        conn.rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    code, reply = conn.docmd("DATA")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    if not context.hand_over():
        raise smtplib.SMTPException("the delivery was given up before the message was sent")
    conn.send(_dot_stuffed(mime.as_bytes(policy=SMTP_POLICY)))
    try:
        code, reply = conn.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise Unconfirmed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return sorted(refused)


def _dot_stuffed(data: bytes) -> bytes:
    """The message as ``DATA`` sends it: a leading dot doubled, ended by a line with one
    dot."""
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


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
    if isinstance(exc, UnicodeError):
        return "an address is not ASCII, which this server cannot take"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, TimeoutError) or text.endswith("timed out"):
        return "timed out: no answer within SMTP_TIMEOUT"
    return text
