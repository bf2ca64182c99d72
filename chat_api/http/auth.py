"""Who is asking: `@protected` (a valid, unrevoked token or 401) and the current user's id, for routes and `/ws`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse
from sanic_ext.extensions.openapi import openapi

from chat_api.config import Settings
from chat_api.http.errors import Unauthorized
from chat_api.security import InvalidToken, decode_token, token_from_header
from chat_api.users import repository as users
from chat_api.users.repository import CurrentUser
from chat_api.users.schemas import UserPublic

Handler = Callable[..., Awaitable[HTTPResponse]]
MISSING_HEADER = "Authorization not found!"  # the original API's wording, which clients may show
ACCOUNT_GONE = "The account of this token no longer exists"
log = logging.getLogger("chat_api.auth")


class TokenRefused(Exception):
    """The token is malformed, badly signed, expired or revoked, or its account is gone; the message says which."""


async def user_for_token(header: str, settings: Settings) -> CurrentUser:
    """The user an `Authorization` value (`Bearer <jwt>`) belongs to: a valid signature, an existing
    account, an unrevoked token version. The one check, for `@protected` and for `/ws`.

    The account's token version comes from this process's memory when it read it less than
    TOKEN_CACHE_SECONDS ago (chat_api/users/token_versions.py): most requests send the store no command for it."""
    try:
        claims = decode_token(token_from_header(header), settings.jwt_secret)
    except InvalidToken:
        # Neither the token nor the decoder's message (which may quote parts of it).
        log.debug("token refused: malformed, badly signed or expired")
        raise TokenRefused("Invalid or expired token") from None
    max_age = settings.token_cache_seconds
    user = await users.get_current_user(claims.user_id, max_age)
    if user is not None and claims.version > user.token_version and max_age > 0:
        # A token newer than the version this process remembers (a logout, then a login, on another process):
        # the memory is what is stale, not the token.
        user = await users.get_current_user(claims.user_id, 0)
    if user is None:
        log.debug("token refused: the account is gone")
        raise TokenRefused(ACCOUNT_GONE)
    if user.token_version != claims.version:
        log.debug("token refused for user %s: revoked by a logout", user.id)
        raise TokenRefused("This token was revoked by a logout")
    return user


def protected(handler: Handler) -> Handler:
    """Put it above the validation decorators so an anonymous caller gets 401, not 400.

    The token's user lands on `request.ctx.user` (a CurrentUser)."""

    @wraps(handler)
    async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise Unauthorized(MISSING_HEADER)
        try:
            request.ctx.user = await user_for_token(header, request.app.ctx.settings)
        except TokenRefused as refused:
            raise Unauthorized(str(refused)) from None
        return await handler(request, *args, **kwargs)

    openapi.secured("bearerAuth")(wrapper)
    return wrapper


def current_user(request: Request) -> CurrentUser:
    """The caller of a `@protected` route."""
    user: CurrentUser = request.ctx.user
    return user


async def caller_profile(request: Request) -> UserPublic:
    """The caller's own public profile, read now (one `find`): a profile just changed on another process shows."""
    profile = await users.get_public_user(current_user(request).id)
    if profile is None:  # deleted since its token was checked
        raise Unauthorized(ACCOUNT_GONE)
    return profile


def current_user_id(request: Request) -> str:
    """The caller's id (hex) of a `@protected` route: the form every reference to a user is stored in."""
    return str(current_user(request).id)
