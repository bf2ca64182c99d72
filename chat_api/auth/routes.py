"""Auth routes: register, login, the current user, logout."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.auth import service
from chat_api.auth.decorators import protected
from chat_api.auth.schemas import LoginRequest, TokenResponse
from chat_api.config import Settings
from chat_api.exceptions import NotFound, Unprocessable
from chat_api.openapi import document
from chat_api.ratelimit.gate import Gate, Policies, client_address
from chat_api.users.models import User
from chat_api.users.routes import create_user_response, user_json
from chat_api.users.schemas import UserCreate, UserCreated, UserPublic
from chat_api.validation import validate_body

bp = Blueprint("auth", url_prefix="/api")


@bp.post("/register")
@document(
    tag="auth",
    body=UserCreate,
    responses={201: (UserCreated, "Registered")},
    headers={201: {"Location": "URL of the new user"}},
    errors=(400, 413, 422, 429),
)
@validate_body(UserCreate)
async def register(request: Request, body: UserCreate) -> HTTPResponse:
    """Create an account; no token needed."""
    return await create_user_response(request, body)


def account_subject(user: User | None, identifier: int | str) -> str:
    """The key of an account's login budget: the user, by whichever name; else the name tried."""
    if user is not None:
        return f"user:{user.id}"
    return f"email:{identifier}" if isinstance(identifier, str) else f"chat_id:{identifier}"


@bp.post("/login")
@document(tag="auth", body=LoginRequest, responses={200: (TokenResponse, "Logged in")}, errors=(400, 404, 422, 429))
@validate_body(LoginRequest)
async def login(request: Request, body: LoginRequest) -> HTTPResponse:
    """Log in with a chat_id or an email; answers `{"token": "Bearer <jwt>"}`."""
    settings: Settings = request.app.ctx.settings
    policies: Policies = request.app.ctx.rate_policies
    gate = Gate(request, policies.login, policies.login_account)
    # The address's budget is counted while the account is looked up (a read, harmless to
    # discard); the account's budget after, so that it is keyed by the user whichever of chat_id
    # or email names it, and so that requests already refused by their address do not spend it.
    _, user = await asyncio.gather(
        gate.spend(policies.login, client_address(request)), service.find_account(body.chat_id)
    )
    await gate.spend(policies.login_account, account_subject(user, body.chat_id), private=True)
    try:
        token = await service.login(user, body.password, request.app.ctx.hasher, settings)
    except service.UnknownAccount:
        await gate.failed(settings.rate_limits.login_failure_cost)
        raise NotFound("No account with this chat_id or email") from None
    except service.WrongPassword:
        await gate.failed(settings.rate_limits.login_failure_cost)
        raise Unprocessable("Wrong password") from None
    # The frontend stores this string verbatim and sends it back as the Authorization header.
    return json({"token": f"Bearer {token}"})


@bp.get("/getUser")
@document(tag="auth", responses={200: (UserPublic, "The user of the token")}, errors=(401,))
@protected
async def get_current_user(request: Request) -> HTTPResponse:
    """The user the token belongs to."""
    return user_json(request.ctx.user.public)


async def _logout(request: Request) -> HTTPResponse:
    await service.logout(request.ctx.user.id)
    return empty()


@bp.get("/logout")
@document(tag="auth", responses={204: (None, "Logged out")}, errors=(401,))
@protected
async def logout(request: Request) -> HTTPResponse:
    """Log out: every token issued to this user so far stops working; the user goes offline."""
    return await _logout(request)


@bp.post("/logout")
@document(tag="auth", responses={204: (None, "Logged out")}, errors=(401,))
@protected
async def logout_post(request: Request) -> HTTPResponse:
    """Log out (POST form of GET /api/logout)."""
    return await _logout(request)
