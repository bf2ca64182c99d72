"""Request and response models for groups, their members and their messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from chat_api.common.fields import DIGITS_ONLY, NOT_NULL, ObjectIdString, PartialUpdate, StrictModel
from chat_api.groups.models import Identity
from chat_api.messages.models import MsgType
from chat_api.messages.schemas import MessageIn, MessageState
from chat_api.users.schemas import UserPublic

MAX_NAME_LENGTH = 64
MAX_DESC_LENGTH = 500
MAX_AVATAR_LENGTH = 2048
MAX_PLACARD_LENGTH = 2000
# How many members one message may name (duplicates count before they are folded); `["all"]` calls everyone.
MAX_MENTIONS = 100
MENTION_ALL = "all"


def _not_blank(value: str) -> str:
    # Stripped after the length check, so what the schema documents (length of the raw string)
    # is exactly what is enforced.
    stripped = value.strip()
    if not stripped:
        raise ValueError("must not be blank")
    return stripped


GroupName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(_not_blank)]
GroupDesc = Annotated[str, StringConstraints(max_length=MAX_DESC_LENGTH)]
GroupAvatar = Annotated[str, StringConstraints(max_length=MAX_AVATAR_LENGTH)]
GroupPlacard = Annotated[str, StringConstraints(max_length=MAX_PLACARD_LENGTH)]


class GroupCreate(StrictModel):
    group_name: GroupName
    group_desc: GroupDesc | None = None
    group_avatar: GroupAvatar | None = None
    group_placard: GroupPlacard | None = None


class GroupUpdate(PartialUpdate):
    """Any subset of the fields; only those present change. null clears the optional ones."""

    group_name: Annotated[GroupName | None, NOT_NULL] = None
    group_desc: GroupDesc | None = None
    group_avatar: GroupAvatar | None = None
    group_placard: GroupPlacard | None = None


class GroupCreated(BaseModel):
    group_id: str


class GroupPublic(BaseModel):
    """A group as its members see it, with the caller's own identity in it."""

    id: str
    group_name: str
    group_desc: str | None
    group_avatar: str | None
    group_placard: str | None
    lord_id: str
    created_at: datetime
    identity: Identity


class MemberAdd(StrictModel):
    user_id: ObjectIdString


class IdentityChange(StrictModel):
    identity: Literal["admin", "user"]


class GroupMemberPublic(UserPublic):
    """A member's public profile, with their identity in the group and when they joined."""

    identity: Identity
    joined_at: datetime


Mention = Annotated[str, StringConstraints(pattern=f"^([0-9a-fA-F]{{24}}|{MENTION_ALL})$")]


def _mentions(value: list[str] | None) -> list[str] | None:
    """Member ids in their canonical (lower-case) form, each once in the order first named; `all` only alone."""
    if value is None:
        return None
    if MENTION_ALL in value:
        if len(value) != 1:
            raise ValueError('"all" mentions everyone and cannot be combined with member ids')
        return [MENTION_ALL]
    return list(dict.fromkeys(item.lower() for item in value))


class GroupMessageIn(MessageIn):
    """A group message: the common fields, and whom it mentions."""

    mentions: Annotated[
        list[Mention] | None,
        Field(
            max_length=MAX_MENTIONS,
            description=(
                f"Up to {MAX_MENTIONS} user ids of members to call (duplicates are folded; anyone who is not a member "
                'is a 400), or `["all"]` to call every member (the lord and admins only, else 403)'
            ),
        ),
        AfterValidator(_mentions),
    ] = None


class GroupMessagePublic(MessageState):
    id: str
    group_id: str
    from_id: str
    msg: str
    msg_type: MsgType
    client_msg_id: str | None
    created_at: datetime
    # The event that delivered the message; null inside that event itself (the frame carries it).
    seq: int | None
    erased: Annotated[bool, Field(description="Its sender deleted their account with erasure: `msg` is blank")] = False
    mentions: list[str] = Field(default_factory=list, description='The member ids it mentions, or `["all"]`')


class GroupMessageSent(GroupMessagePublic):
    """The stored message (the original one on a retry with the same client_msg_id)."""

    group_message_id: str


class PinnedMessage(GroupMessagePublic):
    """A pinned message: the group message, and when and by whom it was pinned."""

    pinned_at: datetime
    pinned_by: str


class ReadsQuery(StrictModel):
    limit: Annotated[
        int, Field(ge=1, le=200, description="How many users of each list, 1 to 200 (default 50)"), DIGITS_ONLY
    ] = 50
    offset: Annotated[int, Field(ge=0, description="How many users of each list to skip (default 0)"), DIGITS_ONLY] = 0


class MessageReads(BaseModel):
    """Who of the members a message was sent to has read it: the members who were members when it was sent and
    still are, its sender left out. Each list in user id order, `limit` from `offset`; the counts are exact."""

    read: list[UserPublic]
    unread: list[UserPublic]
    read_count: int
    unread_count: int
