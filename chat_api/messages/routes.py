"""Direct messages between friends: POST /api/user-message and the history of a conversation."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint
from chat_api.http.responses import json_bytes, json_model
from chat_api.http.validation import path_text
from chat_api.messages import service
from chat_api.messages.schemas import (
    EMOJI_PATH,
    MESSAGE_LIST,
    DirectMessageIn,
    DirectMessageSent,
    MessageCursor,
    MessageEdit,
    MessagePublic,
)

bp = Blueprint("messages", url_prefix="/api", strict_slashes=False)
MESSAGE_PATH = {"message_id": OBJECT_ID_PATH}
REACTION_PATH = {**MESSAGE_PATH, "emoji": EMOJI_PATH}


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


@bp.delete("/user-message/<message_id:str>")
@endpoint(
    tag="messages", path=MESSAGE_PATH, responses={204: (None, "Recalled (or already)")}, errors=(401, 403, 404, 422)
)
async def recall_message(request: Request, message_id: str) -> HTTPResponse:
    """Recall a message I sent, within RECALL_WINDOW; it stays in the history as recalled, its text gone."""
    window = request.app.ctx.settings.recall_window
    await service.recall_direct(current_user_id(request), message_id, window)
    return empty()


@bp.patch("/user-message/<message_id:str>")
@endpoint(
    tag="messages",
    body=MessageEdit,
    path=MESSAGE_PATH,
    responses={200: (MessagePublic, "The message as it is now")},
    errors=(400, 401, 403, 404, 413, 422),
)
async def edit_message(request: Request, message_id: str, body: MessageEdit) -> HTTPResponse:
    """Change the text of a txt message I sent, within EDIT_WINDOW; it gains `edited_at`."""
    window = request.app.ctx.settings.edit_window
    return json_model(await service.edit_direct(current_user_id(request), message_id, body.msg, window))


@bp.put("/user-message/<message_id:str>/reactions/<emoji:str>")
@endpoint(
    tag="messages",
    path=REACTION_PATH,
    responses={204: (None, "Reacted (or already)")},
    errors=(400, 401, 403, 404, 422),
)
async def add_reaction(request: Request, message_id: str, emoji: str) -> HTTPResponse:
    """React to a message of one of my conversations with an emoji."""
    await service.react_direct(current_user_id(request), message_id, path_text(emoji, "emoji"), add=True)
    return empty()


@bp.delete("/user-message/<message_id:str>/reactions/<emoji:str>")
@endpoint(
    tag="messages",
    path=REACTION_PATH,
    responses={204: (None, "Taken back (or there was none)")},
    errors=(400, 401, 403, 404, 422),
)
async def remove_reaction(request: Request, message_id: str, emoji: str) -> HTTPResponse:
    """Take back my reaction with this emoji."""
    await service.react_direct(current_user_id(request), message_id, path_text(emoji, "emoji"), add=False)
    return empty()
