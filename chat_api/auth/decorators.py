"""The `@protected` decorator: a valid, unrevoked token or 401; a `CurrentUser` lands on `request.ctx.user`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any

from sanic import Request
from sanic.response import HTTPResponse
from sanic_ext.extensions.openapi import openapi

from chat_api.exceptions import Unauthorized
from chat_api.security import InvalidToken, decode_token, token_from_header
from chat_api.users import service as users

Handler = Callable[..., Awaitable[HTTPResponse]]
MISSING_HEADER = "Authorization not found!"  # the original API's wording, which clients may show
log = logging.getLogger("chat_api.auth")


def protected(handler: Handler) -> Handler:
    """Put it above the validation decorators so an anonymous caller gets 401, not 400."""

    @wraps(handler)
    async def wrapper(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        header = request.headers.get("authorization", "").strip()
        if not header:
            raise Unauthorized(MISSING_HEADER)
        try:
            claims = decode_token(token_from_header(header), request.app.ctx.settings.jwt_secret)
        except InvalidToken:
            # Neither the token nor the decoder's message (which may quote parts of it).
            log.debug("token refused: malformed, badly signed or expired")
            raise Unauthorized("Invalid or expired token") from None
        user = await users.get_current_user(claims.user_id)
        if user is None:
            log.debug("token refused: the account is gone")
            raise Unauthorized("The account of this token no longer exists")
        if user.token_version != claims.version:
            log.debug("token refused for user %s: revoked by a logout", user.id)
            raise Unauthorized("This token was revoked by a logout")
        request.ctx.user = user
        return await handler(request, *args, **kwargs)

    openapi.secured("bearerAuth")(wrapper)
    return wrapper
