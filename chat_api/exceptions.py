"""HTTP errors and the one JSON error shape: `{"message": ...}`, plus `errors` for field problems."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError
from sanic import Request
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse, json

from chat_api.types import ChatApp

log = logging.getLogger("chat_api.errors")


class ApiError(SanicException):
    status_code = 500
    message = "Internal server error"

    def __init__(self, message: str | None = None, *, errors: list[dict[str, str]] | None = None):
        super().__init__(message or self.message, status_code=self.status_code)
        self.message = message or self.message
        self.errors = errors


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
        return json(error_body(exception.message, exception.errors), status=exception.status_code)
    if isinstance(exception, SanicException):
        # Sanic's own: unknown route, wrong method, malformed JSON, body too large...
        headers = getattr(exception, "headers", None) or {}
        return json(error_body(str(exception.message or exception)), status=exception.status_code, headers=headers)
    if store_unavailable(exception):
        log.error("store unavailable on %s %s: %s", request.method, request.path, exception)
        return json(error_body(ServiceUnavailable.message), status=503)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    return json(error_body("Internal server error"), status=500)


def register_error_handler(app: ChatApp) -> None:
    app.error_handler.add(Exception, handle_exception)
