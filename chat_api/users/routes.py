"""User routes: CRUD under /api/users and the two availability checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from urllib.parse import unquote

from bson import ObjectId
from pydantic import TypeAdapter
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.auth.decorators import protected
from chat_api.exceptions import Forbidden, NotFound, Unprocessable, error_body
from chat_api.openapi import MessageBody, document
from chat_api.ratelimit.gate import Gate, Policies, client_address
from chat_api.users import service
from chat_api.users.schemas import USER_LIST, Availability, Pagination, UserCreate, UserCreated, UserPublic, UserUpdate
from chat_api.validation import (
    CHAT_ID_STRING_SCHEMA,
    EMAIL_ADAPTER,
    ChatId,
    parse_value,
    validate_body,
    validate_query,
)

bp = Blueprint("users", url_prefix="/api/users", strict_slashes=False)
CHAT_ID_ADAPTER: TypeAdapter[int] = TypeAdapter(ChatId)
# Any other string is a 404 (no such user), as documented.
USER_ID_PATH = {"user_id": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$"}}


def taken_error(taken: service.DuplicateValue) -> Unprocessable:
    return Unprocessable(str(taken), errors=[{"field": taken.field, "message": "already taken", "type": "taken"}])


def json_bytes(body: bytes, headers: dict[str, str] | None = None) -> HTTPResponse:
    """A 200 with a body pydantic has already serialised (in Rust, in one pass)."""
    return HTTPResponse(body, headers=headers, content_type="application/json")


def user_json(user: UserPublic) -> HTTPResponse:
    return json_bytes(user.model_dump_json().encode())


async def create_user_response(request: Request, body: UserCreate) -> HTTPResponse:
    """201 with the new id and its Location; 422 naming the field that is taken; 429 past the
    address's budget of new accounts, counted before the password is hashed."""
    policies: Policies = request.app.ctx.rate_policies
    await Gate(request, policies.register).spend(policies.register, client_address(request))
    try:
        user = await service.create_user(body, request.app.ctx.hasher)
    except service.DuplicateValue as taken:
        raise taken_error(taken)
    user_id = str(user.id)
    return json(
        UserCreated(user_id=user_id).model_dump(),
        status=201,
        headers={"Location": request.app.url_for("users.get_user", user_id=user_id)},
    )


@bp.post("")
@document(
    tag="users",
    body=UserCreate,
    responses={201: (UserCreated, "Created")},
    headers={201: {"Location": "URL of the new user"}},
    errors=(400, 401, 413, 422, 429),
)
@protected
@validate_body(UserCreate)
async def create_user(request: Request, body: UserCreate) -> HTTPResponse:
    """Create a user (an authenticated admin-style create; the public one is /api/register)."""
    return await create_user_response(request, body)


@bp.get("")
@document(
    tag="users",
    query=Pagination,
    responses={200: (UserPublic, "Users in creation order", "many")},
    headers={200: {"X-Total-Count": "Number of users in all"}},
    errors=(400, 401),
)
@protected
@validate_query(Pagination)
async def list_users(request: Request, query: Pagination) -> HTTPResponse:
    """List users in creation order, `limit` (1-200, default 50) from `offset`."""
    users, total = await service.list_users(query.limit, query.offset)
    return json_bytes(USER_LIST.dump_json(users), headers={"X-Total-Count": str(total)})


@bp.get("/<user_id:str>")
@document(tag="users", path=USER_ID_PATH, responses={200: (UserPublic, "The user")}, errors=(401, 404))
@protected
async def get_user(request: Request, user_id: str) -> HTTPResponse:
    """Show one user."""
    current: service.CurrentUser = request.ctx.user
    oid = service.parse_user_id(user_id)
    if oid is None:
        raise NotFound("User not found")
    user = current.public if oid == current.id else await service.get_public_user(oid)
    if user is None:
        raise NotFound("User not found")
    return user_json(user)


async def own_user_id(request: Request, user_id: str, action: str) -> ObjectId:
    """The ObjectId of `user_id` if it is the caller's own; 404 if no such user, else 403."""
    current: service.CurrentUser = request.ctx.user
    oid = service.parse_user_id(user_id)
    if oid is None:
        raise NotFound("User not found")
    if oid == current.id:
        return oid
    if not await service.user_exists(oid):
        raise NotFound("User not found")
    raise Forbidden(f"You can only {action} your own account")


@bp.put("/<user_id:str>")
@document(
    tag="users",
    body=UserUpdate,
    path=USER_ID_PATH,
    responses={204: (None, "Updated")},
    errors=(400, 401, 403, 404, 413, 422),
)
@protected
@validate_body(UserUpdate)
async def update_user(request: Request, user_id: str, body: UserUpdate) -> HTTPResponse:
    """Change any of the caller's own fields; only those in the body change."""
    oid = await own_user_id(request, user_id, "change")
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        return empty()  # nothing to change; the caller's account was just loaded by @protected
    try:
        updated = await service.update_user(oid, changes, request.app.ctx.hasher)
    except service.DuplicateValue as taken:
        raise taken_error(taken)
    if not updated:
        raise NotFound("User not found")
    return empty()


@bp.delete("/<user_id:str>")
@document(tag="users", path=USER_ID_PATH, responses={200: (MessageBody, "Deleted")}, errors=(401, 403, 404))
@protected
async def delete_user(request: Request, user_id: str) -> HTTPResponse:
    """Delete the caller's own account."""
    oid = await own_user_id(request, user_id, "delete")
    if not await service.delete_user(oid):
        raise NotFound("User not found")
    return json({"message": "User deleted"})


def taken_answer(message: str) -> HTTPResponse:
    """The checks' 422: an ordinary answer of theirs, returned rather than raised. Sanic's exception
    path cost about a tenth of the route's CPU time (README, "Performance"); the body is the same."""
    return json(error_body(message), status=Unprocessable.status_code)


async def checked(request: Request, lookup: Awaitable[bool]) -> bool:
    """The lookup's answer, unless the address's budget of checks is used up (429).

    The budget is counted while the lookup runs: a read, whose answer is simply not given on a 429.
    """
    policies: Policies = request.app.ctx.rate_policies
    gate = Gate(request, policies.checks)
    _, taken = await asyncio.gather(gate.spend(policies.checks, client_address(request)), lookup)
    return taken


@bp.get("/checkEmail/<email:str>")
@document(
    tag="checks",
    path={"email": {"type": "string", "format": "email"}},
    responses={200: (Availability, "The email is free")},
    errors=(400, 422, 429),
)
async def check_email(request: Request, email: str) -> HTTPResponse:
    """Is this email free? 200 if so, 422 if taken (compared case-insensitively)."""
    # Decoded here: Sanic's own `unquote=True` was not applied reliably on this route.
    normalized = parse_value(EMAIL_ADAPTER, unquote(email), "email", "Not a valid email address")
    if await checked(request, service.email_taken(normalized)):
        return taken_answer("This email is already taken")
    return json({"message": "This email is available"})


@bp.get("/checkChatId/<chat_id:str>")
@document(
    tag="checks",
    path={"chat_id": CHAT_ID_STRING_SCHEMA},
    responses={200: (Availability, "The chat_id is free")},
    errors=(400, 422, 429),
)
async def check_chat_id(request: Request, chat_id: str) -> HTTPResponse:
    """Is this chat_id free? 200 if so, 422 if taken."""
    value = parse_value(CHAT_ID_ADAPTER, chat_id, "chat_id", "A chat_id is a positive whole number")
    if await checked(request, service.chat_id_taken(value)):
        return taken_answer("This chat_id is already taken")
    return json({"message": "This chat_id is available"})
