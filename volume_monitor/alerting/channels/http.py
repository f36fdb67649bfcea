"""POSTing a JSON payload to a webhook with a deadline, every failure one line that names the
channel and the receiver's host, never the URL's path or query (they hold the token)."""

from __future__ import annotations

import logging
from typing import Any

import requests

from volume_monitor.config import endpoint_label
from volume_monitor.errors import AlertDeliveryError

log = logging.getLogger(__name__)

USER_AGENT = "volume-monitor"
MAX_REASON = 200  # characters of a receiver's error answer quoted in the failure


def post_json(
    channel: str, url: str, payload: Any, timeout: float, headers: dict[str, str] | None = None
) -> requests.Response:
    """POST ``payload`` as JSON to ``url``; the answer when it is a 2xx. ``timeout`` bounds
    the connection and each wait for the receiver."""
    try:
        response = post(url, payload, timeout, headers)
    except AlertDeliveryError as exc:
        raise AlertDeliveryError(f"{channel} ({endpoint_label(url)}): {exc}") from None
    if not 200 <= response.status_code < 300:
        raise AlertDeliveryError(
            f"{channel} ({endpoint_label(url)}): the receiver answered {answer_text(response)}"
        )
    return response


def post(
    url: str, payload: Any, timeout: float, headers: dict[str, str] | None = None
) -> requests.Response:
    """POST ``payload`` as JSON, redirects not followed; the answer whatever its status, or
    :class:`AlertDeliveryError` when there is none (its message never holds the URL)."""
    try:
        return requests.post(
            url, json=payload, timeout=(timeout, timeout), allow_redirects=False,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
        )  # fmt: skip
    except requests.Timeout:
        raise AlertDeliveryError(f"no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise AlertDeliveryError(f"cannot reach the receiver: {_reason(exc)}") from None


def answer_text(response: requests.Response) -> str:
    """``500 Internal Server Error: <the start of the body>``."""
    body = " ".join(response.text.split())[:MAX_REASON]
    return f"{response.status_code} {response.reason}" + (f": {body}" if body else "")


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause, e.g. ``Connection refused``, without the URL."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    text = str(cause)
    if "Errno" in text:
        text = text.rpartition("] ")[2] or text
    return text.split("(url:")[0].strip().rstrip(":") or type(cause).__name__
