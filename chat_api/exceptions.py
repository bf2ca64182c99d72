"""HTTP errors and the one JSON error shape: `{"message": ...}`, plus `errors` for field problems."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError
from sanic import Request
from sanic.constants import HTTP_METHODS
from sanic.exceptions import MethodNotAllowed, SanicException
from sanic.response import HTTPResponse, json

from chat_api.types import ChatApp

log = logging.getLogger("chat_api.errors")


class ApiError(SanicException):
    status_code = 500
    message = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message or self.message, status_code=self.status_code, headers=headers)
        self.message = message or self.message
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.errors)


class BadRequest(ApiError):
    status_code = 400
    message = "Bad request"


class ValidationFailed(BadRequest):
    message = "Invalid input"


class Unauthorized(ApiError):
    status_code = 401
    message = "Unauthorized"


class Forbidden(ApiError):
    status_code = 403
    message = "Forbidden"


class NotFound(ApiError):
    status_code = 404
    message = "Not found"


class Unprocessable(ApiError):
    status_code = 422
    message = "Unprocessable"


class PayloadTooLarge(ApiError):
    status_code = 413
    message = "Request body too large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    message = "Unsupported media type"


class TooManyRequests(ApiError):
    """A rate limit is used up: `Retry-After` in seconds, and the same wait in the body in ms."""

    status_code = 429
    message = "Too many requests, try again later"

    def __init__(self, retry_after_ms: int, message: str | None = None):
        seconds = max(1, -(-retry_after_ms // 1000))  # rounded up: never invite a retry too early
        super().__init__(message, headers={"Retry-After": str(seconds)})
        self.retry_after_ms = retry_after_ms

    def body(self) -> dict[str, Any]:
        return {**super().body(), "retry_after_ms": self.retry_after_ms}


class ServiceUnavailable(ApiError):
    status_code = 503
    message = "The data store is unavailable, try again shortly"


def field_errors(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, str]]:
    """Field errors without the submitted values: pydantic's own text echoes the input,
    which would put passwords in response bodies and logs."""
    out = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        location = prefix + tuple(item["loc"])
        out.append(
            {
                "field": ".".join(str(part) for part in location) or "body",
                "message": item["msg"],
                "type": item["type"],
            }
        )
    return out


def error_body(message: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if errors is not None:
        body["errors"] = errors
    return body


def store_unavailable(error: BaseException) -> bool:
    """The store could not be reached or did not answer in time (a 503, not a bug).

    ConnectionFailure covers refused and reset connections, server selection timeouts and
    network timeouts; `timeout` is PyMongo's flag for any error caused by an operation's
    deadline, such as a server-side ExecutionTimeout, a WTimeoutError or a bulk write cut short.
    """
    return isinstance(error, ConnectionFailure) or (isinstance(error, PyMongoError) and error.timeout)


async def handle_exception(request: Request, exception: Exception) -> HTTPResponse:
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


def register_error_handler(app: ChatApp) -> None:
    app.error_handler.add(Exception, handle_exception)
