"""The shape of an export (documented in the OpenAPI document; the service writes it piece by piece)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from chat_api.groups.models import Identity
from chat_api.messages.models import MsgType
from chat_api.messages.schemas import Reaction, ReplyPreview
from chat_api.users.schemas import UserPublic


class ExportedFriend(BaseModel):
    user_id: str
    username: str | None = Field(description="null if the friend's account no longer exists")
    since: datetime


class ExportedRequest(BaseModel):
    id: str
    from_id: str
    to_id: str
    verify_data: str
    status: Literal["waiting", "agree", "refuse"]
    created_at: datetime
    answered_at: datetime | None


class ExportedBlock(BaseModel):
    user_id: str = Field(description="A user I block")
    since: datetime


class ExportedGroup(BaseModel):
    id: str
    group_name: str
    group_desc: str | None
    lord_id: str
    created_at: datetime
    identity: Identity = Field(description="The user's role in the group")
    joined_at: datetime


class ExportedConversation(BaseModel):
    type: Literal["user", "group"]
    id: str = Field(description="The friend's user id, or the group's id")


class ExportedMessage(BaseModel):
    id: str
    conversation: ExportedConversation
    from_id: str
    to_id: str | None = Field(description="The recipient of a direct message; null in a group")
    msg: str
    msg_type: MsgType
    client_msg_id: str | None
    created_at: datetime
    recalled: bool = Field(False, description="Recalled: `msg` is blank")
    edited_at: datetime | None = None
    reply_to: ReplyPreview | None = Field(None, description="The message it answers, as that one is now")
    reactions: list[Reaction] = Field(default_factory=list, description="`me`: the exporting user's own")


class ExportedFile(BaseModel):
    id: str
    url: str = Field(description="Where it is served: `/api/files/<id>`")
    kind: Literal["image", "voice"] | None
    content_type: str | None
    length: int
    uploaded_at: datetime


class Export(BaseModel):
    profile: UserPublic
    friends: list[ExportedFriend]
    friend_requests: list[ExportedRequest] = Field(description="Sent and received, whatever their status")
    blocks: list[ExportedBlock] = Field(description="The users I block (not who blocks me: that is theirs)")
    groups: list[ExportedGroup]
    messages: list[ExportedMessage] = Field(
        description="Every message of the user's direct conversations with friends and of their groups, "
        "sent or received, conversation by conversation, oldest first"
    )
    files: list[ExportedFile] = Field(description="The files the user uploaded")
