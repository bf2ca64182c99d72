"""Request and response models for users; the password hash has no field here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, StringConstraints, TypeAdapter

from chat_api.common.fields import (
    NOT_NULL,
    ChatId,
    Email,
    PartialUpdate,
    Password,
    Phone,
    StoredTime,
    StrictModel,
    UtcDatetime,
)
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


class UserUpdate(PartialUpdate):
    """Any subset of the fields; only those present in the body are changed."""

    personality: Personality | None = None
    avatar: Avatar | None = None
    register_at: Annotated[UtcDatetime | None, NOT_NULL] = None
    username: Annotated[Username | None, NOT_NULL] = None
    password: Annotated[Password | None, NOT_NULL] = None
    sex: Annotated[Sex | None, NOT_NULL] = None
    birthday: Annotated[UtcDatetime | None, NOT_NULL] = None
    phone: Phone | None = None
    email: Annotated[Email | None, NOT_NULL] = None


class UserPublic(BaseModel):
    id: str
    chat_id: int
    email: str
    username: str
    personality: str | None
    avatar: str | None
    register_at: StoredTime
    sex: Sex
    birthday: StoredTime
    phone: str | None
    flag: Flag

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
