"""Direct messages between friends: POST /api/user-message and the history of a conversation."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint
from chat_api.http.responses import json_bytes, json_model
from chat_api.messages import service
from chat_api.messages.schemas import MESSAGE_LIST, DirectMessageIn, DirectMessageSent, MessageCursor, MessagePublic

bp = Blueprint("messages", url_prefix="/api", strict_slashes=False)


@bp.post("/user-message")
@endpoint(
    tag="messages",
    body=DirectMessageIn,
    responses={
        201: (DirectMessageSent, "Sent"),
        200: (DirectMessageSent, "A retry with a client_msg_id already used: the original message"),
    },
    errors=(400, 401, 403, 404, 413, 422),
)
async def send_message(request: Request, body: DirectMessageIn) -> HTTPResponse:
    """Send a message to a friend; a retry with the same client_msg_id answers the original (200)."""
    message, created = await service.send_message(current_user_id(request), body)
    return json_model(DirectMessageSent(user_message_id=message.id, message=message), status=201 if created else 200)


@bp.get("/user-message/<from_id:str>/<to_id:str>")
@endpoint(
    tag="messages",
    path={"from_id": OBJECT_ID_PATH, "to_id": OBJECT_ID_PATH},
    query=MessageCursor,
    responses={200: (MessagePublic, "Messages, newest first", "many")},
    errors=(400, 401, 403, 404),
)
async def message_history(request: Request, from_id: str, to_id: str, query: MessageCursor) -> HTTPResponse:
    """The conversation between two users, newest first; `before` (a message id) gives older pages."""
    messages = await service.history(current_user_id(request), from_id, to_id, query.before, query.limit)
    return json_bytes(MESSAGE_LIST.dump_json(messages))
