"""GET /api/messages/search: the messages I may read that contain a text, newest first."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint
from chat_api.http.responses import json_bytes
from chat_api.search import service
from chat_api.search.schemas import HIT_LIST, SearchHit, SearchQuery

bp = Blueprint("search", url_prefix="/api", strict_slashes=False)


@bp.get("/messages/search")
@endpoint(
    tag="messages",
    query=SearchQuery,
    responses={200: (SearchHit, "Messages found, newest first, each with its conversation", "many")},
    errors=(400, 401),
)
async def search_messages(request: Request, query: SearchQuery) -> HTTPResponse:
    """Search my direct conversations and my groups (since I joined) for `q`; `before` (a message id) pages."""
    hits = await service.search(current_user_id(request), query.q, query.before, query.limit)
    return json_bytes(HIT_LIST.dump_json(hits))
