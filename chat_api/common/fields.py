"""Field types shared by the request models: strict whole numbers, chat ids, emails, passwords, ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
)

from chat_api.common.clock import as_utc
from chat_api.common.ids import OBJECT_ID_PATTERN

MAX_INT64 = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")  # used with fullmatch: `$` would let a final "\n" through
_PHONE = re.compile(r"\+?[0-9]{3,20}")


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
# A datetime read back from the store, as an aware UTC value (chat_api.common.clock.as_utc).
StoredTime = Annotated[datetime, AfterValidator(as_utc)]
EMAIL_ADAPTER: TypeAdapter[str] = TypeAdapter(Email)


def _whole_number_from_zero(value: Any) -> int:
    return whole_number(value, minimum=0)


# A query parameter's number (`limit`, `offset`, `after`) is digits only: `Annotated[int, Field(ge=..,
# le=..), DIGITS_ONLY]`. After the Field, so that the bounds stay on the integer's own schema (what the
# OpenAPI document shows as minimum and maximum).
DIGITS_ONLY = BeforeValidator(_whole_number_from_zero)
# Any case is accepted; stored and compared in the lower-case form (chat_api.common.ids).
ObjectIdString = Annotated[str, StringConstraints(pattern=OBJECT_ID_PATTERN)]


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be changed but not set to null")
    return value


# On a field `X | None = None` of a PartialUpdate: it may be left out, but not set to null.
NOT_NULL = BeforeValidator(_not_null)


def _document_refused_nulls(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """NOT_NULL fields are documented without the null branch that their `X | None = None` type gives them."""
    for name, field in schema["properties"].items():
        if NOT_NULL not in model.model_fields[name].metadata:
            continue
        branches = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
        field.pop("default", None)
        if len(branches) == 1:
            field.update(branches[0])
        else:
            field["anyOf"] = branches


class PartialUpdate(StrictModel):
    """A body with any subset of the fields; only those present change, and null clears a field
    unless it is marked NOT_NULL."""

    model_config = ConfigDict(json_schema_extra=_document_refused_nulls)
