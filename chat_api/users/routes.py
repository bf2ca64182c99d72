"""User routes: registration, CRUD under /api/users and the two availability checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import unquote

from pydantic import TypeAdapter
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.common.errors import UserNotFound
from chat_api.common.fields import CHAT_ID_STRING_SCHEMA, EMAIL_ADAPTER, ChatId
from chat_api.common.ids import OBJECT_ID_PATH, parse_object_id
from chat_api.common.pagination import Pagination
from chat_api.http.auth import current_user
from chat_api.http.endpoint import endpoint, paged
from chat_api.http.errors import CONFLICT_STATUS, error_body
from chat_api.http.ratelimit import Gate, Policies, client_address
from chat_api.http.responses import json_model, json_page
from chat_api.http.validation import Handler, parse_value
from chat_api.users import repository, service
from chat_api.users.schemas import USER_LIST, Availability, UserCreate, UserCreated, UserPublic, UserUpdate

bp = Blueprint("users", url_prefix="/api", strict_slashes=False)
CHAT_ID_ADAPTER: TypeAdapter[int] = TypeAdapter(ChatId)
USER_ID_PATH = {"user_id": OBJECT_ID_PATH}


def creates_user(tag: str, created: str, errors: tuple[int, ...], auth: bool) -> Callable[[Handler], Handler]:
    """The contract of registering and of the authenticated create: a UserCreate body, 201 with a Location."""
    return endpoint(
        tag=tag,
        body=UserCreate,
        responses={201: (UserCreated, created)},
        headers={201: {"Location": "URL of the new user"}},
        errors=errors,
        auth=auth,
    )


async def created_user(request: Request, body: UserCreate) -> HTTPResponse:
    """201 with the new id and its Location; 422 naming the field that is taken; 429 past the
    address's budget of new accounts, counted before the password is hashed."""
    policies: Policies = request.app.ctx.rate_policies
    await Gate(request, policies.register).spend(policies.register, client_address(request))
    user = await service.create_user(body, request.app.ctx.hasher)
    user_id = str(user.id)
    return json(
        UserCreated(user_id=user_id).model_dump(),
        status=201,
        headers={"Location": request.app.url_for("users.get_user", user_id=user_id)},
    )


@bp.post("/register")
@creates_user("auth", "Registered", (400, 413, 422, 429), auth=False)
async def register(request: Request, body: UserCreate) -> HTTPResponse:
    """Create an account; no token needed."""
    return await created_user(request, body)


@bp.post("/users")
@creates_user("users", "Created", (400, 401, 413, 422, 429), auth=True)
async def create_user(request: Request, body: UserCreate) -> HTTPResponse:
    """Create a user (an authenticated admin-style create; the public one is /api/register)."""
    return await created_user(request, body)


@bp.get("/users")
@endpoint(tag="users", **paged(UserPublic, "Users in creation order", "Number of users in all"))
async def list_users(request: Request, query: Pagination) -> HTTPResponse:
    """List users in creation order, `limit` (1-200, default 50) from `offset`."""
    return json_page(USER_LIST, *await repository.list_users(query.limit, query.offset))


@bp.get("/users/<user_id:str>")
@endpoint(tag="users", path=USER_ID_PATH, responses={200: (UserPublic, "The user")}, errors=(401, 404))
async def get_user(request: Request, user_id: str) -> HTTPResponse:
    """Show one user."""
    oid = parse_object_id(user_id)
    if oid is None:
        raise UserNotFound
    user = await repository.get_public_user(oid)
    if user is None:
        raise UserNotFound
    return json_model(user)


@bp.put("/users/<user_id:str>")
@endpoint(
    tag="users",
    body=UserUpdate,
    path=USER_ID_PATH,
    responses={204: (None, "Updated")},
    errors=(400, 401, 403, 404, 413, 422),
)
async def update_user(request: Request, user_id: str, body: UserUpdate) -> HTTPResponse:
    """Change any of the caller's own fields; only those in the body change."""
    oid = await service.own_account(current_user(request).id, parse_object_id(user_id), "change")
    # Nothing to change in an empty body: the caller's account was just loaded by @protected.
    await service.update_user(oid, body.model_dump(exclude_unset=True), request.app.ctx.hasher)
    return empty()


# DELETE /api/users/<id> is chat_api/accounts/routes.py: deleting an account reaches into every package.


def taken_answer(message: str) -> HTTPResponse:
    """The checks' 422: an ordinary answer of theirs, returned rather than raised. Sanic's exception
    path cost about a tenth of the route's CPU time (docs/performance.md); the body is the same."""
    return json(error_body(message), status=CONFLICT_STATUS)


async def checked(request: Request, lookup: Callable[[], Awaitable[bool]]) -> bool:
    """The lookup's answer, unless the address's budget of checks is used up (429, and no lookup).

    One after the other: the budget is nearly always spent without the store (chat_api/ratelimit/service.py),
    and running the two side by side cost more CPU, in tasks, than it saved in waiting.
    """
    policies: Policies = request.app.ctx.rate_policies
    await Gate(request, policies.checks).spend(policies.checks, client_address(request))
    return await lookup()


@bp.get("/users/checkEmail/<email:str>")
@endpoint(
    tag="checks",
    path={"email": {"type": "string", "format": "email"}},
    responses={200: (Availability, "The email is free")},
    errors=(400, 422, 429),
    auth=False,
)
async def check_email(request: Request, email: str) -> HTTPResponse:
    """Is this email free? 200 if so, 422 if taken (compared case-insensitively)."""
    # Decoded here: Sanic's own `unquote=True` was not applied reliably on this route.
    normalized = parse_value(EMAIL_ADAPTER, unquote(email), "email", "Not a valid email address")
    if await checked(request, partial(repository.email_taken, normalized)):
        return taken_answer("This email is already taken")
    return json({"message": "This email is available"})


@bp.get("/users/checkChatId/<chat_id:str>")
@endpoint(
    tag="checks",
    path={"chat_id": CHAT_ID_STRING_SCHEMA},
    responses={200: (Availability, "The chat_id is free")},
    errors=(400, 422, 429),
    auth=False,
)
async def check_chat_id(request: Request, chat_id: str) -> HTTPResponse:
    """Is this chat_id free? 200 if so, 422 if taken."""
    value = parse_value(CHAT_ID_ADAPTER, chat_id, "chat_id", "A chat_id is a positive whole number")
    if await checked(request, partial(repository.chat_id_taken, value)):
        return taken_answer("This chat_id is already taken")
    return json({"message": "This chat_id is available"})
