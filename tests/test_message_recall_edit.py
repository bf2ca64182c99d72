"""Recall and edit of direct and group messages over real HTTP and WebSocket (issue 13): who may, within which
window, what every answer shows afterwards (history, conversation list, events, resume, export), and retries."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo.database import Database

from chat_api.common.clock import utc_now
from tests.conftest import OtherApp
from tests.factories import (
    TestUser,
    create_group,
    create_user,
    direct_message,
    events_of,
    message_url,
    new_friends,
    reaction_url,
    send_direct,
    send_group,
)
from tests.helpers import Api, assert_error
from tests.realtime_helpers import frames_until, fresh_hub, next_frame, no_frame, open_socket, run, ws_url

Db = Database[dict[str, Any]]


def history(api: Api, viewer: TestUser, other: TestUser) -> list[dict[str, Any]]:
    response = api.get(f"/api/user-message/{viewer.id}/{other.id}", headers=viewer.headers)
    assert response.status == 200, response.text
    return list(response.json)


def group_history(api: Api, group_id: str, viewer: TestUser) -> list[dict[str, Any]]:
    response = api.get(f"/api/groups/{group_id}/messages", headers=viewer.headers)
    assert response.status == 200, response.text
    return list(response.json)


def conversation(api: Api, viewer: TestUser, kind: str, conversation_id: str) -> dict[str, Any]:
    listed = api.get("/api/conversations", headers=viewer.headers)
    assert listed.status == 200, listed.text
    return next(c for c in listed.json if c["type"] == kind and c["id"] == conversation_id)


def age(sync_db: Db, collection: str, message_id: str, seconds: float) -> None:
    """Make a stored message `seconds` old, as if sent that long ago."""
    then = utc_now() - timedelta(seconds=seconds)
    sync_db[collection].update_one({"_id": ObjectId(message_id)}, {"$set": {"created_at": then}})


def group_with_roles(api: Api) -> tuple[str, TestUser, TestUser, TestUser, TestUser]:
    """A group with a lord, an admin and two plain members; its id and the four."""
    lord, admin, member, other = (create_user(api) for _ in range(4))
    return create_group(api, lord, members=(member, other), admins=(admin,)), lord, admin, member, other


def group_message(api: Api, group_id: str, user: TestUser, text: str = "hello") -> dict[str, Any]:
    response = send_group(api, group_id, user, text)
    assert response.status == 201, response.text
    return dict(response.json)


# Recall: direct


def test_a_recalled_direct_message_stays_in_place_without_its_text(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    first = direct_message(api, alice, bob, "first")
    secret = direct_message(api, alice, bob, "oops, secret")
    direct_message(api, bob, alice, "after")
    assert api.delete(message_url(secret["id"]), headers=alice.headers).status == 204
    for viewer, other in ((alice, bob), (bob, alice)):
        shown = history(api, viewer, other)
        assert [m["id"] for m in shown][1:] == [secret["id"], first["id"]]
        assert shown[1]["recalled"] is True
        assert shown[1]["msg"] == ""
        assert shown[2]["recalled"] is False
        assert shown[2]["msg"] == "first"
    stored = sync_db.user_messages.find_one({"_id": ObjectId(secret["id"])})
    assert stored is not None
    assert stored["msg"] == "", "the text is gone from the store"
    assert stored["recalled"]


def test_recalling_the_last_message_shows_it_recalled_in_the_conversation_list(api: Api) -> None:
    alice, bob = new_friends(api)
    direct_message(api, alice, bob, "keep")
    last = direct_message(api, alice, bob, "take back")
    assert api.delete(message_url(last["id"]), headers=alice.headers).status == 204
    for viewer, other in ((alice, bob), (bob, alice)):
        shown = conversation(api, viewer, "user", other.id)["last_message"]
        assert shown["id"] == last["id"]
        assert shown["recalled"] is True
        assert shown["msg"] == ""


def test_recalling_an_older_message_leaves_the_conversation_list_alone(api: Api) -> None:
    alice, bob = new_friends(api)
    older = direct_message(api, alice, bob, "older")
    direct_message(api, alice, bob, "newest")
    assert api.delete(message_url(older["id"]), headers=alice.headers).status == 204
    shown = conversation(api, bob, "user", alice.id)["last_message"]
    assert shown["msg"] == "newest"
    assert shown["recalled"] is False


def test_only_the_sender_may_recall_a_direct_message(api: Api) -> None:
    alice, bob = new_friends(api)
    stranger = create_user(api)
    sent = direct_message(api, alice, bob, "mine")
    assert_error(api.delete(message_url(sent["id"]), headers=bob.headers), 403, "Only its sender may recall a message")
    assert api.delete(message_url(sent["id"]), headers=stranger.headers).status == 403
    assert history(api, bob, alice)[0]["msg"] == "mine"


def test_recalling_an_unknown_or_malformed_message_is_404(api: Api) -> None:
    alice, _ = new_friends(api)
    assert_error(api.delete(message_url(str(ObjectId())), headers=alice.headers), 404, "Message not found")
    assert api.delete(message_url("nope"), headers=alice.headers).status == 404


def test_recall_after_the_window_is_refused(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "too late")
    age(sync_db, "user_messages", sent["id"], 121)  # RECALL_WINDOW is 120 s by default
    assert_error(
        api.delete(message_url(sent["id"]), headers=alice.headers),
        422,
        "A message can only be recalled within 120 seconds of sending it",
    )
    assert history(api, bob, alice)[0]["msg"] == "too late"


def test_recall_just_within_the_window_is_allowed(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "just in time")
    age(sync_db, "user_messages", sent["id"], 110)
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204


def test_recalling_twice_is_204_and_changes_nothing(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204
    before = sync_db.user_messages.find_one({"_id": ObjectId(sent["id"])})
    events_before = sync_db.events.count_documents({})
    age(sync_db, "user_messages", sent["id"], 3600)  # even after the window: it is recalled already
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204
    after = sync_db.user_messages.find_one({"_id": ObjectId(sent["id"])})
    assert before is not None
    assert after is not None
    assert {k: v for k, v in after.items() if k != "created_at"} == {
        k: v for k, v in before.items() if k != "created_at"
    }
    assert sync_db.events.count_documents({}) == events_before
    recalls = [e for e in events_of(api, bob) if e["type"] == "message_recalled"]
    assert recalls == [
        {
            "type": "message_recalled",
            "seq": recalls[0]["seq"],
            "message_id": sent["id"],
            "conversation": {"type": "user", "id": alice.id},
        }
    ]


def test_a_recall_cut_short_before_its_event_is_announced_by_its_retry(api: Api, sync_db: Db) -> None:
    """The first attempt stored the recall and died before publishing (`recall_seq` still None): the retry
    publishes it, and marks it announced, so a third call publishes nothing."""
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    changes = {"recalled": True, "msg": "", "reactions": [], "recall_seq": None, "version": 1}
    sync_db.user_messages.update_one({"_id": ObjectId(sent["id"])}, {"$set": changes})
    assert not [e for e in events_of(api, bob) if e["type"] == "message_recalled"]
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204
    assert [e["message_id"] for e in events_of(api, bob) if e["type"] == "message_recalled"] == [sent["id"]]
    stored = sync_db.user_messages.find_one({"_id": ObjectId(sent["id"])})
    assert stored is not None
    assert stored["recall_seq"] is not None
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204
    assert len([e for e in events_of(api, bob) if e["type"] == "message_recalled"]) == 1


def test_a_recalled_file_message_loses_its_link_everywhere(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    url = f"/api/files/{ObjectId()}"
    sent = direct_message(api, alice, bob, "a caption")
    sync_db.user_messages.update_one({"_id": ObjectId(sent["id"])}, {"$set": {"msg": url, "msg_type": "img"}})
    assert api.delete(message_url(sent["id"]), headers=alice.headers).status == 204
    shown = history(api, bob, alice)[0]
    assert shown["msg"] == ""
    assert shown["msg_type"] == "img"
    assert shown["recalled"] is True
    exported = api.get(f"/api/users/{bob.id}/export", headers=bob.headers)
    assert exported.status == 200, exported.text
    assert url not in exported.text
    assert "a caption" not in exported.text
    assert url not in str(events_of(api, bob))


# Recall: groups


def test_a_member_recalls_their_own_group_message_within_the_window(api: Api, sync_db: Db) -> None:
    group_id, lord, _, member, other = group_with_roles(api)
    mine = group_message(api, group_id, member, "mine")
    theirs = group_message(api, group_id, other, "theirs")
    assert api.delete(message_url(theirs["id"], group_id), headers=member.headers).status == 403
    assert api.delete(message_url(mine["id"], group_id), headers=member.headers).status == 204
    shown = {m["id"]: m for m in group_history(api, group_id, lord)}
    assert shown[mine["id"]]["recalled"] is True
    assert shown[mine["id"]]["msg"] == ""
    assert shown[theirs["id"]]["recalled"] is False
    late = group_message(api, group_id, member, "late")
    age(sync_db, "group_messages", late["id"], 121)
    assert api.delete(message_url(late["id"], group_id), headers=member.headers).status == 422


def test_the_lord_and_admins_recall_any_message_at_any_time(api: Api, sync_db: Db) -> None:
    group_id, lord, admin, member, other = group_with_roles(api)
    by_member = group_message(api, group_id, member, "rude")
    by_lord = group_message(api, group_id, lord, "lord's")
    age(sync_db, "group_messages", by_member["id"], 7 * 86400)
    age(sync_db, "group_messages", by_lord["id"], 7 * 86400)
    assert api.delete(message_url(by_member["id"], group_id), headers=admin.headers).status == 204
    assert api.delete(message_url(by_lord["id"], group_id), headers=admin.headers).status == 204
    assert all(m["recalled"] for m in group_history(api, group_id, other))
    again = group_message(api, group_id, other, "x")
    assert api.delete(message_url(again["id"], group_id), headers=lord.headers).status == 204
    assert conversation(api, member, "group", group_id)["last_message"]["recalled"] is True


def test_a_group_message_is_named_by_its_own_group_only(api: Api) -> None:
    group_id, lord, _, member, _ = group_with_roles(api)
    other_group = create_group(api, lord)
    sent = group_message(api, group_id, member)
    assert_error(api.delete(message_url(sent["id"], other_group), headers=lord.headers), 404, "Message not found")
    assert api.patch(message_url(sent["id"], other_group), json={"msg": "x"}, headers=lord.headers).status == 404
    assert api.delete(message_url(str(ObjectId()), group_id), headers=lord.headers).status == 404


def test_a_non_member_cannot_recall_in_a_group(api: Api) -> None:
    group_id, _, _, member, _ = group_with_roles(api)
    stranger = create_user(api)
    sent = group_message(api, group_id, member)
    assert api.delete(message_url(sent["id"], group_id), headers=stranger.headers).status == 403


def test_a_group_recall_event_names_the_group(api: Api) -> None:
    group_id, lord, _, member, other = group_with_roles(api)
    sent = group_message(api, group_id, member)
    assert api.delete(message_url(sent["id"], group_id), headers=lord.headers).status == 204
    for viewer in (lord, member, other):
        [recalled] = [e for e in events_of(api, viewer) if e["type"] == "message_recalled"]
        assert recalled["message_id"] == sent["id"]
        assert recalled["conversation"] == {"type": "group", "id": group_id}


# Edit


def test_the_sender_edits_a_text_message_and_everyone_sees_the_new_text(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "helo")
    edited = api.patch(message_url(sent["id"]), json={"msg": "hello"}, headers=alice.headers)
    assert edited.status == 200, edited.text
    assert edited.json["msg"] == "hello"
    assert edited.json["edited_at"] is not None
    assert edited.json["id"] == sent["id"]
    shown = history(api, bob, alice)[0]
    assert shown["msg"] == "hello"
    assert shown["edited_at"] == edited.json["edited_at"]
    assert conversation(api, bob, "user", alice.id)["last_message"]["msg"] == "hello"
    [event] = [e for e in events_of(api, bob) if e["type"] == "message_edited"]
    assert event["message"]["msg"] == "hello"
    assert event["conversation"] == {"type": "user", "id": alice.id}
    assert "_reactors" not in event["message"]


def test_only_the_sender_may_edit(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "mine")
    assert_error(
        api.patch(message_url(sent["id"]), json={"msg": "theirs"}, headers=bob.headers),
        403,
        "Only its sender may edit a message",
    )
    group_id, lord, admin, member, _ = group_with_roles(api)
    in_group = group_message(api, group_id, member)
    for someone in (lord, admin):
        assert (
            api.patch(message_url(in_group["id"], group_id), json={"msg": "x"}, headers=someone.headers).status == 403
        )
    edited = api.patch(message_url(in_group["id"], group_id), json={"msg": "better"}, headers=member.headers)
    assert edited.status == 200
    assert edited.json["msg"] == "better"
    assert edited.json["group_id"] == group_id


def test_editing_after_the_window_a_recalled_or_a_file_message_is_refused(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    old = direct_message(api, alice, bob, "old")
    age(sync_db, "user_messages", old["id"], 24 * 3600 + 5)
    assert_error(
        api.patch(message_url(old["id"]), json={"msg": "new"}, headers=alice.headers),
        422,
        "A message can only be edited within 86400 seconds of sending it",
    )
    recalled = direct_message(api, alice, bob, "gone")
    assert api.delete(message_url(recalled["id"]), headers=alice.headers).status == 204
    assert_error(
        api.patch(message_url(recalled["id"]), json={"msg": "back"}, headers=alice.headers),
        422,
        "A recalled message cannot be edited",
    )
    picture = direct_message(api, alice, bob, "pic")
    sync_db.user_messages.update_one({"_id": ObjectId(picture["id"])}, {"$set": {"msg_type": "img"}})
    assert_error(
        api.patch(message_url(picture["id"]), json={"msg": "x"}, headers=alice.headers),
        422,
        "Only text messages can be edited",
    )


@pytest.mark.parametrize("body", [{}, {"msg": ""}, {"msg": "x" * 4001}, {"msg": 3}, {"msg": "a", "extra": 1}])
def test_an_invalid_edit_body_is_400(api: Api, body: dict[str, Any]) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob)
    assert api.patch(message_url(sent["id"]), json=body, headers=alice.headers).status == 400


def test_the_same_edit_twice_changes_nothing_and_announces_once(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "a")
    first = api.patch(message_url(sent["id"]), json={"msg": "b"}, headers=alice.headers)
    again = api.patch(message_url(sent["id"]), json={"msg": "b"}, headers=alice.headers)
    assert first.status == again.status == 200
    assert first.json == again.json
    assert len([e for e in events_of(api, bob) if e["type"] == "message_edited"]) == 1
    unchanged = api.patch(message_url(sent["id"]), json={"msg": "b"}, headers=alice.headers)
    assert unchanged.json["edited_at"] == first.json["edited_at"]


def test_an_edit_cut_short_before_its_event_is_announced_by_its_retry(api: Api, sync_db: Db) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "a")
    changes = {"msg": "b", "edited_at": utc_now(), "edit_seq": None, "version": 1}
    sync_db.user_messages.update_one({"_id": ObjectId(sent["id"])}, {"$set": changes})
    assert api.patch(message_url(sent["id"]), json={"msg": "b"}, headers=alice.headers).status == 200
    [event] = [e for e in events_of(api, bob) if e["type"] == "message_edited"]
    assert event["message"]["msg"] == "b"
    assert api.patch(message_url(sent["id"]), json={"msg": "b"}, headers=alice.headers).status == 200
    assert len([e for e in events_of(api, bob) if e["type"] == "message_edited"]) == 1


def test_editing_a_message_that_was_never_changed_to_its_own_text_changes_nothing(api: Api) -> None:
    alice, bob = new_friends(api)
    sent = direct_message(api, alice, bob, "same")
    answer = api.patch(message_url(sent["id"]), json={"msg": "same"}, headers=alice.headers)
    assert answer.status == 200
    assert answer.json["edited_at"] is None
    assert not [e for e in events_of(api, bob) if e["type"] == "message_edited"]


def test_windows_come_from_the_settings(other_app: OtherApp) -> None:
    """RECALL_WINDOW and EDIT_WINDOW are settings: an app built with 1-second windows refuses both after it."""
    with other_app(recall_window=1, edit_window=1) as client:
        api = Api(client)
        alice, bob = new_friends(api)
        recalled = direct_message(api, alice, bob, "quick")
        late = direct_message(api, alice, bob, "slow")
        assert api.delete(message_url(recalled["id"]), headers=alice.headers).status == 204
        time.sleep(1.2)  # the windows pass: what is under test is the setting, not the clock
        assert api.delete(message_url(late["id"]), headers=alice.headers).status == 422
        assert_error(
            api.patch(message_url(late["id"]), json={"msg": "x"}, headers=alice.headers),
            422,
            "A message can only be edited within 1 seconds of sending it",
        )


def test_the_export_shows_messages_as_they_are_now(api: Api) -> None:
    alice, bob = new_friends(api)
    edited = direct_message(api, alice, bob, "draft")
    recalled = direct_message(api, alice, bob, "private")
    assert api.patch(message_url(edited["id"]), json={"msg": "final"}, headers=alice.headers).status == 200
    assert api.delete(message_url(recalled["id"]), headers=alice.headers).status == 204
    assert api.put(reaction_url(edited["id"], "👍"), headers=bob.headers).status == 204
    exported = api.get(f"/api/users/{alice.id}/export", headers=alice.headers)
    assert exported.status == 200, exported.text
    messages = {m["id"]: m for m in exported.json["messages"]}
    assert messages[edited["id"]]["msg"] == "final"
    assert messages[edited["id"]]["edited_at"] is not None
    assert messages[edited["id"]]["reactions"] == [{"emoji": "👍", "count": 1, "me": False}]
    assert messages[recalled["id"]]["recalled"] is True
    assert messages[recalled["id"]]["msg"] == ""
    assert "private" not in exported.text
    assert "draft" not in exported.text


# Live and on resume


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_recall_and_edit_reach_the_other_participants_socket_live(api: Api) -> None:
    alice, bob = new_friends(api)
    base = f"http://{api.client.host}:{api.client.port}"

    async def scenario() -> list[dict[str, Any]]:
        ws, _ = await open_socket(ws_url(api), bob)
        async with httpx.AsyncClient(base_url=base) as http:
            sent = await http.post("/api/user-message", json={"to_id": bob.id, "msg": "v1"}, headers=alice.headers)
            message_id = sent.json()["message"]["id"]
            edit = await http.patch(message_url(message_id), json={"msg": "v2"}, headers=alice.headers)
            assert edit.status_code == 200
            assert (await http.delete(message_url(message_id), headers=alice.headers)).status_code == 204
        frames = await frames_until(ws, lambda got: len(got) == 3)
        await no_frame(ws)
        await ws.close()
        return frames

    message, edited, recalled = run(api, scenario())
    assert message["type"] == "message"
    assert message["message"]["msg"] == "v1"
    assert edited["type"] == "message_edited"
    assert edited["message"]["msg"] == "v2"
    assert edited["conversation"] == {"type": "user", "id": alice.id}
    assert recalled == {
        "type": "message_recalled",
        "seq": recalled["seq"],
        "message_id": message["message"]["id"],
        "conversation": {"type": "user", "id": alice.id},
    }


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_a_resume_replays_each_message_as_it_is_now(api: Api) -> None:
    """Bob was away while Alice sent, edited and recalled: the replayed `message` frames show the edited text and
    the recall, the `message_edited` frame the message as it is now, each with Bob's own `me`."""
    alice, bob = new_friends(api)

    async def away() -> int:
        ws, ready = await open_socket(ws_url(api), bob)
        await ws.close()
        return int(ready["seq"])

    last_seq = run(api, away())
    kept = direct_message(api, alice, bob, "draft")
    gone = direct_message(api, alice, bob, "secret")
    assert api.patch(message_url(kept["id"]), json={"msg": "final"}, headers=alice.headers).status == 200
    assert api.put(reaction_url(kept["id"], "🎉"), headers=bob.headers).status == 204
    assert api.delete(message_url(gone["id"]), headers=alice.headers).status == 204

    async def back() -> list[dict[str, Any]]:
        ws, _ = await open_socket(ws_url(api), bob, last_seq=last_seq)
        frames = [await next_frame(ws) for _ in range(5)]
        await no_frame(ws)
        await ws.close()
        return frames

    frames = run(api, back())
    assert [f["type"] for f in frames] == ["message", "message", "message_edited", "reaction", "message_recalled"]
    first, second, edited = frames[0]["message"], frames[1]["message"], frames[2]["message"]
    assert first["msg"] == "final"
    assert first["edited_at"] is not None
    assert first["seq"] is None
    assert first["reactions"] == [{"emoji": "🎉", "count": 1, "me": True}]
    assert second["recalled"] is True
    assert second["msg"] == ""
    assert edited["msg"] == "final"
    assert edited["reactions"] == [{"emoji": "🎉", "count": 1, "me": True}]
    assert "secret" not in str(frames)
    assert "draft" not in str(frames)
    # GET /api/events shows the same, for Alice with her own `me`.
    listed = [e for e in events_of(api, alice) if e["type"] in {"message", "message_edited"}]
    assert listed[0]["message"]["reactions"] == [{"emoji": "🎉", "count": 1, "me": False}]


@pytest.mark.usefixtures(fresh_hub.__name__)
def test_a_group_recall_reaches_every_members_socket_live(api: Api) -> None:
    group_id, lord, admin, member, other = group_with_roles(api)
    sent = group_message(api, group_id, member, "rude")

    async def scenario() -> list[dict[str, Any]]:
        sockets = [(await open_socket(ws_url(api), user))[0] for user in (lord, member, other)]
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            answer = await http.delete(message_url(sent["id"], group_id), headers=admin.headers)
            assert answer.status_code == 204
        frames = [await next_frame(ws) for ws in sockets]
        for ws in sockets:
            await ws.close()
        return frames

    for frame in run(api, scenario()):
        assert frame["type"] == "message_recalled"
        assert frame["message_id"] == sent["id"]
        assert frame["conversation"] == {"type": "group", "id": group_id}


def test_send_direct_still_answers_the_message_shape(api: Api) -> None:
    alice, bob = new_friends(api)
    answer = send_direct(api, alice, bob, "hi")
    assert answer.status == 201
    message = answer.json["message"]
    assert message["recalled"] is False
    assert message["edited_at"] is None
    assert message["reply_to"] is None
    assert message["reactions"] == []
