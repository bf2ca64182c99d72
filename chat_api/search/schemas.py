"""The query and the answer of a message search."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, TypeAdapter

from chat_api.groups.schemas import GroupMessagePublic
from chat_api.messages.schemas import MessageCursor, MessagePublic
from chat_api.messages.terms import MAX_QUERY


class SearchQuery(MessageCursor):
    q: Annotated[
        str,
        StringConstraints(max_length=MAX_QUERY * 4),
        Field(description="What to find: words (each the start of a word of the message) and CJK text (inside it)"),
    ]


class ConversationRef(BaseModel):
    """A conversation as `GET /api/conversations` names it: a group, or a direct one by the other participant."""

    type: Literal["user", "group"]
    id: str


class SearchHit(BaseModel):
    """A message found, with its conversation; `message` is a direct message or a group message."""

    conversation: ConversationRef
    message: MessagePublic | GroupMessagePublic


HIT_LIST: TypeAdapter[list[SearchHit]] = TypeAdapter(list[SearchHit])
