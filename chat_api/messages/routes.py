"""Direct messages between friends: POST /api/user-message and the history of a conversation."""

from __future__ import annotations

from typing import NoReturn

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from chat_api.auth.decorators import protected
from chat_api.exceptions import ApiError, BadRequest, Forbidden, NotFound, Unprocessable
from chat_api.messages import service
from chat_api.messages.schemas import MESSAGE_LIST, DirectMessageIn, DirectMessageSent, MessageCursor, MessagePublic
from chat_api.openapi import document
from chat_api.users.routes import json_bytes
from chat_api.users.service import CurrentUser
from chat_api.validation import validate_body, validate_query

bp = Blueprint("messages", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = [DirectMessageIn, DirectMessageSent, MessagePublic]
# Any other string names no user: a 404, like an unknown id.
USER_ID = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
ERRORS: dict[str, type[ApiError]] = {
    "self": BadRequest,
    "no_file": BadRequest,
    "unknown_user": NotFound,
    "not_friends": Forbidden,
    "not_participant": Forbidden,
    "reused_id": Unprocessable,
}


def http_error(error: service.MessageError) -> NoReturn:
    raise ERRORS[error.reason](error.message) from None


@bp.post("/user-message")
@document(
    tag="messages",
    body=DirectMessageIn,
    responses={
        201: (DirectMessageSent, "Sent"),
        200: (DirectMessageSent, "A retry with a client_msg_id already used: the original message"),
    },
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(DirectMessageIn)
async def send_message(request: Request, body: DirectMessageIn) -> HTTPResponse:
    """Send a message to a friend; a retry with the same client_msg_id answers the original (200)."""
    current: CurrentUser = request.ctx.user
    try:
        message, created = await service.send_message(str(current.id), body)
    except service.MessageError as error:
        http_error(error)
    sent = DirectMessageSent(user_message_id=message.id, message=message)
    return HTTPResponse(sent.model_dump_json(), status=201 if created else 200, content_type="application/json")


@bp.get("/user-message/<from_id:str>/<to_id:str>")
@document(
    tag="messages",
    path={"from_id": USER_ID, "to_id": USER_ID},
    query=MessageCursor,
    responses={200: (MessagePublic, "Messages, newest first", "many")},
    errors=(400, 401, 403, 404),
)
@protected
@validate_query(MessageCursor)
async def message_history(request: Request, from_id: str, to_id: str, query: MessageCursor) -> HTTPResponse:
    """The conversation between two users, newest first; `before` (a message id) gives older pages."""
    current: CurrentUser = request.ctx.user
    try:
        messages = await service.history(str(current.id), from_id, to_id, query.before, query.limit)
    except service.MessageError as error:
        http_error(error)
    return json_bytes(MESSAGE_LIST.dump_json(messages))
