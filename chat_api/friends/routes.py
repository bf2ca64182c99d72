"""Friend requests (/api/user-requests) and friends (/api/friends)."""

from __future__ import annotations

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
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint, paged
from chat_api.http.openapi import component
from chat_api.http.responses import json_page
from chat_api.users.schemas import USER_LIST, UserPublic

bp = Blueprint("friends", url_prefix="/api", strict_slashes=False)
component(FriendRequestPublic)  # what a `friend_request` event carries (docs/api.md, "Real time")


@bp.post("/user-requests")
@endpoint(
    tag="friends",
    body=FriendRequestCreate,
    responses={201: (FriendRequestCreated, "Sent")},
    errors=(400, 401, 403, 404, 413, 422),
)
async def send_friend_request(request: Request, body: FriendRequestCreate) -> HTTPResponse:
    """Ask a user to be friends: 422 if you are already, or a request between you is waiting; 403 if they block you."""
    request_id = await service.send_request(current_user_id(request), body.to_id, body.verify_data)
    return json(FriendRequestCreated(user_request_id=request_id).model_dump(), status=201)


@bp.get("/user-requests")
@endpoint(tag="friends", **paged(WaitingRequest, "Waiting requests, newest first", "Number of waiting requests in all"))
async def list_friend_requests(request: Request, query: Pagination) -> HTTPResponse:
    """Waiting friend requests to and from me, each with the other user's public profile."""
    return json_page(WAITING_LIST, *await service.waiting_requests(current_user_id(request), query.limit, query.offset))


@bp.put("/user-requests/<request_id:str>")
@endpoint(
    tag="friends",
    body=FriendRequestAnswer,
    path={"request_id": OBJECT_ID_PATH},
    responses={204: (None, "Answered")},
    errors=(400, 401, 403, 404, 413, 422),
)
async def answer_friend_request(request: Request, request_id: str, body: FriendRequestAnswer) -> HTTPResponse:
    """Agree to or refuse a waiting request sent to me; agreeing makes us friends."""
    await service.answer_request(current_user_id(request), request_id, body.status)
    return empty()


@bp.get("/friends")
@endpoint(tag="friends", **paged(UserPublic, "My friends, with their presence in `flag`", "Number of friends in all"))
async def list_friends(request: Request, query: Pagination) -> HTTPResponse:
    """My friends' public profiles, in the order we became friends."""
    return json_page(USER_LIST, *await service.list_friends(current_user_id(request), query.limit, query.offset))


@bp.delete("/friends/<user_id:str>")
@endpoint(tag="friends", path={"user_id": OBJECT_ID_PATH}, responses={204: (None, "Unfriended")}, errors=(401, 404))
async def remove_friend(request: Request, user_id: str) -> HTTPResponse:
    """Stop being friends with a user (both sides); our messages are kept."""
    await service.remove_friend(current_user_id(request), user_id)
    return empty()
