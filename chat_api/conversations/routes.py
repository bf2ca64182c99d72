"""My conversations (friends and groups) and marking them read."""

from __future__ import annotations

from collections.abc import Callable

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.common.pagination import Pagination
from chat_api.conversations import service
from chat_api.conversations.schemas import CONVERSATION_LIST, Conversation, UnreadTotals
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


@bp.get("/conversations/unread")
@endpoint(
    tag="conversations",
    responses={200: (UnreadTotals, "My unread messages, in conversations not muted and in muted ones")},
    errors=(401,),
)
async def unread_totals(request: Request) -> HTTPResponse:
    """How many unread messages I have in all my conversations: the badge (`total`), and the muted ones apart."""
    return json((await service.unread_totals(current_user_id(request))).model_dump())


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


def mutes(parameter: str, muted: bool) -> Callable[[Handler], Handler]:
    """The contract of the four routes that mute or unmute a conversation (a friend's or a group's)."""
    path = {parameter: OBJECT_ID_PATH}
    done = "Muted" if muted else "Unmuted"
    return endpoint(tag="conversations", path=path, responses={204: (None, done)}, errors=(401, 403, 404))


@bp.put("/conversations/user/<user_id:str>/mute")
@mutes("user_id", muted=True)
async def mute_user_conversation(request: Request, user_id: str) -> HTTPResponse:
    """Mute my conversation with a friend: its unread messages count apart (again: nothing changes)."""
    await service.mute_user(current_user_id(request), user_id, muted=True)
    return empty()


@bp.delete("/conversations/user/<user_id:str>/mute")
@mutes("user_id", muted=False)
async def unmute_user_conversation(request: Request, user_id: str) -> HTTPResponse:
    """Unmute my conversation with a friend (not muted: nothing changes)."""
    await service.mute_user(current_user_id(request), user_id, muted=False)
    return empty()


@bp.put("/conversations/group/<group_id:str>/mute")
@mutes("group_id", muted=True)
async def mute_group_conversation(request: Request, group_id: str) -> HTTPResponse:
    """Mute a group of mine: its unread messages count apart (again: nothing changes)."""
    await service.mute_group(current_user_id(request), group_id, muted=True)
    return empty()


@bp.delete("/conversations/group/<group_id:str>/mute")
@mutes("group_id", muted=False)
async def unmute_group_conversation(request: Request, group_id: str) -> HTTPResponse:
    """Unmute a group of mine (not muted: nothing changes)."""
    await service.mute_group(current_user_id(request), group_id, muted=False)
    return empty()
