"""Request and response models shared by direct and group messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, TypeAdapter

from chat_api.common.fields import DIGITS_ONLY, ObjectIdString, StoredTime, StrictModel
from chat_api.messages.models import MsgType

MAX_MESSAGE_LENGTH = 4000
# How much of the original a reply's preview shows (characters).
PREVIEW_LENGTH = 100
ClientMsgId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MessageText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_LENGTH)]
# A reaction's path parameter, checked by the service (one grapheme cluster that is an emoji: no pattern says it).
EMOJI_PATH: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "description": "One emoji (one grapheme cluster of at most 32 bytes of UTF-8), percent-encoded",
}
# Stored documents by their public id (`key`): the originals that a page's replies answer.
Previews = Mapping[str, Mapping[str, Any]]


class MessageIn(StrictModel):
    """The common part of a sent message; `msg` of an img/voice message is a /api/files/<id> URL."""

    msg: MessageText
    msg_type: MsgType = "txt"
    client_msg_id: ClientMsgId | None = None
    reply_to: Annotated[
        ObjectIdString | None,
        Field(description="The id of a message of the same conversation that this one answers (not a recalled one)"),
    ] = None


class MessageEdit(StrictModel):
    """The new text of a `txt` message."""

    msg: MessageText


class MessageCursor(StrictModel):
    before: Annotated[ObjectIdString | None, Field(description="Id of a message: only older ones are listed")] = None
    limit: Annotated[int, Field(ge=1, le=200, description="How many messages, 1 to 200 (default 50)"), DIGITS_ONLY] = 50


class DirectMessageIn(MessageIn):
    to_id: Annotated[str, StringConstraints(max_length=64), Field(description="The friend to send to")]


class ReplyPreview(BaseModel):
    """What a reply shows of the message it answers, as that message is now (edited, recalled)."""

    id: str
    from_id: str
    msg_type: MsgType
    msg: Annotated[str, Field(description=f"Its first {PREVIEW_LENGTH} characters; blank once recalled")]
    recalled: bool


class Reaction(BaseModel):
    emoji: str
    count: Annotated[int, Field(description="How many people reacted with it")]
    me: Annotated[bool, Field(description="Whether the caller is one of them")]


def reply_preview(original: Mapping[str, Any]) -> ReplyPreview:
    return ReplyPreview(
        id=original["key"],
        from_id=original["from_id"],
        msg_type=original.get("msg_type", "txt"),
        msg=original["msg"][:PREVIEW_LENGTH],
        recalled=bool(original.get("recalled", False)),
    )


def current_state(doc: Mapping[str, Any], viewer: str | None, previews: Previews) -> dict[str, Any]:
    """The fields a message has as it is now, for `viewer` (None: `me` false everywhere, as in a shared
    event): recalled, edited_at, reply_to (the preview of the original, null if it is gone) and reactions."""
    reply_to = doc.get("reply_to")
    original = previews.get(reply_to) if reply_to is not None else None
    return {
        "recalled": bool(doc.get("recalled", False)),
        "edited_at": doc.get("edited_at"),
        "reply_to": reply_preview(original) if original is not None else None,
        "reactions": [
            Reaction(emoji=r["emoji"], count=len(r["users"]), me=viewer in r["users"])
            for r in doc.get("reactions") or ()
            if r["users"]
        ],
    }


def reactors(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """Who reacted with what: the private `_reactors` of an event carrying a whole message, from which each
    viewer's frame sets `me` (events.service.frame)."""
    return {r["emoji"]: list(r["users"]) for r in doc.get("reactions") or () if r["users"]}


class MessageState(BaseModel):
    """The fields of issue 13 that every message shows, direct or group."""

    recalled: Annotated[
        bool, Field(description="Taken back by its sender (or a group's lord or admin): `msg` is blank")
    ] = False
    edited_at: Annotated[StoredTime | None, Field(description="When its text was last edited")] = None
    reply_to: Annotated[ReplyPreview | None, Field(description="The message it answers, as that one is now")] = None
    reactions: list[Reaction] = Field(default_factory=list)


class MessagePublic(MessageState):
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
    def from_stored(
        cls, doc: Mapping[str, Any], viewer: str | None = None, previews: Previews | None = None
    ) -> MessagePublic:
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
            **current_state(doc, viewer, previews or {}),
        )


class DirectMessageSent(BaseModel):
    user_message_id: str
    message: MessagePublic


MESSAGE_LIST: TypeAdapter[list[MessagePublic]] = TypeAdapter(list[MessagePublic])
