"""Response models of the conversation list."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, TypeAdapter

from chat_api.common.fields import StoredTime
from chat_api.messages.models import MsgType


class LastMessage(BaseModel):
    """The newest message of a conversation, as summarised on Friendship and Group."""

    id: str
    from_id: str
    msg: str
    msg_type: MsgType
    created_at: StoredTime
    recalled: bool = Field(False, description="It was recalled: `msg` is blank")


class Conversation(BaseModel):
    type: Literal["user", "group"]
    id: str = Field(description="The friend's user id, or the group's id")
    name: str = Field(description="The friend's username, or the group's name")
    avatar: str | None
    last_message: LastMessage | None
    unread: int = Field(description="Exactly the messages after my read position that I did not send")
    updated_at: StoredTime = Field(description="When the last message was sent (a group without any: its creation)")
    deleted: bool = Field(
        False, description="The friend deleted their account: read-only, named `Deleted account` (docs/api.md)"
    )
    mentioned: bool = Field(
        False, description="A group message after my read position mentions me (or everyone): until I mark it read"
    )
    muted: bool = Field(False, description="I muted it: its unread count goes to `muted` in /conversations/unread")
    peer_read_up_to: str | None = Field(
        None, description="A direct conversation: the id of the message the friend has read up to (null: not yet)"
    )


class UnreadTotals(BaseModel):
    """My unread messages in all my conversations, counted as each conversation's `unread` is."""

    total: int = Field(description="In the conversations I did not mute: the badge")
    muted: int = Field(description="In the conversations I muted")


CONVERSATION_LIST: TypeAdapter[list[Conversation]] = TypeAdapter(list[Conversation])
