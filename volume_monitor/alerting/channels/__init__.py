"""The channels an alert goes to, each one module that renders an :class:`Alert` its own way
and delivers it: ``email``, ``slack``, ``teams``, ``webhook``, ``pagerduty``; and ``file``,
which writes it into the day's results folder (a dry run, or a monitor without channels).

A channel's ``send(route, alerts, context)`` delivers ``alerts`` (one message for all of them
when the channel is ``GROUPED``, else one message each) and returns what it got back, or raises
:class:`AlertDeliveryError` with a one-line reason naming the channel, never its URL or key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

from volume_monitor.config import Settings


@dataclass(frozen=True)
class Sent:
    """A delivery's answer: the email recipients the server refused while accepting the
    others, and what else is worth saying (e.g. an unconfirmed hand-over)."""

    refused: list[str] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class Context:
    """What a channel needs besides the route: the settings (timeouts, SMTP), and the call
    that records, just before a message leaves for good, that it did (``False``: the run
    gave up waiting, do not send)."""

    settings: Settings
    hand_over: Callable[[], bool] = lambda: True


def channel(name: str) -> ModuleType:
    """The module of the channel ``name``."""
    from volume_monitor.alerting.channels import email, pagerduty, slack, teams, webhook

    modules = {"email": email, "slack": slack, "teams": teams, "webhook": webhook,
               "pagerduty": pagerduty}  # fmt: skip
    return modules[name]
