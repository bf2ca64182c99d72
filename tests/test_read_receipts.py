"""Direct read receipts (issue 13): marking a direct conversation read sends the friend a stored `read` event
(live, and replayed on resume and by GET /api/events) when the position moved, and the friend's conversation
entry shows `peer_read_up_to`, with no extra store command for the list."""

from __future__ import annotations

from typing import Any

import httpx
from pymongo.database import Database

from tests.counted import Counted, counted
from tests.factories import TestUser, create_user, direct_message, make_friends
from tests.helpers import Api, assert_error
from tests.realtime_helpers import fresh_hub, next_frame, no_frame, open_socket, run, ws_url

__all__ = ["counted", "fresh_hub"]  # fixtures used by name

Db = Database[dict[str, Any]]


def mark_read(api: Api, reader: TestUser, friend: TestUser) -> Any:
    return api.put(f"/api/conversations/user/{friend.id}/read", headers=reader.headers)


def entry_for(api: Api, me: TestUser, friend: TestUser) -> dict[str, Any]:
    response = api.get("/api/conversations", headers=me.headers)
    assert response.status == 200, response.text
    entry: dict[str, Any] = next(c for c in response.json if (c["type"], c["id"]) == ("user", friend.id))
    return entry


def read_events(api: Api, user: TestUser, after: int = 0) -> list[dict[str, Any]]:
    response = api.get(f"/api/events?after={after}&limit=200", headers=user.headers)
    assert response.status == 200, response.text
    return [event for event in response.json if event["type"] == "read"]


def chatting(api: Api) -> tuple[TestUser, TestUser]:
    alice, bob = create_user(api), create_user(api)
    make_friends(api, alice, bob)
    return alice, bob


def test_marking_read_sends_the_friend_a_live_read_event_once(api: Api, fresh_hub: None) -> None:
    alice, bob = chatting(api)
    direct_message(api, alice, bob, "one")
    last = direct_message(api, alice, bob, "two")

    async def scenario() -> None:
        sender, _ = await open_socket(ws_url(api), alice)
        reader, _ = await open_socket(ws_url(api), bob)
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            path = f"/api/conversations/user/{alice.id}/read"
            assert (await http.put(path, headers=bob.headers)).status_code == 204
            frame = await next_frame(sender)
            assert frame == {
                "type": "read",
                "seq": frame["seq"],
                "conversation": {"type": "user", "id": bob.id},
                "up_to": last["id"],
            }
            # Again: the position did not move, nothing is sent.
            assert (await http.put(path, headers=bob.headers)).status_code == 204
        await no_frame(sender)
        await no_frame(reader)  # the reader is not told of their own reading
        await sender.close()
        await reader.close()

    run(api, scenario())
    assert [e["up_to"] for e in read_events(api, alice)] == [last["id"]]
    assert read_events(api, bob) == []


def test_the_friends_entry_shows_how_far_i_read(api: Api) -> None:
    alice, bob = chatting(api)
    first = direct_message(api, alice, bob, "one")
    assert entry_for(api, alice, bob)["peer_read_up_to"] is None
    assert mark_read(api, bob, alice).status == 204
    assert entry_for(api, alice, bob)["peer_read_up_to"] == first["id"]
    # Not the other way round: Alice has read nothing of Bob's.
    assert entry_for(api, bob, alice)["peer_read_up_to"] is None
    second = direct_message(api, alice, bob, "two")
    assert entry_for(api, alice, bob)["peer_read_up_to"] == first["id"]  # not read yet
    assert mark_read(api, bob, alice).status == 204
    assert entry_for(api, alice, bob)["peer_read_up_to"] == second["id"]
    assert [e["up_to"] for e in read_events(api, alice)] == [first["id"], second["id"]]


