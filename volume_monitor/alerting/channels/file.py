"""The results folder as a channel: the alert written as the email it would be
(``email.txt``, ``email.html``), for a dry run, a backfill, or a monitor without channels."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from volume_monitor import files, results
from volume_monitor.alerting.channels import email
from volume_monitor.alerting.content import Alert


def write(folder: Path, alert: Alert, sender: str, recipients: tuple[str, ...]) -> Path:
    """Write ``alert`` into ``folder`` (the day's folder, or the one being built in its
    place, beside the plots); returns the text file."""
    alert = replace(alert, images=[str(folder / Path(image).name) for image in alert.images])
    to = ", ".join(recipients) or "(no channel configured)"
    names = ", ".join(Path(image).name for image in alert.images) or "none"
    head = f"From: {sender}\nTo: {to}\nSubject: {email.subject([alert])}\nAttachments: {names}\n\n"
    files.write_text(folder / results.EMAIL_HTML_FILE, email.as_html([alert], inline=False))
    return files.write_text(folder / results.EMAIL_FILE, head + email.as_text([alert]))
