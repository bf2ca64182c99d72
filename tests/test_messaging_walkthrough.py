"""Issue 13 tried as a new user would, over real HTTP and WebSocket: every step reaches the other side's open socket.

Two friends chat, one edits a message and recalls another, the other replies, reacts and sees "read"; in a group the
lord pins a message and mentions everyone, an admin recalls a member's message; a pest is blocked and cannot reach
the one who blocked them; a search finds an earlier word.
"""

from __future__ import annotations

from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from tests.factories import TestUser, create_group, create_user, make_friends, message_url, reaction_url
from tests.helpers import Api
from tests.realtime_helpers import next_frame, no_frame, open_socket, run, ws_url


async def call(http: httpx.AsyncClient, method: str, path: str, user: TestUser, status: int, **body: Any) -> Any:
    response = await http.request(method, path, headers=user.headers, json=body or None)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def frame_of(ws: ClientConnection, kind: str, about: str | None = None) -> dict[str, Any]:
    """The next frame of this type (about the message `about`, when given); the user's other frames in between, such
    as the echo of their own sends, are skipped. Each waits at most next_frame's timeout."""
    while True:
        frame = await next_frame(ws)
        if frame["type"] == kind and (
            about is None or about in (frame.get("message_id"), frame.get("message", {}).get("id"))
        ):
            return frame


def test_two_friends_a_group_a_pest_and_a_search(api: Api) -> None:
    alice, bob, carol, pest = (create_user(api, username=name) for name in ("alice", "bob", "carol", "pest"))
    make_friends(api, pest, bob)
    # The lord befriends both on the way (tests.factories.create_group).
    group_id = create_group(api, alice, members=[bob], admins=[carol], group_name="hikers")

    async def scenario() -> None:
        base = f"http://{api.client.host}:{api.client.port}"
        to_alice, _ = await open_socket(ws_url(api), alice)
        to_bob, _ = await open_socket(ws_url(api), bob)
        async with httpx.AsyncClient(base_url=base) as http:
            # Two friends chat: alice edits one message and recalls another.
            sent = await call(http, "POST", "/api/user-message", alice, 201, to_id=bob.id, msg="see you at 6")
            first = sent["message"]["id"]
            assert (await frame_of(to_bob, "message"))["message"]["msg"] == "see you at 6"
            edited = await call(http, "PATCH", message_url(first), alice, 200, msg="see you at 7")
            assert edited["msg"] == "see you at 7"
            assert edited["edited_at"] is not None
            assert (await frame_of(to_bob, "message_edited"))["message"]["msg"] == "see you at 7"
            oops = await call(http, "POST", "/api/user-message", alice, 201, to_id=bob.id, msg="wrong chat, sorry")
            await frame_of(to_bob, "message", oops["message"]["id"])
            await call(http, "DELETE", message_url(oops["message"]["id"]), alice, 204)
            recalled = await frame_of(to_bob, "message_recalled", oops["message"]["id"])
            assert recalled["message_id"] == oops["message"]["id"]
            assert recalled["conversation"] == {"type": "user", "id": alice.id}
            # Bob replies to the edited one, reacts to it, and reads: alice sees each.
            reply = await call(http, "POST", "/api/user-message", bob, 201, to_id=alice.id, msg="ok!", reply_to=first)
            live_reply = await frame_of(to_alice, "message", reply["message"]["id"])
            assert live_reply["message"]["reply_to"]["msg"] == "see you at 7"
            await call(http, "PUT", reaction_url(first, "👍"), bob, 204)
            reaction = await frame_of(to_alice, "reaction", first)
            assert (reaction["emoji"], reaction["user_id"], reaction["added"]) == ("👍", bob.id, True)
            await call(http, "PUT", f"/api/conversations/user/{alice.id}/read", bob, 204)
            read = await frame_of(to_alice, "read")
            assert read == {**read, "conversation": {"type": "user", "id": bob.id}, "up_to": reply["message"]["id"]}
            listed = await call(http, "GET", "/api/conversations", alice, 200)
            with_bob = next(entry for entry in listed if entry["id"] == bob.id)
            assert with_bob["peer_read_up_to"] == reply["message"]["id"]
            history = await call(http, "GET", f"/api/user-message/{alice.id}/{bob.id}", alice, 200)
            assert [(m["msg"], m["recalled"]) for m in history[1:]] == [("", True), ("see you at 7", False)]

            # The group: a member's message, the lord pins it, mentions everyone; an admin recalls a member's message.
            news = await call(http, "POST", f"/api/groups/{group_id}/messages", bob, 201, msg="trail is open")
            await frame_of(to_alice, "group_message", news["id"])
            await call(http, "PUT", f"/api/groups/{group_id}/pins/{news['id']}", alice, 204)
            pin = await frame_of(to_bob, "pin")
            assert (pin["message_id"], pin["pinned"]) == (news["id"], True)
            path = f"/api/groups/{group_id}/messages"
            call_all = await call(http, "POST", path, alice, 201, msg="meet at 8", mentions=["all"])
            called = await frame_of(to_bob, "group_message", call_all["id"])
            assert called["mentioned"] is True
            entry = next(c for c in await call(http, "GET", "/api/conversations", bob, 200) if c["id"] == group_id)
            assert entry["mentioned"] is True
            spam = await call(http, "POST", path, bob, 201, msg="buy my boots")
            await frame_of(to_alice, "group_message", spam["id"])
            await call(http, "DELETE", message_url(spam["id"], group_id), carol, 204)
            await frame_of(to_bob, "message_recalled", spam["id"])
            pins = await call(http, "GET", f"/api/groups/{group_id}/pins", bob, 200)
            assert [p["id"] for p in pins] == [news["id"]]

            # Bob blocks the pest, who then cannot reach him (never told why).
            await call(http, "PUT", f"/api/blocks/{pest.id}", bob, 204)
            refused = await call(http, "POST", "/api/user-message", pest, 403, to_id=bob.id, msg="hey")
            assert "block" not in refused["message"].lower()
            await no_frame(to_bob, 0.3)

            # A search finds the earlier word, as it reads now, and nothing recalled.
            found = await call(http, "GET", "/api/messages/search?q=trail", bob, 200)
            assert [hit["message"]["id"] for hit in found] == [news["id"]]
            assert await call(http, "GET", "/api/messages/search?q=wrong", bob, 200) == []
            assert [h["message"]["msg"] for h in await call(http, "GET", "/api/messages/search?q=see", bob, 200)] == [
                "see you at 7"
            ]
        for ws in (to_alice, to_bob):
            await ws.close()

    run(api, scenario())
