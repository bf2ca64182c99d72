"""My conversations (friends and groups) and marking them read."""

from __future__ import annotations

from collections.abc import Callable

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.common.pagination import Pagination
from chat_api.conversations import service
from chat_api.conversations.schemas import CONVERSATION_LIST, Conversation
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint, paged
from chat_api.http.responses import json_page
from chat_api.http.validation import Handler

bp = Blueprint("conversations", url_prefix="/api", strict_slashes=False)


def marks_read(parameter: str) -> Callable[[Handler], Handler]:
    """The contract of the two routes that mark a conversation read (a friend's or a group's)."""
    path = {parameter: OBJECT_ID_PATH}
    return endpoint(tag="conversations", path=path, responses={204: (None, "Marked read")}, errors=(401, 403, 404))


@bp.get("/conversations")
@endpoint(
    tag="conversations", **paged(Conversation, "My conversations, most recent first", "Number of conversations in all")
)
async def list_conversations(request: Request, query: Pagination) -> HTTPResponse:
    """My conversations: friends I have messages with and all my groups, with last message and unread count."""
    return json_page(
        CONVERSATION_LIST, *await service.conversations(current_user_id(request), query.limit, query.offset)
    )


@bp.put("/conversations/user/<user_id:str>/read")
@marks_read("user_id")
async def mark_user_conversation_read(request: Request, user_id: str) -> HTTPResponse:
    """Mark my conversation with a friend read up to its newest message."""
    await service.mark_user_read(current_user_id(request), user_id)
    return empty()


@bp.put("/conversations/group/<group_id:str>/read")
@marks_read("group_id")
async def mark_group_conversation_read(request: Request, group_id: str) -> HTTPResponse:
    """Mark a group of mine read up to its newest message."""
    await service.mark_group_read(current_user_id(request), group_id)
    return empty()
