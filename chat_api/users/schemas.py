"""Request and response models for users; the password hash has no field here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, TypeAdapter, field_validator

from chat_api.common.clock import as_utc
from chat_api.common.fields import ChatId, Email, Password, Phone, StrictModel, UtcDatetime
from chat_api.users.models import Flag, Sex

Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Personality = Annotated[str, StringConstraints(max_length=500)]
Avatar = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)]


class UserCreate(StrictModel):
    username: Username
    password: Password
    email: Email
    chat_id: ChatId
    personality: Personality | None = None
    avatar: Avatar | None = None
    sex: Sex = "unknown"
    birthday: UtcDatetime | None = None
    phone: Phone | None = None
    register_at: UtcDatetime | None = None


# Fields that may be cleared with null; the others may be changed but never emptied.
NULLABLE_ON_UPDATE = {"personality", "avatar", "phone"}


def _document_refused_nulls(schema: dict[str, Any]) -> None:
    """Fields that may be left out but not set to null are documented without the null branch
    that their `X | None = None` type gives them."""
    for name, field in schema["properties"].items():
        if name in NULLABLE_ON_UPDATE:
            continue
        branches = [branch for branch in field.pop("anyOf") if branch != {"type": "null"}]
        field.pop("default", None)
        if len(branches) == 1:
            field.update(branches[0])
        else:
            field["anyOf"] = branches


class UserUpdate(StrictModel):
    """Any subset of the fields; only those present in the body are changed."""

    model_config = ConfigDict(json_schema_extra=_document_refused_nulls)

    personality: Personality | None = None
    avatar: Avatar | None = None
    register_at: UtcDatetime | None = None
    username: Username | None = None
    password: Password | None = None
    sex: Sex | None = None
    birthday: UtcDatetime | None = None
    phone: Phone | None = None
    email: Email | None = None

    @field_validator("register_at", "username", "password", "sex", "birthday", "email", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("may be changed but not set to null")
        return value


class UserPublic(BaseModel):
    id: str
    chat_id: int
    email: str
    username: str
    personality: str | None
    avatar: str | None
    register_at: datetime
    sex: Sex
    birthday: datetime
    phone: str | None
    flag: Flag

    @field_validator("register_at", "birthday", mode="after")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> UserPublic:
        """From a stored user document projected to PUBLIC_PROJECTION: no Beanie document is
        built on the read paths, and the password hash is never even fetched."""
        return cls(
            id=str(doc["_id"]),
            chat_id=doc["chat_id"],
            email=doc["email"],
            username=doc["username"],
            personality=doc.get("personality"),
            avatar=doc.get("avatar"),
            register_at=doc["register_at"],
            sex=doc.get("sex", "unknown"),
            birthday=doc["birthday"],
            phone=doc.get("phone"),
            flag=doc.get("flag", "offline"),
        )


# The stored fields UserPublic shows (`id` is the document's `_id`, always returned).
PUBLIC_PROJECTION: dict[str, int] = {name: 1 for name in UserPublic.model_fields if name != "id"}
USER_LIST: TypeAdapter[list[UserPublic]] = TypeAdapter(list[UserPublic])


class UserCreated(BaseModel):
    user_id: str


class Availability(BaseModel):
    message: str
