"""Friend requests (/api/user-requests) and friends (/api/friends)."""

from __future__ import annotations

from pydantic import BaseModel
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.common.pagination import Pagination
from chat_api.friends import service
from chat_api.friends.schemas import (
    WAITING_LIST,
    FriendRequestAnswer,
    FriendRequestCreate,
    FriendRequestCreated,
    FriendRequestPublic,
    WaitingRequest,
)
from chat_api.http.auth import current_user_id, protected
from chat_api.http.openapi import document
from chat_api.http.responses import json_page
from chat_api.http.validation import validate_body, validate_query
from chat_api.users.schemas import USER_LIST, UserPublic

bp = Blueprint("friends", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = [
    FriendRequestCreate,
    FriendRequestCreated,
    FriendRequestAnswer,
    FriendRequestPublic,
    WaitingRequest,
]


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
    request_id = await service.send_request(current_user_id(request), body.to_id, body.verify_data)
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
    return json_page(WAITING_LIST, *await service.waiting_requests(current_user_id(request), query.limit, query.offset))


@bp.put("/user-requests/<request_id:str>")
@document(
    tag="friends",
    body=FriendRequestAnswer,
    path={"request_id": OBJECT_ID_PATH},
    responses={204: (None, "Answered")},
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(FriendRequestAnswer)
async def answer_friend_request(request: Request, request_id: str, body: FriendRequestAnswer) -> HTTPResponse:
    """Agree to or refuse a waiting request sent to me; agreeing makes us friends."""
    await service.answer_request(current_user_id(request), request_id, body.status)
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
    return json_page(USER_LIST, *await service.list_friends(current_user_id(request), query.limit, query.offset))


@bp.delete("/friends/<user_id:str>")
@document(tag="friends", path={"user_id": OBJECT_ID_PATH}, responses={204: (None, "Unfriended")}, errors=(401, 404))
@protected
async def remove_friend(request: Request, user_id: str) -> HTTPResponse:
    """Stop being friends with a user (both sides); our messages are kept."""
    await service.remove_friend(current_user_id(request), user_id)
    return empty()
