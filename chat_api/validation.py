"""Request validation: shared field types and decorators that turn bad input into clean 400s."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from sanic import Request
from sanic.response import HTTPResponse

from chat_api.exceptions import BadRequest, ValidationFailed, field_errors

MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")  # used with fullmatch: `$` would let a final "\n" through
_PHONE = re.compile(r"\+?[0-9]{3,20}")

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[..., Awaitable[HTTPResponse]]


class StrictModel(BaseModel):
    """Unknown fields are refused, so a typo or a mass-assignment attempt is a 400, not a no-op."""

    model_config = ConfigDict(extra="forbid")


def whole_number(value: Any, *, minimum: int, maximum: int = MAX_INT64) -> int:
    """An int, or a string of digits (form inputs send strings); nothing else.

    Pydantic's lax mode would also take `True`, `"12.0"`, `"1_000"` and numbers past 2^63,
    the last of which BSON cannot store.
    """
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("must be a whole number written with digits only")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError("must be a whole number")
    if not minimum <= value <= maximum:
        raise ValueError(f"must be between {minimum} and {maximum}")
    return value


def _chat_id(value: Any) -> int:
    return whole_number(value, minimum=1)


def _lower_email(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _password(value: str) -> str:
    if len(value) < 6:
        raise ValueError("must be at least 6 characters long")
    if len(value.encode()) > 72:
        raise ValueError("must be at most 72 bytes long (a bcrypt limit)")
    return value


def _phone(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # old clients send the number as an integer
    if isinstance(value, str):
        value = value.strip()
        if not _PHONE.fullmatch(value):
            raise ValueError("must be 3 to 20 digits, optionally after a leading +")
    return value


def _utc_millis(value: datetime) -> datetime:
    # MongoDB keeps milliseconds; trimming here makes what we answer equal what we store.
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise ValueError("is out of range once converted to UTC") from None
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


CHAT_ID_STRING_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[0-9]{1,19}$"}
CHAT_ID_FORMS: list[dict[str, Any]] = [{"type": "integer", "minimum": 1, "maximum": MAX_INT64}, CHAT_ID_STRING_SCHEMA]
CHAT_ID_SCHEMA = {"anyOf": CHAT_ID_FORMS, "description": "A positive integer; a string of digits is accepted too."}

ChatId = Annotated[int, BeforeValidator(_chat_id), WithJsonSchema(CHAT_ID_SCHEMA)]
Email = Annotated[EmailStr, BeforeValidator(_lower_email)]
Password = Annotated[
    str,
    AfterValidator(_password),
    WithJsonSchema({"type": "string", "minLength": 6, "description": "6 characters to 72 bytes (UTF-8)."}),
]
Phone = Annotated[
    str,
    BeforeValidator(_phone),
    WithJsonSchema({"type": "string", "pattern": r"^\+?[0-9]{3,20}$", "description": "An integer is accepted too."}),
]
UtcDatetime = Annotated[datetime, AfterValidator(_utc_millis)]
EMAIL_ADAPTER: TypeAdapter[str] = TypeAdapter(Email)


def parse_model(model: type[M], data: Any, prefix: tuple[str | int, ...] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValidationFailed(errors=field_errors(error, prefix)) from None


def parse_value(adapter: TypeAdapter[T], value: Any, field: str, message: str) -> T:
    """Validate one value (a path parameter): a 400 with `message` naming `field` if invalid."""
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise ValidationFailed(message, errors=field_errors(error, (field,))) from None


def validate_body(model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Parse the JSON body into `model` and pass it to the handler as `body`."""

    def decorator(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            data = request.json  # malformed JSON raises Sanic's BadRequest: a JSON 400
            if not isinstance(data, dict):
                raise BadRequest("The request body must be a JSON object")
            kwargs["body"] = parse_model(model, data)
            return await handler(request, *args, **kwargs)

        return wrapper

    return decorator


def validate_query(model: type[BaseModel]) -> Callable[[Handler], Handler]:
    """Parse the query string into `model` and pass it to the handler as `query`."""

    def decorator(handler: Handler) -> Handler:
        @wraps(handler)
        async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            known = model.model_fields
            # Blank values kept: `?limit=` is invalid input (400), not a request for the default.
            given = request.get_args(keep_blank_values=True)
            data = {name: given.get(name) for name in known if name in given}
            kwargs["query"] = parse_model(model, data, prefix=("query",))
            return await handler(request, *args, **kwargs)

        return wrapper

    return decorator
