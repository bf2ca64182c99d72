"""Request and response models shared by direct and group messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, TypeAdapter

from chat_api.common.fields import DIGITS_ONLY, ObjectIdString, StoredTime, StrictModel
from chat_api.messages.models import MsgType

MAX_MESSAGE_LENGTH = 4000
ClientMsgId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_LENGTH)]


class MessageIn(StrictModel):
    """The common part of a sent message; `msg` of an img/voice message is a /api/files/<id> URL."""

    msg: MessageText
    msg_type: MsgType = "txt"
    client_msg_id: ClientMsgId | None = None


class MessageCursor(StrictModel):
    before: Annotated[ObjectIdString | None, Field(description="Id of a message: only older ones are listed")] = None
    limit: Annotated[int, Field(ge=1, le=200, description="How many messages, 1 to 200 (default 50)"), DIGITS_ONLY] = 50


class DirectMessageIn(MessageIn):
    to_id: Annotated[str, StringConstraints(max_length=64), Field(description="The friend to send to")]


class MessagePublic(BaseModel):
    """A direct message as the API shows it, in the history and in `message` events."""

    id: str
    from_id: str
    to_id: str
    msg: str
    msg_type: MsgType
    client_msg_id: str | None
    created_at: StoredTime
    seq: Annotated[int | None, Field(description="The event that delivered it (null inside the event itself)")]
    erased: Annotated[bool, Field(description="Its sender deleted their account with erasure: `msg` is blank")] = False

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> MessagePublic:
        return cls(
            id=doc["key"],
            from_id=doc["from_id"],
            to_id=doc["to_id"],
            msg=doc["msg"],
            msg_type=doc.get("msg_type", "txt"),
            client_msg_id=doc.get("client_msg_id"),
            created_at=doc["created_at"],
            seq=doc.get("seq"),
            erased=doc.get("erased", False),
        )


class DirectMessageSent(BaseModel):
    user_message_id: str
    message: MessagePublic


MESSAGE_LIST: TypeAdapter[list[MessagePublic]] = TypeAdapter(list[MessagePublic])
