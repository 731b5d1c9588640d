"""Log records as readable lines (development) or one JSON object a line (production).

Credentials in URLs (``redis://:secret@host``) and bearer tokens (``Bearer <token>``) are masked
in every record, whoever logs it, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# user:password@ (or :password@) after a scheme
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)
# a bearer token, as an Authorization header would show it
_BEARER = re.compile(r"(?P<scheme>\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# the fields every LogRecord has; anything else was passed with ``extra=`` and is kept
_STANDARD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def mask_credentials(text: str) -> str:
    return _BEARER.sub(r"\g<scheme>***", _URL_CREDENTIALS.sub(r"\g<scheme>***@", text))


class MaskCredentials(logging.Filter):
    """Renders the message once with its arguments and masks credentials in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        rendered = record.getMessage()
        masked = mask_credentials(rendered)
        if masked != rendered:
            record.msg, record.args = masked, None
        return True


class RepeatsOnce(logging.Filter):
    """Lets a library's repeated line through once per ``window_s``, saying then how many alike
    it held back: while the broker is away aiokafka logs each refused connection, metadata
    update and fetch, about 300 lines a second, the same few lines over and over.

    Alike is the same logger and message template; only loggers under ``prefixes`` are
    touched (cronbus's own lines say an outage once by themselves)."""

    def __init__(self, prefixes: tuple[str, ...] = ("aiokafka",), *, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # -> (let through at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.getMessage()} ({last[1]} alike in the last " \
                         f"{now - last[0]:.0f}s not shown)"
            record.args = None
        if len(self._seen) > 1000:  # templates are few; this only bounds a surprise
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


class TextFormatter(logging.Formatter):
    """Readable lines; a traceback's text masked too (its message is the record's, masked by
    :class:`MaskCredentials`, but an exception's own text may hold a URL)."""

    def formatException(self, ei: Any) -> str:
        return mask_credentials(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, extras, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_FIELDS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = mask_credentials(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatsOnce())
    handler.addFilter(MaskCredentials())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # their per-request and per-rebalance chatter drowns cronbus's own lines at INFO
    for noisy in ("httpx", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
