"""Logging to the console and to a rotating file, with secrets masked everywhere."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from volume_monitor.errors import ConfigError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"
_HANDLER_TAG = "_volume_monitor"


class SecretMaskFilter(logging.Filter):
    """Replaces every occurrence of a secret in a record's final message with ``***``."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = mask(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info:  # a traceback can quote a secret too: render it masked, once
            record.exc_text = mask(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask(record.exc_text, self.secrets)
        return True


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def remove_handlers() -> None:
    """Remove and close the handlers :func:`setup_logging` added."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(handler)
        handler.close()


class LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file. When it cannot be written (a full disk), one line on stderr
    says so and the file is given up: the run goes on, logging to the console only."""

    given_up = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.given_up:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.given_up:
            return
        self.given_up = True
        error = sys.exc_info()[1]
        reason = getattr(error, "strerror", None) or error or "unknown error"
        sys.stderr.write(
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} WARNING volume_monitor.logs: cannot write "
            f"the log file {self.baseFilename}: {reason}; logging to the console only\n"
        )


def setup_logging(log_file: Path, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Send the package's logs to stderr and to ``log_file`` (5 MB × 5, rotating).

    Calling it again replaces the handlers it added before, so a long-running scheduler and
    the tests can reconfigure it.
    """
    remove_handlers()
    root = logging.getLogger()
    secret_filter = SecretMaskFilter(secrets)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = LogFile(log_file, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {log_file}: {exc.strerror or exc}") from None
    for handler in (logging.StreamHandler(), file_handler):
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(secret_filter)
        setattr(handler, _HANDLER_TAG, True)
        root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "mlflow", "matplotlib", "urllib3", "yagmail", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
