"""Who may write through the web service: the holder of ``VM_WEB_TOKEN``, from a form of this
site.

A write (feedback, a silence) needs the token, sent as ``Authorization: Bearer …`` (scripts)
or as the form field ``token`` (the pages' buttons). A browser form must also carry the CSRF
value the page was served with, which the site keeps in a same-site cookie (the double-submit
pattern): another site can make a browser post a form here, but cannot read that cookie to
put it in the form. Without a token configured the service is read-only.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping

CSRF_COOKIE = "vm_csrf"
CSRF_FIELD = "csrf"
TOKEN_FIELD = "token"


class Refused(Exception):
    """A write the service does not accept; the message says why, in one line."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def _same(given: str | None, expected: str) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def check_write(
    token: str, headers: Mapping[str, str], form: Mapping[str, str], cookie: str | None
) -> None:
    """Raise :class:`Refused` unless this request may write, ``token`` being the configured
    ``VM_WEB_TOKEN`` ("" for a read-only service)."""
    if not token:
        raise Refused("this service is read-only: VM_WEB_TOKEN is not set where it runs")
    presented = bearer(headers)
    if presented is not None:
        if not _same(presented, token):
            raise Refused("the bearer token is wrong", status=401)
        return
    if not _same(form.get(TOKEN_FIELD), token):
        raise Refused("the token is missing or wrong", status=401)
    if not _same(form.get(CSRF_FIELD), cookie or ""):
        raise Refused("the form did not come from this site's page (CSRF check): reload it")