def test_reading_up_to_my_own_newest_message_names_it(api: Api) -> None:
    alice, bob = chatting(api)
    direct_message(api, alice, bob, "question")
    answer = direct_message(api, bob, alice, "answer")
    assert mark_read(api, bob, alice).status == 204
    [event] = read_events(api, alice)
    assert event["up_to"] == answer["id"]
    assert entry_for(api, alice, bob)["peer_read_up_to"] == answer["id"]


def test_a_read_event_is_replayed_on_resume(api: Api, fresh_hub: None) -> None:
    alice, bob = chatting(api)
    last = direct_message(api, alice, bob, "while you were away")

    async def away() -> int:
        ws, ready = await open_socket(ws_url(api), alice)
        await ws.close()
        seq: int = ready["seq"]
        return seq

    seen = run(api, away())
    assert mark_read(api, bob, alice).status == 204

    async def back() -> None:
        ws, _ = await open_socket(ws_url(api), alice, last_seq=seen)
        frame = await next_frame(ws)
        assert (frame["type"], frame["conversation"], frame["up_to"]) == (
            "read",
            {"type": "user", "id": bob.id},
            last["id"],
        )
        await no_frame(ws)
        await ws.close()

    run(api, back())
    assert [e["up_to"] for e in read_events(api, alice, after=seen)] == [last["id"]]


def test_concurrent_marks_move_the_position_once_and_send_one_event(api: Api) -> None:
    alice, bob = chatting(api)
    last = direct_message(api, alice, bob, "hi")
    path = f"/api/conversations/user/{alice.id}/read"
    responses = api.concurrently([("PUT", path, {"headers": bob.headers})] * 6)
    assert [r.status_code for r in responses] == [204] * 6
    assert [e["up_to"] for e in read_events(api, alice)] == [last["id"]]


def test_a_friendship_stored_before_read_receipts_learns_them(api: Api, sync_db: Db) -> None:
    alice, bob = chatting(api)
    last = direct_message(api, alice, bob, "hi")
    sync_db.friendships.update_many({}, {"$unset": {"peer_read_n": "", "peer_read_up_to": ""}})
    assert entry_for(api, alice, bob)["peer_read_up_to"] is None
    assert mark_read(api, bob, alice).status == 204
    assert entry_for(api, alice, bob)["peer_read_up_to"] == last["id"]
    side = sync_db.friendships.find_one({"owner_id": alice.id, "friend_id": bob.id})
    assert side is not None
    assert (side["peer_read_n"], side["peer_read_up_to"]) == (1, last["id"])


def test_no_receipt_without_a_friendship_or_to_a_deleted_account(api: Api) -> None:
    alice, bob = chatting(api)
    stranger = create_user(api)
    assert_error(mark_read(api, stranger, alice), 403, "This user is not your friend")
    direct_message(api, alice, bob, "last words")
    assert api.delete(f"/api/users/{alice.id}", headers=alice.headers).status == 200
    # Bob's conversation with the deleted account stays, and may be marked read: nobody to tell.
    assert mark_read(api, bob, alice).status == 204
    entry = entry_for(api, bob, alice)
    assert (entry["deleted"], entry["unread"]) == (True, 0)


def test_marking_read_costs_one_command_when_nothing_moved(counted: Counted) -> None:
    api = counted.api
    alice, bob = chatting(api)
    direct_message(api, alice, bob, "hi")
    response, trips = counted.count(lambda: mark_read(api, bob, alice))
    assert response.status == 204
    # the friendship, both sides in one bulk write, the event (newest seq, insert)
    assert str(trips) == ("find friendships, update friendships, findAndModify event_counters, insert events")
    response, trips = counted.count(lambda: mark_read(api, bob, alice))
    assert (response.status, str(trips)) == (204, "find friendships")
    # The list shows the receipt with no command of its own: friendships + memberships, profiles + the count.
    response, trips = counted.count(lambda: api.get("/api/conversations", headers=alice.headers))
    assert response.json[0]["peer_read_up_to"] is not None
    assert trips.data == 4
