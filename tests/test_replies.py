"""Replies (`reply_to`) in direct and group messages over real HTTP (issue 13): only to a message of the same
conversation, shown everywhere as a preview of the original as it is now."""

from __future__ import annotations

from typing import Any

import pytest
from bson import ObjectId

from tests.factories import (
    create_group,
    create_user,
    direct_message,
    events_of,
    message_url,
    new_friends,
    send_direct,
    send_group,
)
from tests.helpers import Api, assert_error

REPLY_ERROR = "`reply_to` must be the id of a message of this conversation"


def test_a_reply_shows_a_preview_of_the_original(api: Api) -> None:
    alice, bob = new_friends(api)
    original = direct_message(api, alice, bob, "lunch?")
    sent = send_direct(api, bob, alice, "yes!", reply_to=original["id"])
    assert sent.status == 201, sent.text
    preview = {"id": original["id"], "from_id": alice.id, "msg_type": "txt", "msg": "lunch?", "recalled": False}
    assert sent.json["message"]["reply_to"] == preview
    history = api.get(f"/api/user-message/{alice.id}/{bob.id}", headers=alice.headers).json
    assert history[0]["reply_to"] == preview
    assert history[1]["reply_to"] is None
    [event] = [e for e in events_of(api, alice) if e["type"] == "message" and e["message"]["msg"] == "yes!"]
    assert event["message"]["reply_to"] == preview


def test_a_preview_is_cut_at_100_characters(api: Api) -> None:
    alice, bob = new_friends(api)
    original = direct_message(api, alice, bob, "é" * 150)
    sent = send_direct(api, bob, alice, "ok", reply_to=original["id"])
    assert sent.json["message"]["reply_to"]["msg"] == "é" * 100


def test_a_preview_follows_later_edits_and_recalls_of_the_original(api: Api) -> None:
    alice, bob = new_friends(api)
    original = direct_message(api, alice, bob, "draft")
    reply = send_direct(api, bob, alice, "nice", reply_to=original["id"]).json["message"]
    assert api.patch(message_url(original["id"]), json={"msg": "final"}, headers=alice.headers).status == 200

    def preview() -> dict[str, Any]:
        history = api.get(f"/api/user-message/{bob.id}/{alice.id}", headers=bob.headers).json
        shown: dict[str, Any] = next(m for m in history if m["id"] == reply["id"])["reply_to"]
        return shown

    assert preview()["msg"] == "final"
    replayed = next(e for e in events_of(api, bob) if e["type"] == "message" and e["message"]["id"] == reply["id"])
    assert replayed["message"]["reply_to"]["msg"] == "final"
    assert api.delete(message_url(original["id"]), headers=alice.headers).status == 204
    assert preview() == {"id": original["id"], "from_id": alice.id, "msg_type": "txt", "msg": "", "recalled": True}
    exported = api.get(f"/api/users/{bob.id}/export", headers=bob.headers).json
    shown = next(m for m in exported["messages"] if m["id"] == reply["id"])
    assert shown["reply_to"]["recalled"] is True
    assert shown["reply_to"]["msg"] == ""


def test_a_reply_to_another_conversation_or_an_unknown_message_is_400(api: Api) -> None:
    alice, bob = new_friends(api)
    carol, dave = new_friends(api)
    elsewhere = direct_message(api, carol, dave, "not yours")
    for reply_to in (elsewhere["id"], str(ObjectId())):
        assert_error(send_direct(api, alice, bob, "hm", reply_to=reply_to), 400, REPLY_ERROR)
    assert send_direct(api, alice, bob, "hm", reply_to="nope").status == 400
    assert not api.get(f"/api/user-message/{alice.id}/{bob.id}", headers=alice.headers).json


def test_replying_to_a_recalled_message_is_refused(api: Api) -> None:
    alice, bob = new_friends(api)
    original = direct_message(api, alice, bob, "oops")
    assert api.delete(message_url(original["id"]), headers=alice.headers).status == 204
    assert_error(
        send_direct(api, bob, alice, "what?", reply_to=original["id"]),
        422,
        "This message was recalled: it cannot be replied to",
    )


def test_a_retry_of_a_reply_finds_the_original_and_another_reply_to_is_a_conflict(api: Api) -> None:
    alice, bob = new_friends(api)
    first, second = direct_message(api, alice, bob, "a"), direct_message(api, alice, bob, "b")
    sent = send_direct(api, bob, alice, "re", reply_to=first["id"], client_msg_id="r1")
    again = send_direct(api, bob, alice, "re", reply_to=first["id"], client_msg_id="r1")
    assert (sent.status, again.status) == (201, 200)
    assert again.json["message"]["id"] == sent.json["message"]["id"]
    assert again.json["message"]["reply_to"]["id"] == first["id"]
    assert send_direct(api, bob, alice, "re", reply_to=second["id"], client_msg_id="r1").status == 422


def test_group_replies_stay_within_their_group(api: Api) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    other_group = create_group(api, lord)
    original = send_group(api, group_id, lord, "agenda").json
    foreign = send_group(api, other_group, lord, "elsewhere").json
    reply = send_group(api, group_id, member, "+1", reply_to=original["id"])
    assert reply.status == 201, reply.text
    assert reply.json["reply_to"] == {
        "id": original["id"],
        "from_id": lord.id,
        "msg_type": "txt",
        "msg": "agenda",
        "recalled": False,
    }
    assert_error(send_group(api, group_id, member, "?", reply_to=foreign["id"]), 400, REPLY_ERROR)
    listed = api.get(f"/api/groups/{group_id}/messages", headers=lord.headers).json
    assert listed[0]["reply_to"]["id"] == original["id"]
    [event] = [e for e in events_of(api, lord) if e["type"] == "group_message" and e["message"]["msg"] == "+1"]
    assert event["message"]["reply_to"]["msg"] == "agenda"


@pytest.mark.parametrize("who", ["stranger", "member"])
def test_a_non_members_reply_is_403_before_its_reply_to_is_looked_at(api: Api, who: str) -> None:
    lord, member, stranger = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    sender = stranger if who == "stranger" else member
    answer = send_group(api, group_id, sender, "x", reply_to=str(ObjectId()))
    assert answer.status == (403 if who == "stranger" else 400)
