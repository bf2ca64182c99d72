"""My conversations (friends and groups) and marking them read."""

from __future__ import annotations

from typing import NoReturn

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty

from chat_api.auth.decorators import protected
from chat_api.conversations import service
from chat_api.conversations.schemas import CONVERSATION_LIST, Conversation, LastMessage
from chat_api.exceptions import ApiError, Forbidden, NotFound
from chat_api.openapi import document
from chat_api.users.routes import json_bytes
from chat_api.users.schemas import Pagination
from chat_api.users.service import CurrentUser
from chat_api.validation import validate_query

bp = Blueprint("conversations", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = [Conversation, LastMessage]
# Any other string names nothing: a 404, like an unknown id.
ID_PATH = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
ERRORS: dict[str, type[ApiError]] = {
    "unknown_user": NotFound,
    "unknown_group": NotFound,
    "not_friends": Forbidden,
    "not_member": Forbidden,
}


def http_error(error: service.ConversationError) -> NoReturn:
    raise ERRORS[error.reason](error.message) from None


def me(request: Request) -> str:
    current: CurrentUser = request.ctx.user
    return str(current.id)


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
    page, total = await service.conversations(me(request), query.limit, query.offset)
    return json_bytes(CONVERSATION_LIST.dump_json(page), headers={"X-Total-Count": str(total)})


@bp.put("/conversations/user/<user_id:str>/read")
@document(
    tag="conversations", path={"user_id": ID_PATH}, responses={204: (None, "Marked read")}, errors=(401, 403, 404)
)
@protected
async def mark_user_conversation_read(request: Request, user_id: str) -> HTTPResponse:
    """Mark my conversation with a friend read up to its newest message."""
    try:
        await service.mark_user_read(me(request), user_id)
    except service.ConversationError as error:
        http_error(error)
    return empty()


@bp.put("/conversations/group/<group_id:str>/read")
@document(
    tag="conversations", path={"group_id": ID_PATH}, responses={204: (None, "Marked read")}, errors=(401, 403, 404)
)
@protected
async def mark_group_conversation_read(request: Request, group_id: str) -> HTTPResponse:
    """Mark a group of mine read up to its newest message."""
    try:
        await service.mark_group_read(me(request), group_id)
    except service.ConversationError as error:
        http_error(error)
    return empty()
