"""Logging for the app and Sanic: text or one JSON object a line, each line with the id of its request."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from chat_api.config import Settings

# Set by the request middleware; the connection's task carries it through the handler, every
# log line written meanwhile, and Sanic's access line for the response.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

APP_LOGGERS = ("chat_api",)
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets")
ACCESS_LOGGER = "sanic.access"
REDACTED = "[redacted]"
# Set on a record once redacted. A name no caller passes in `extra` (logging refuses an extra that
# would overwrite an attribute the record already has).
REDACTED_MARK = "_chat_api_redacted"

# What may carry a secret in a log line, whoever wrote it (the app, Sanic, a library, a
# traceback): the value of a `token` query parameter (any `..._token` too), of an Authorization
# header, of a password field, what follows "Bearer", and any JWT-shaped string on its own. A
# JWT is three base64url segments whose first starts with "eyJ" (`{"`): a looser "three dotted
# words" would also eat module paths (chat_api.http.auth) and version numbers.
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b((?:[a-z0-9]+_)?token=)[^&;\s'\"<>#]*"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic)\s+)?[^\s'\",;}]+"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)(\w*password['\"]?\s*[:=]\s*)(?:'[^']*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&}]+)"), rf"\1{REDACTED}"),
    (re.compile(r"(?i)\b(bearer)(?:\s+|%20|\+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {REDACTED}"),
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
)


# Every pattern above needs one of these (lower-cased) in the text: most lines have none, and skip the patterns.
_MARKERS = ("token", "authorization", "password", "bearer", "eyj")


def redact(text: str) -> str:
    """`text` with every token, Authorization value, password value and JWT replaced by [redacted]."""
    lowered = text.lower()
    if not any(marker in lowered for marker in _MARKERS):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def redact_record(record: logging.LogRecord) -> None:
    """Rewrite a record so that no handler can render a secret from it: the message with its
    arguments merged in, the traceback (rendered now, kept in `exc_text`, which every formatter
    uses in place of rendering it again), the stack, and the request of an access line."""
    request = getattr(record, "request", None)
    if isinstance(request, str):  # the "METHOD url" of Sanic's access lines, an `extra` set after the factory ran
        record.request = redact(request)
    if getattr(record, REDACTED_MARK, False):
        return
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports that itself when a handler formats it
        return
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, REDACTED_MARK, True)


class RedactSecrets(logging.Filter):
    """On every handler we install: the records a factory other than ours made are redacted too."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _redacting_factory(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        redact_record(record)
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    return factory


def redact_every_record() -> None:
    """Redact each record as it is made, before any handler sees it: ours, pytest's, or any other
    a deployment adds to a logger. Idempotent: the factory is wrapped once per process."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "redacting", False):
        logging.setLogRecordFactory(_redacting_factory(current))


class RequestContext(logging.Filter):
    """Adds `request_id` to every record, and for Sanic's access lines the request's parts.

    Access lines keep the path only: a query string can carry secrets (a WebSocket `?token=`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        if record.name == ACCESS_LOGGER:
            method, _, url = str(getattr(record, "request", "")).partition(" ")
            record.method = method or None
            record.path = urlsplit(url).path or None
            record.client = getattr(record, "host", None)
            record.duration_ms = _milliseconds(getattr(record, "duration", ""))
        return True


class BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def _milliseconds(duration: object) -> float | None:
    # Sanic formats it as " 1.2ms", or "" when it did not time the request.
    text = str(duration).strip().removesuffix("ms")
    try:
        return float(text)
    except ValueError:
        return None


def access_line(record: logging.LogRecord) -> str:
    """`client METHOD path status duration`, for the message of an access line."""
    duration = getattr(record, "duration_ms", None)
    parts = [
        getattr(record, "client", None),
        getattr(record, "method", None),
        getattr(record, "path", None),
        getattr(record, "status", None),
        f"{duration:.1f}ms" if duration is not None else None,
    ]
    return " ".join(str(part) for part in parts if part is not None)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == ACCESS_LOGGER:
            # Lent, not copied (a copy of the record cost more than the rest of the line): other handlers
            # (pytest's) get the record as it was.
            message, args = record.msg, record.args
            record.msg, record.args = access_line(record), None
            try:
                line = super().format(record)
            finally:
                record.msg, record.args = message, args
        else:
            line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id (and for access lines
    method, path, status, duration_ms, client, bytes); a traceback goes in `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": record.process,
        }
        if record.name == ACCESS_LOGGER:
            entry["message"] = access_line(record)
            for field in ("method", "path", "status", "duration_ms", "client"):
                entry[field] = getattr(record, field, None)
            entry["bytes"] = getattr(record, "byte", None)
        if record.exc_text:  # the traceback as rendered, and redacted, when the record was made
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so that configuring again replaces these and leaves anyone else's (pytest's) alone."""


def configure_logging(settings: Settings) -> None:
    """Route the app's and Sanic's loggers to stdout (below WARNING) and stderr, in one format.

    Idempotent: every app built in a process (one per worker, several in tests) configures the
    same loggers again. In JSON mode the root logger gets the same handlers, so that whatever
    another library logs is a JSON line too.
    """
    redact_every_record()
    formatter: logging.Formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    handlers = _handlers(formatter)
    sanic_level = logging.DEBUG if settings.log_level == "DEBUG" else logging.INFO
    levels = {name: settings.log_level for name in APP_LOGGERS} | {name: sanic_level for name in SANIC_LOGGERS}
    for name, level in levels.items():
        _attach(logging.getLogger(name), handlers, level, propagate=False)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    if settings.log_format == "json":
        _attach(root, handlers, logging.WARNING, propagate=True)
        logging.captureWarnings(True)


def _handlers(formatter: logging.Formatter) -> list[logging.Handler]:
    out = _Handler(sys.stdout)
    out.addFilter(BelowWarning())
    err = _Handler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.addFilter(RedactSecrets())
        handler.addFilter(RequestContext())
        handler.setFormatter(formatter)
    return [out, err]


def _attach(logger: logging.Logger, handlers: list[logging.Handler], level: int | str, *, propagate: bool) -> None:
    for handler in list(logger.handlers):
        # Sanic's defaults (when it configured them) and ours from an earlier app.
        if isinstance(handler, _Handler) or logger.name.startswith("sanic."):
            logger.removeHandler(handler)
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate
