"""Friend requests (/api/user-requests) and friends (/api/friends)."""

from __future__ import annotations

from typing import NoReturn

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.auth.decorators import protected
from chat_api.exceptions import ApiError, BadRequest, Forbidden, NotFound, Unprocessable
from chat_api.friends import service
from chat_api.friends.schemas import (
    WAITING_LIST,
    FriendRequestAnswer,
    FriendRequestCreate,
    FriendRequestCreated,
    FriendRequestPublic,
    WaitingRequest,
)
from chat_api.openapi import document
from chat_api.users.routes import json_bytes
from chat_api.users.schemas import USER_LIST, Pagination, UserPublic
from chat_api.users.service import CurrentUser
from chat_api.validation import validate_body, validate_query

bp = Blueprint("friends", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = [
    FriendRequestCreate,
    FriendRequestCreated,
    FriendRequestAnswer,
    FriendRequestPublic,
    WaitingRequest,
]
# Any other string names nothing: a 404, like an unknown id.
ID_PATH = {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}
ERRORS: dict[str, type[ApiError]] = {
    "self": BadRequest,
    "unknown_user": NotFound,
    "unknown_request": NotFound,
    "not_friends": NotFound,
    "not_recipient": Forbidden,
    "already_friends": Unprocessable,
    "waiting": Unprocessable,
    "answered": Unprocessable,
}


def http_error(error: service.FriendsError) -> NoReturn:
    raise ERRORS[error.reason](error.message) from None


def me(request: Request) -> str:
    current: CurrentUser = request.ctx.user
    return str(current.id)


@bp.post("/user-requests")
@document(
    tag="friends",
    body=FriendRequestCreate,
    responses={201: (FriendRequestCreated, "Sent")},
    errors=(400, 401, 404, 413, 422),
)
@protected
@validate_body(FriendRequestCreate)
async def send_friend_request(request: Request, body: FriendRequestCreate) -> HTTPResponse:
    """Ask a user to be friends: 422 if you are already, or a request between you is waiting."""
    try:
        request_id = await service.send_request(me(request), body.to_id, body.verify_data)
    except service.FriendsError as error:
        http_error(error)
    return json(FriendRequestCreated(user_request_id=request_id).model_dump(), status=201)


@bp.get("/user-requests")
@document(
    tag="friends",
    query=Pagination,
    responses={200: (WaitingRequest, "Waiting requests, newest first", "many")},
    headers={200: {"X-Total-Count": "Number of waiting requests in all"}},
    errors=(400, 401),
)
@protected
@validate_query(Pagination)
async def list_friend_requests(request: Request, query: Pagination) -> HTTPResponse:
    """Waiting friend requests to and from me, each with the other user's public profile."""
    page, total = await service.waiting_requests(me(request), query.limit, query.offset)
    return json_bytes(WAITING_LIST.dump_json(page), headers={"X-Total-Count": str(total)})


@bp.put("/user-requests/<request_id:str>")
@document(
    tag="friends",
    body=FriendRequestAnswer,
    path={"request_id": ID_PATH},
    responses={204: (None, "Answered")},
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(FriendRequestAnswer)
async def answer_friend_request(request: Request, request_id: str, body: FriendRequestAnswer) -> HTTPResponse:
    """Agree to or refuse a waiting request sent to me; agreeing makes us friends."""
    try:
        await service.answer_request(me(request), request_id, body.status)
    except service.FriendsError as error:
        http_error(error)
    return empty()


@bp.get("/friends")
@document(
    tag="friends",
    query=Pagination,
    responses={200: (UserPublic, "My friends, with their presence in `flag`", "many")},
    headers={200: {"X-Total-Count": "Number of friends in all"}},
    errors=(400, 401),
)
@protected
@validate_query(Pagination)
async def list_friends(request: Request, query: Pagination) -> HTTPResponse:
    """My friends' public profiles, in the order we became friends."""
    friends, total = await service.list_friends(me(request), query.limit, query.offset)
    return json_bytes(USER_LIST.dump_json(friends), headers={"X-Total-Count": str(total)})


@bp.delete("/friends/<user_id:str>")
@document(tag="friends", path={"user_id": ID_PATH}, responses={204: (None, "Unfriended")}, errors=(401, 404))
@protected
async def remove_friend(request: Request, user_id: str) -> HTTPResponse:
    """Stop being friends with a user (both sides); our messages are kept."""
    try:
        await service.remove_friend(me(request), user_id)
    except service.FriendsError as error:
        http_error(error)
    return empty()
