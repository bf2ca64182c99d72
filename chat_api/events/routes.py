"""`GET /api/events`: the caller's stored events after a seq, the same ones a WebSocket resume replays."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from chat_api.common.errors import Conflict
from chat_api.events.schemas import EventOut, EventQuery
from chat_api.events.service import encode, events_after, resumable
from chat_api.http.auth import current_user_id
from chat_api.http.endpoint import endpoint

bp = Blueprint("events", url_prefix="/api", strict_slashes=False)
RESYNC = "resync_required: events after this seq are no longer kept (or it was never given out); refetch over REST"


@bp.get("/events")
@endpoint(
    tag="events",
    query=EventQuery,
    responses={200: (EventOut, "The caller's stored events after `after`, oldest first", "many")},
    headers={
        200: {
            "X-Has-More": "`true` when more events follow the last one: ask again with after=<its seq>",
            "X-Newest-Seq": "The newest seq of the log when the page was read",
        }
    },
    errors=(400, 401, 422),
)
async def list_events(request: Request, query: EventQuery) -> HTTPResponse:
    """Stored events (messages, group messages, friend requests) after a seq; 422 when a resync is needed."""
    user_id = current_user_id(request)
    ok, newest = await resumable(query.after)
    if not ok:
        raise Conflict(RESYNC)
    # One more than asked tells whether there is more, without a count.
    page = await events_after(user_id, query.after, query.limit + 1)
    more = len(page) > query.limit
    return json(
        page[: query.limit],
        headers={"X-Has-More": "true" if more else "false", "X-Newest-Seq": str(newest)},
        dumps=encode,
    )
