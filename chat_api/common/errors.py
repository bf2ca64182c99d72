"""The domain exceptions: services raise them, and the one HTTP error handler answers each with its status.

Which kind a refusal is (not found, not allowed, a conflict with stored data, invalid input) is
its class, so a misspelt kind is a name the type checker catches, not a 500 at run time.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import ValidationError

FieldErrors = list[dict[str, str]]


class DomainError(Exception):
    """A rule refused the operation; `message` is for the client, `errors` lists field problems.

    Each kind names its default message where it is declared: `class Invalid(DomainError, default=...)`.
    """

    default_message: ClassVar[str] = "Refused"

    def __init_subclass__(cls, default: str | None = None) -> None:
        super().__init_subclass__()
        if default is not None:
            cls.default_message = default

    def __init__(self, message: str | None = None, *, errors: FieldErrors | None = None):
        self.message = message or self.default_message
        self.errors = errors
        super().__init__(self.message)


class Invalid(DomainError, default="Invalid input"):
    """The input breaks a rule of the request's own (answered 400)."""


class Forbidden(DomainError, default="Forbidden"):
    """The caller may not do this (answered 403)."""


class NotFound(DomainError, default="Not found"):
    """What the request names does not exist, or is not visible to the caller (answered 404)."""


class Conflict(DomainError, default="Unprocessable"):
    """The request conflicts with what is stored: taken, already done, already answered (answered 422)."""


def field_errors(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> FieldErrors:
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


class UserNotFound(NotFound, default="User not found"):
    """No account has this id (or the id is malformed)."""


class GroupNotFound(NotFound, default="Group not found"):
    """No group has this id (or the id is malformed)."""
