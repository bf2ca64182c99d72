"""`DELETE /api/users/<id>`, on a blueprint of its own: deleting an account reaches into every package."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from chat_api.accounts import service
from chat_api.accounts.schemas import AccountDeletionQuery
from chat_api.common.ids import OBJECT_ID_PATH, parse_object_id
from chat_api.http.auth import current_user
from chat_api.http.endpoint import endpoint
from chat_api.http.openapi import MessageBody

bp = Blueprint("accounts", url_prefix="/api", strict_slashes=False)


@bp.delete("/users/<user_id:str>")
@endpoint(
    tag="users",
    path={"user_id": OBJECT_ID_PATH},
    query=AccountDeletionQuery,
    responses={200: (MessageBody, "Deleted")},
    errors=(400, 401, 403, 404),
)
async def delete_user(request: Request, user_id: str, query: AccountDeletionQuery) -> HTTPResponse:
    """Delete the caller's own account, with `?erase=true` its messages' text and its files too."""
    await service.delete_account(current_user(request).id, parse_object_id(user_id), erase=query.erase)
    return json({"message": "User deleted"})
