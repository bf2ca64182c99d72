"""`GET /api/users/<own id>/export`: the caller's data as one JSON document, streamed as it is read."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from chat_api.common.ids import OBJECT_ID_PATH, parse_object_id
from chat_api.export import service
from chat_api.export.schemas import Export
from chat_api.http.auth import caller_profile, current_user
from chat_api.http.endpoint import endpoint
from chat_api.users.service import own_account

bp = Blueprint("export", url_prefix="/api", strict_slashes=False)


@bp.get("/users/<user_id:str>/export")
# A streamed answer returns None (Sanic refuses a second response), which `Handler` does not allow for.
@endpoint(  # type: ignore[arg-type]
    tag="users",
    path={"user_id": OBJECT_ID_PATH},
    responses={200: (Export, "The caller's data: profile, friends, requests, groups, messages, files")},
    headers={200: {"Content-Disposition": 'attachment; filename="chat-export-<id>.json"'}},
    errors=(401, 403, 404),
)
async def export_user(request: Request, user_id: str) -> HTTPResponse | None:
    """Download everything the service holds about the caller's own account, as one JSON document."""
    caller = current_user(request)
    oid = await own_account(caller.id, parse_object_id(user_id), "export")
    profile = await caller_profile(request)
    response = await request.respond(
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="chat-export-{oid}.json"'},
    )
    async for piece in service.export_document(str(oid), profile):
        await response.send(piece)
    await response.eof()
    return None
