"""My conversations (friends and groups) and marking them read."""

from __future__ import annotations

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.common.pagination import Pagination
from chat_api.conversations import service
from chat_api.conversations.schemas import CONVERSATION_LIST, Conversation, LastMessage
from chat_api.http.auth import current_user_id, protected
from chat_api.http.openapi import document
from chat_api.http.responses import json_page
from chat_api.http.validation import validate_query

bp = Blueprint("conversations", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = [Conversation, LastMessage]


@bp.get("/conversations")
@document(
    tag="conversations",
    query=Pagination,
    responses={200: (Conversation, "My conversations, most recent first", "many")},
    headers={200: {"X-Total-Count": "Number of conversations in all"}},
    errors=(400, 401),
)
@protected
@validate_query(Pagination)
async def list_conversations(request: Request, query: Pagination) -> HTTPResponse:
    """My conversations: friends I have messages with and all my groups, with last message and unread count."""
    return json_page(
        CONVERSATION_LIST, *await service.conversations(current_user_id(request), query.limit, query.offset)
    )


@bp.put("/conversations/user/<user_id:str>/read")
@document(
    tag="conversations",
    path={"user_id": OBJECT_ID_PATH},
    responses={204: (None, "Marked read")},
    errors=(401, 403, 404),
)
@protected
async def mark_user_conversation_read(request: Request, user_id: str) -> HTTPResponse:
    """Mark my conversation with a friend read up to its newest message."""
    await service.mark_user_read(current_user_id(request), user_id)
    return empty()


@bp.put("/conversations/group/<group_id:str>/read")
@document(
    tag="conversations",
    path={"group_id": OBJECT_ID_PATH},
    responses={204: (None, "Marked read")},
    errors=(401, 403, 404),
)
@protected
async def mark_group_conversation_read(request: Request, group_id: str) -> HTTPResponse:
    """Mark a group of mine read up to its newest message."""
    await service.mark_group_read(current_user_id(request), group_id)
    return empty()
