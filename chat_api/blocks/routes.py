"""Blocks (/api/blocks): keep a user away, let them back, list whom I keep away."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty

from chat_api.blocks import service
from chat_api.blocks.schemas import BLOCKED_LIST, BlockedUser
from chat_api.common.ids import OBJECT_ID_PATH
from chat_api.common.pagination import Pagination
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint, paged
from chat_api.http.responses import json_page

bp = Blueprint("blocks", url_prefix="/api", strict_slashes=False)


@bp.put("/blocks/<user_id:str>")
@endpoint(tag="blocks", path={"user_id": OBJECT_ID_PATH}, responses={204: (None, "Blocked")}, errors=(400, 401, 404))
async def block_user(request: Request, user_id: str) -> HTTPResponse:
    """Block a user: no direct message, friend request, group add, typing or presence from them."""
    await service.block(current_user_id(request), user_id)
    return empty()


@bp.delete("/blocks/<user_id:str>")
@endpoint(tag="blocks", path={"user_id": OBJECT_ID_PATH}, responses={204: (None, "Unblocked")}, errors=(400, 401, 404))
async def unblock_user(request: Request, user_id: str) -> HTTPResponse:
    """Lift a block (none: 204 all the same)."""
    await service.unblock(current_user_id(request), user_id)
    return empty()


@bp.get("/blocks")
@endpoint(tag="blocks", **paged(BlockedUser, "The users I block, in the order I blocked them", "Number of blocks"))
async def list_blocks(request: Request, query: Pagination) -> HTTPResponse:
    """The public profiles of the users I block, with when I blocked each."""
    return json_page(BLOCKED_LIST, *await service.blocked_users(current_user_id(request), query.limit, query.offset))
