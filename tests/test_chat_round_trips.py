"""Store commands per request of the friends, direct-message and conversation routes, counted exactly.

Held like tests/test_round_trips.py: a new command fails here, so a change of cost is a decision.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from gridfs import GridFSBucket
from pymongo.database import Database

from bench.round_trips import CommandCounter, RoundTrips
from chat_api.common.clock import utc_now
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import create_user, group_docs, make_friends
from tests.helpers import Api

# route -> commands, in the order sent (those gathered together may come in either order).
# No route reads the token's user since issue 14 (its version comes from a per-process cache).
EXPECTED: dict[str, int] = {
    # Recipient exists + already friends + a block of the sender (together), insert, publish (newest seq,
    # insert)
    "POST /api/user-requests": 6,
    # Both directions' pages and counts (together), the profiles
    "GET /api/user-requests": 5,
    # Request, the pair's last message number (issue 11: what was said before is read), both
    # friendships (one insert), conditional status, publish (2)
    "PUT /api/user-requests/<id> agree": 6,
    "PUT /api/user-requests/<id> refuse": 4,
    # Page + count (together), profiles
    "GET /api/friends": 3,
    # Delete both sides
    "DELETE /api/friends/<user_id>": 1,
    # Friendship + a block of the sender (together, issue 13), the message's number (issue 11: one
    # findAndModify on the pair's counter), insert, its search postings (one insert_many, issue 13), publish (2),
    # both summaries (one update), seq
    "POST /api/user-message": 9,
    # the same with the file's existence checked beside the friendship, and no postings (an img has no text)
    "POST /api/user-message img": 9,
    # Friendship + block, a number (left unused: a hole), the insert the unique client_key refuses, the
    # original
    "POST /api/user-message retry": 5,
    # The page
    "GET /api/user-message/<from_id>/<to_id>": 1,
    # Issue 13. A reply: the message's 10, and the original's read beside the friendship (only with `reply_to`)
    "POST /api/user-message reply": 10,
    # a page with replies: one read of their originals (by `_id` `$in`), only when the page has replies
    "GET /api/user-message/<from_id>/<to_id> with replies": 2,
    # The message, the compare-and-set, its search postings removed, the summary (if it is the last),
    # publish (2), the event's marker
    "DELETE /api/user-message/<id>": 7,
    # the same, with the postings of the new text added and those of the old removed (two), and the event's whole
    # message shows its reply's preview: one read of the original (a reply here)
    "PATCH /api/user-message/<id>": 9,
    # The message, the compare-and-set, publish (2)
    "PUT /api/user-message/<id>/reactions/<emoji>": 4,
    # Friendships + memberships (together), groups, profiles + one exact unread count per
    # conversation on the page (together; issue 11 counts direct conversations too)
    "GET /api/conversations": 6,
    # Friendship, conditional update of both sides (one bulk write: the friend's side learns how far I
    # read, issue 13), the `read` event to the friend (newest seq, insert)
    "PUT /api/conversations/user/<id>/read": 4,
    # Group + membership (together), update
    "PUT /api/conversations/group/<id>/read": 3,
}


@pytest.fixture
def measure(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch, sync_db: Database[dict[str, Any]]) -> Any:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        api = Api(client)
        measured: dict[str, RoundTrips] = {}

        def call(route: str, expect: int, send: Callable[[], Any]) -> Any:
            counter.commands.clear()
            counter.recording = True
            try:
                response = send()
            finally:
                counter.recording = False
            assert response.status == expect, (route, response.text)
            measured[route] = RoundTrips(tuple(counter.commands))
            return response

        yield api, call, measured


def test_chat_routes_take_their_measured_store_round_trips(measure: Any, sync_db: Database[dict[str, Any]]) -> None:
    api, call, measured = measure
    me, friend, asker, refused = (create_user(api) for _ in range(4))
    make_friends(api, me, friend)
    sent = call(
        "POST /api/user-requests",
        201,
        lambda: api.post("/api/user-requests", json={"to_id": me.id}, headers=asker.headers),
    )
    api.post("/api/user-requests", json={"to_id": me.id}, headers=refused.headers)
    call("GET /api/user-requests", 200, lambda: api.get("/api/user-requests", headers=me.headers))
    request_id = sent.json["user_request_id"]
    call(
        "PUT /api/user-requests/<id> agree",
        204,
        lambda: api.put(f"/api/user-requests/{request_id}", json={"status": "agree"}, headers=me.headers),
    )
    other_request = api.get("/api/user-requests", headers=me.headers).json[0]["user_request_id"]
    call(
        "PUT /api/user-requests/<id> refuse",
        204,
        lambda: api.put(f"/api/user-requests/{other_request}", json={"status": "refuse"}, headers=me.headers),
    )
    call("GET /api/friends", 200, lambda: api.get("/api/friends", headers=me.headers))
    call("DELETE /api/friends/<user_id>", 204, lambda: api.delete(f"/api/friends/{asker.id}", headers=me.headers))
    body = {"to_id": friend.id, "msg": "hello", "client_msg_id": "rt-1"}
    call("POST /api/user-message", 201, lambda: api.post("/api/user-message", json=body, headers=me.headers))
    call("POST /api/user-message retry", 200, lambda: api.post("/api/user-message", json=body, headers=me.headers))
    file_id = GridFSBucket(sync_db).upload_from_stream("a.png", io.BytesIO(b"\x89PNG\r\n\x1a\n"))
    image = {"to_id": friend.id, "msg": f"/api/files/{file_id}", "msg_type": "img"}
    call("POST /api/user-message img", 201, lambda: api.post("/api/user-message", json=image, headers=me.headers))
    call(
        "GET /api/user-message/<from_id>/<to_id>",
        200,
        lambda: api.get(f"/api/user-message/{me.id}/{friend.id}", headers=me.headers),
    )
    original = api.get(f"/api/user-message/{me.id}/{friend.id}", headers=me.headers).json[-1]["id"]
    reply = {"to_id": me.id, "msg": "re", "reply_to": original}
    sent_reply = call(
        "POST /api/user-message reply", 201, lambda: api.post("/api/user-message", json=reply, headers=friend.headers)
    )
    call(
        "GET /api/user-message/<from_id>/<to_id> with replies",
        200,
        lambda: api.get(f"/api/user-message/{me.id}/{friend.id}", headers=me.headers),
    )
    reply_id = sent_reply.json["message"]["id"]
    call(
        "PUT /api/user-message/<id>/reactions/<emoji>",
        204,
        lambda: api.put(f"/api/user-message/{original}/reactions/%F0%9F%91%8D", headers=friend.headers),
    )
    call(
        "PATCH /api/user-message/<id>",
        200,
        lambda: api.patch(f"/api/user-message/{reply_id}", json={"msg": "re!"}, headers=friend.headers),
    )
    call(
        "DELETE /api/user-message/<id>",
        204,
        lambda: api.delete(f"/api/user-message/{reply_id}", headers=friend.headers),
    )
    # Its date as nx-27017 keeps one written by `$set` (a naive string), and a message, so marking it read writes.
    group, [membership] = group_docs(me, (), utc_now())
    sync_db.groups.insert_one(group | {"created_at": "2026-01-01T00:00:00", "last_n": 1, "message_n": 1})
    sync_db.group_members.insert_one(membership)
    group_id = str(group["_id"])
    call("GET /api/conversations", 200, lambda: api.get("/api/conversations", headers=friend.headers))
    call("GET /api/conversations", 200, lambda: api.get("/api/conversations", headers=me.headers))
    call(
        "PUT /api/conversations/user/<id>/read",
        204,
        lambda: api.put(f"/api/conversations/user/{me.id}/read", headers=friend.headers),
    )
    call(
        "PUT /api/conversations/group/<id>/read",
        204,
        lambda: api.put(f"/api/conversations/group/{group_id}/read", headers=me.headers),
    )
    details = "\n".join(f"{route}: {trips}" for route, trips in measured.items())
    assert {route: trips.data for route, trips in measured.items()} == EXPECTED, details
