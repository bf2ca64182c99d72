"""The one JSON error shape, `{"message": ...}` plus `errors` for field problems, and the one handler that answers it.

Services raise the domain exceptions of chat_api.common.errors; this module alone knows their
statuses. The few errors that only HTTP has (401, 413, 415, 429, 503) are ApiErrors.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.errors import ConnectionFailure, PyMongoError
from sanic import Request
from sanic.constants import HTTP_METHODS
from sanic.exceptions import MethodNotAllowed, SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse, json
from sanic.server.websockets.impl import WebsocketImplProtocol
from sanic.signals import Event

from chat_api.common.errors import Conflict, DomainError, FieldErrors, Forbidden, Invalid, NotFound
from chat_api.http.types import ChatApp

log = logging.getLogger("chat_api.errors")

# Checked in this order: the first class the exception is an instance of gives the status.
DOMAIN_STATUSES: tuple[tuple[type[DomainError], int], ...] = (
    (Invalid, 400),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 422),
)
CONFLICT_STATUS = 422
# RFC 6455: "the server encountered an unexpected condition that prevented it from fulfilling the request".
WEBSOCKET_INTERNAL_ERROR = 1011


class ApiError(SanicException):
    """An error only HTTP has; each kind declares its status and default message:
    `class Unauthorized(ApiError, status=401, default="Unauthorized")`."""

    status_code = 500
    message = "Internal server error"

    def __init_subclass__(cls, status: int | None = None, default: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if default is not None:
            cls.message = default

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: FieldErrors | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or self.message, status_code=self.status_code, headers=headers)
        self.message = message or self.message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.errors)


class Unauthorized(ApiError, status=401, default="Unauthorized"):
    """Missing, invalid, expired or revoked token."""


class PayloadTooLarge(ApiError, status=413, default="Request body too large"):
    """The body is over the route's limit."""


class UnsupportedMediaType(ApiError, status=415, default="Unsupported media type"):
    """An upload that is not a file of an accepted type."""


class TooManyRequests(ApiError, status=429, default="Too many requests, try again later"):
    """A rate limit is used up: `Retry-After` in seconds, and the same wait in the body in ms."""

    def __init__(self, retry_after_ms: int, message: str | None = None):
        seconds = max(1, -(-retry_after_ms // 1000))  # rounded up: never invite a retry too early
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after_ms = retry_after_ms

    def body(self) -> dict[str, Any]:
        return {**super().body(), "retry_after_ms": self.retry_after_ms}


class ServiceUnavailable(ApiError, status=503, default="The data store is unavailable, try again shortly"):
    """The store could not be reached or did not answer in time."""


def error_body(message: str, errors: FieldErrors | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = errors
    return body


def domain_status(error: DomainError) -> int:
    return next(status for kind, status in DOMAIN_STATUSES if isinstance(error, kind))


def store_unavailable(error: BaseException) -> bool:
    """The store could not be reached or did not answer in time (a 503, not a bug).

    ConnectionFailure covers refused and reset connections, server selection timeouts and
    network timeouts; `timeout` is PyMongo's flag for any error caused by an operation's
    deadline, such as a server-side ExecutionTimeout, a WTimeoutError or a bulk write cut short.
    """
    return isinstance(error, ConnectionFailure) or (isinstance(error, PyMongoError) and error.timeout)


async def handle_exception(request: Request, exception: Exception) -> HTTPResponse:
    if isinstance(exception, DomainError):
        return json(error_body(exception.message, exception.errors), status=domain_status(exception))
    if isinstance(exception, ApiError):
        return json(exception.body(), status=exception.status_code, headers=exception.headers)
    if isinstance(exception, SanicException):
        # Sanic's own: unknown route, wrong method, malformed JSON, body too large...
        headers = dict(getattr(exception, "headers", None) or {})
        if isinstance(exception, MethodNotAllowed) and "Allow" not in headers:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return json(error_body(str(exception.message or exception)), status=exception.status_code, headers=headers)
    if store_unavailable(exception):
        log.error("store unavailable on %s %s: %s", request.method, request.path, exception)
        return json(error_body(ServiceUnavailable.message), status=503)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    return json(error_body("Internal server error"), status=500)


def allowed_methods(request: Request) -> list[str]:
    """The methods the path answers. RFC 9110 requires them in a 405's `Allow` header, and the
    router leaves them out for some paths with parameters."""
    allowed: list[str] = []
    for method in HTTP_METHODS:
        try:
            request.app.router.get(request.path, method, request.headers.getone("host", None))
        except SanicException:
            continue
        allowed.append(str(method))
    return allowed


class PathOnlyErrorHandler(ErrorHandler):
    """Sanic's handler, but its log line names the path, never the URL: a query string can carry a
    token (`/ws?token=`). Sanic calls `log` for a WebSocket handler that raised; HTTP errors go
    through handle_exception, which logs the path too."""

    @staticmethod
    def log(request: Request, exception: Exception) -> None:
        quiet = getattr(exception, "quiet", False)
        if quiet is False or getattr(request.app.config, "NOISY_EXCEPTIONS", False) is True:
            path = getattr(request, "path", None)
            log.error("unhandled error on %s %s", getattr(request, "method", None), path, exc_info=exception)


async def close_crashed_socket(websocket: WebsocketImplProtocol, **_: Any) -> None:
    """A WebSocket handler raised: close with 1011 (Sanic would close with 1000, "normal closure",
    which tells the client that all went well)."""
    await websocket.close(WEBSOCKET_INTERNAL_ERROR, "internal server error")


def register_error_handler(app: ChatApp) -> None:
    """Install the one JSON error answer, and 1011 for a crashed WebSocket handler. The app must be
    built with `error_handler=PathOnlyErrorHandler()`."""
    app.error_handler.add(Exception, handle_exception)
    app.signal(Event.WEBSOCKET_HANDLER_EXCEPTION.value)(close_crashed_socket)
