"""Auth routes: login, the current user, logout."""

from __future__ import annotations

import asyncio

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json

from chat_api.auth import service
from chat_api.auth.schemas import LoginRequest, TokenResponse
from chat_api.config import Settings
from chat_api.http.auth import caller_profile, current_user
from chat_api.http.endpoint import endpoint
from chat_api.http.ratelimit import Gate, Policies, client_address
from chat_api.http.responses import json_model
from chat_api.users.models import User
from chat_api.users.schemas import UserPublic

bp = Blueprint("auth", url_prefix="/api")


def account_subject(user: User | None, identifier: int | str) -> str:
    """The key of an account's login budget: the user, by whichever name; else the name tried."""
    if user is not None:
        return f"user:{user.id}"
    return f"email:{identifier}" if isinstance(identifier, str) else f"chat_id:{identifier}"


@bp.post("/login")
@endpoint(
    tag="auth",
    body=LoginRequest,
    responses={200: (TokenResponse, "Logged in")},
    errors=(400, 404, 422, 429),
    auth=False,
)
async def login(request: Request, body: LoginRequest) -> HTTPResponse:
    """Log in with a chat_id or an email; answers `{"token": "Bearer <jwt>"}`."""
    settings: Settings = request.app.ctx.settings
    policies: Policies = request.app.ctx.rate_policies
    gate = Gate(request, policies.login, policies.login_account)
    # The address's budget is counted while the account is looked up (a read, harmless to
    # discard); the account's budget after, so that it is keyed by the user whichever of chat_id
    # or email names it, and so that requests already refused by their address do not spend it.
    _, account = await asyncio.gather(
        gate.spend(policies.login, client_address(request)), service.find_account(body.chat_id)
    )
    await gate.spend(policies.login_account, account_subject(account.user, body.chat_id), private=True)
    try:
        token = await service.login(account, body.password, request.app.ctx.hasher, settings)
    except (service.UnknownAccount, service.WrongPassword):
        # A failure costs more of both budgets; the error itself is answered by the one handler.
        await gate.failed(settings.rate_limits.login_failure_cost)
        raise
    # The frontend stores this string verbatim and sends it back as the Authorization header.
    return json({"token": f"Bearer {token}"})


@bp.get("/getUser")
@endpoint(tag="auth", responses={200: (UserPublic, "The user of the token")}, errors=(401,))
async def get_current_user(request: Request) -> HTTPResponse:
    """The user the token belongs to."""
    return json_model(await caller_profile(request))


async def _logout(request: Request) -> HTTPResponse:
    await service.logout(current_user(request).id)
    return empty()


@bp.get("/logout")
@endpoint(tag="auth", responses={204: (None, "Logged out")}, errors=(401,))
async def logout(request: Request) -> HTTPResponse:
    """Log out: every token issued to this user so far stops working; the user goes offline."""
    return await _logout(request)


@bp.post("/logout")
@endpoint(tag="auth", responses={204: (None, "Logged out")}, errors=(401,))
async def logout_post(request: Request) -> HTTPResponse:
    """Log out (POST form of GET /api/logout)."""
    return await _logout(request)
