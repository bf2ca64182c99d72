"""Direct messages: POST /api/user-message and GET /api/user-message/<from_id>/<to_id>."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from bson import ObjectId
from gridfs import GridFSBucket
from pymongo import DESCENDING
from pymongo.database import Database

from chat_api.common.clock import utc_now
from chat_api.friends.models import new_direct_conversation_doc, pair_key
from chat_api.messages.models import new_message_doc
from chat_api.messages.repository import direct_messages
from tests.factories import (
    INVALID_MESSAGE_BODIES,
    TestUser,
    create_user,
    insert_direct_messages,
    make_friends,
    send_direct,
)
from tests.helpers import Api

UNKNOWN_ID = "0123456789abcdef01234567"
Db = Database[dict[str, Any]]


def history(api: Api, reader: TestUser, a: str, b: str, query: str = "") -> Any:
    return api.get(f"/api/user-message/{a}/{b}{query}", headers=reader.headers)


@pytest.fixture
def pair(api: Api) -> tuple[TestUser, TestUser]:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    return a, b


def upload(sync_db: Db) -> str:
    file_id = GridFSBucket(sync_db).upload_from_stream("x.png", io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"0" * 100))
    return f"/api/files/{file_id}"


def message_events(sync_db: Db) -> list[dict[str, Any]]:
    return list(sync_db.events.find({"type": "message"}).sort("seq", 1))


def unread(api: Api, reader: TestUser, friend: TestUser) -> int:
    """The reader's unread count of the conversation with `friend`, as GET /api/conversations shows it."""
    listed = api.get("/api/conversations", headers=reader.headers).json
    [count] = [c["unread"] for c in listed if (c["type"], c["id"]) == ("user", friend.id)]
    return int(count)


def test_send_to_friend_is_201_and_published_to_both(api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    response = send_direct(api, a, b, "hi there", client_msg_id="c-1")
    assert response.status == 201
    message = response.json["message"]
    assert response.json["user_message_id"] == message["id"]
    assert message["from_id"] == a.id
    assert message["to_id"] == b.id
    assert message["msg"] == "hi there"
    assert message["msg_type"] == "txt"
    assert message["client_msg_id"] == "c-1"
    [event] = message_events(sync_db)
    assert message["seq"] == event["seq"]
    assert sorted(event["to"]) == sorted([a.id, b.id])
    assert event["data"]["message"] == {**message, "seq": None}
    stored = sync_db.user_messages.find_one({"_id": ObjectId(message["id"])})
    assert stored is not None
    assert stored["seq"] == event["seq"]
    assert stored["key"] == message["id"]


def test_send_updates_both_conversations_and_the_recipients_unread(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    send_direct(api, a, b, "one")
    last = send_direct(api, a, b, "two").json["message"]
    mine = sync_db.friendships.find_one({"owner_id": a.id})
    theirs = sync_db.friendships.find_one({"owner_id": b.id})
    assert mine is not None
    assert theirs is not None
    assert mine["last_message"]["id"] == theirs["last_message"]["id"] == last["id"]
    assert mine["message_n"] == theirs["message_n"] == 2
    assert mine["last_message"]["msg"] == theirs["last_message"]["msg"] == "two"
    assert set(mine["last_message"]) == {"id", "from_id", "msg", "msg_type", "created_at"}
    assert (unread(api, a, b), unread(api, b, a)) == (0, 2)
    assert [m["n"] for m in sync_db.user_messages.find().sort("n", 1)] == [1, 2]


def test_send_to_non_friend_is_forbidden(api: Api, sync_db: Db) -> None:
    a, stranger = create_user(api), create_user(api)
    response = send_direct(api, a, stranger)
    assert response.status == 403
    assert response.json == {"message": "You can only send messages to your friends"}
    assert sync_db.user_messages.count_documents({}) == 0


def test_send_after_unfriending_is_forbidden(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    assert api.delete(f"/api/friends/{b.id}", headers=a.headers).status == 204
    assert send_direct(api, b, a).status == 403


@pytest.mark.parametrize("to_id", [UNKNOWN_ID, "nope", ""])
def test_send_to_unknown_user_is_404(api: Api, to_id: str) -> None:
    a = create_user(api)
    response = send_direct(api, a, to_id)
    assert response.status == 404
    assert response.json == {"message": "User not found"}


def test_send_to_yourself_is_400(api: Api) -> None:
    a = create_user(api)
    assert send_direct(api, a, a).status == 400


@pytest.mark.parametrize("body", [*INVALID_MESSAGE_BODIES, {"msg": None}, {"msg": "hi", "unknown": 1}])
def test_invalid_message_is_400(api: Api, sync_db: Db, pair: tuple[TestUser, TestUser], body: dict[str, Any]) -> None:
    a, b = pair
    response = api.post("/api/user-message", json={"to_id": b.id, **body}, headers=a.headers)
    assert response.status == 400
    assert "message" in response.json
    assert sync_db.user_messages.count_documents({}) == 0


def test_message_of_4000_characters_is_accepted(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    assert send_direct(api, a, b, "é" * 4000).status == 201


@pytest.mark.parametrize("msg_type", ["img", "voice"])
def test_img_and_voice_messages_carry_an_uploaded_file(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser], msg_type: str
) -> None:
    a, b = pair
    url = upload(sync_db)
    response = send_direct(api, a, b, url, msg_type=msg_type)
    assert response.status == 201
    assert response.json["message"]["msg"] == url
    assert response.json["message"]["msg_type"] == msg_type


@pytest.mark.parametrize(
    "msg",
    [
        "hello",
        f"/api/files/{UNKNOWN_ID}",
        "/api/files/not-hex",
        "https://elsewhere.example/api/files/0123456789abcdef01234567",
        "/api/files/0123456789abcdef01234567/../x",
    ],
)
def test_img_without_an_uploaded_file_is_400(api: Api, pair: tuple[TestUser, TestUser], msg: str) -> None:
    a, b = pair
    response = send_direct(api, a, b, msg, msg_type="img")
    assert response.status == 400
    assert "/api/files/" in response.json["message"]


def test_retry_with_the_same_client_msg_id_answers_the_original(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    first = send_direct(api, a, b, "once", client_msg_id="abc")
    retry = send_direct(api, a, b, "once", client_msg_id="abc")
    assert first.status == 201
    assert retry.status == 200
    assert retry.json == first.json
    assert sync_db.user_messages.count_documents({}) == 1
    assert len(message_events(sync_db)) == 1
    assert unread(api, b, a) == 1
    # The retry kept its original's number; the number it took stays unused (a hole).
    assert sync_db.user_messages.find_one({}, {"n": 1})["n"] == 1  # type: ignore[index]
    assert send_direct(api, a, b, "next").json["message"]["id"] == history(api, a, a.id, b.id).json[0]["id"]
    assert unread(api, b, a) == 2


def test_retry_after_a_crash_before_publishing_publishes_it(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    oid = stored_undelivered(sync_db, a, b, "retry-1", deliver_by_ms=int(time.time() * 1000) - 10_000)
    retry = send_direct(api, a, b, "lost?", client_msg_id="retry-1")
    assert retry.status == 200
    assert retry.json["user_message_id"] == str(oid)
    [event] = message_events(sync_db)
    assert event["data"]["message"]["id"] == str(oid)
    assert retry.json["message"]["seq"] == event["seq"]
    stored = sync_db.user_messages.find_one({"_id": oid})
    assert stored is not None
    assert stored["seq"] == event["seq"]
    theirs = sync_db.friendships.find_one({"owner_id": b.id})
    assert theirs is not None
    assert theirs["last_message"]["id"] == str(oid)
    assert unread(api, b, a) == 1
    assert send_direct(api, a, b, "lost?", client_msg_id="retry-1").status == 200
    assert len(message_events(sync_db)) == 1


def test_same_client_msg_id_from_the_other_sender_is_a_new_message(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    assert send_direct(api, a, b, "x", client_msg_id="same").status == 201
    assert send_direct(api, b, a, "x", client_msg_id="same").status == 201
    assert sync_db.user_messages.count_documents({}) == 2


def test_client_msg_id_reused_for_another_message_is_422(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    assert send_direct(api, a, b, "first", client_msg_id="k").status == 201
    response = send_direct(api, a, b, "second", client_msg_id="k")
    assert response.status == 422
    assert "client_msg_id" in response.json["message"]


def test_concurrent_retries_store_one_message(api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    body = {"to_id": b.id, "msg": "tap tap", "client_msg_id": "double-tap"}
    responses = api.concurrently([("post", "/api/user-message", {"json": body, "headers": a.headers})] * 5)
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["user_message_id"] for r in responses}) == 1
    assert sync_db.user_messages.count_documents({}) == 1
    assert len(message_events(sync_db)) == 1
    assert unread(api, b, a) == 1


def stored_undelivered(sync_db: Db, a: TestUser, b: TestUser, client_msg_id: str, deliver_by_ms: int) -> ObjectId:
    """What a first attempt that died right after storing the message leaves behind (number 1)."""
    [doc] = insert_direct_messages(sync_db, a, b, msg="lost?", client_msg_id=client_msg_id, deliver_by_ms=deliver_by_ms)
    oid: ObjectId = doc["_id"]
    return oid


def test_retry_while_the_first_attempt_may_still_deliver_does_not_publish(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    lease = int(time.time() * 1000) + 60_000
    oid = stored_undelivered(sync_db, a, b, "in-flight", deliver_by_ms=lease)
    retry = send_direct(api, a, b, "lost?", client_msg_id="in-flight")
    assert retry.status == 200
    assert retry.json["user_message_id"] == str(oid)
    assert retry.json["message"]["seq"] is None
    assert message_events(sync_db) == []


def test_concurrent_retries_after_the_lease_deliver_once(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    stored_undelivered(sync_db, a, b, "late", deliver_by_ms=int(time.time() * 1000) - 1)
    body = {"to_id": b.id, "msg": "lost?", "client_msg_id": "late"}
    responses = api.concurrently([("post", "/api/user-message", {"json": body, "headers": a.headers})] * 5)
    assert [r.status_code for r in responses] == [200] * 5
    assert len(message_events(sync_db)) == 1


def test_messages_without_client_msg_id_are_never_merged(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    assert [send_direct(api, a, b, "same").status for _ in range(3)] == [201, 201, 201]
    assert sync_db.user_messages.count_documents({}) == 3


def test_history_is_newest_first_for_both_participants(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    sent = [
        send_direct(api, sender, receiver, f"m{i}").json["message"]
        for i, (sender, receiver) in enumerate([(a, b), (b, a)] * 3)
    ]
    for reader in (a, b):
        for first, second in ((a.id, b.id), (b.id, a.id)):
            response = history(api, reader, first, second)
            assert response.status == 200
            assert response.json == sent[::-1]


def test_history_pages_with_before_and_limit(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    ids = [send_direct(api, a, b, f"m{i}").json["user_message_id"] for i in range(5)]
    first = history(api, a, a.id, b.id, "?limit=2").json
    assert [m["id"] for m in first] == [ids[4], ids[3]]
    second = history(api, a, a.id, b.id, f"?limit=2&before={first[-1]['id']}").json
    assert [m["id"] for m in second] == [ids[2], ids[1]]
    rest = history(api, a, a.id, b.id, f"?before={second[-1]['id'].upper()}").json
    assert [m["id"] for m in rest] == [ids[0]]
    assert history(api, a, a.id, b.id, f"?before={ids[0]}").json == []


def test_history_shows_only_the_two_participants_messages(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    c = create_user(api)
    make_friends(api, a, c)
    send_direct(api, a, c, "to c")
    mine = send_direct(api, a, b, "to b").json["message"]
    assert history(api, b, b.id, a.id).json == [mine]


def test_history_by_a_non_participant_is_forbidden(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    send_direct(api, a, b)
    outsider = create_user(api)
    response = history(api, outsider, a.id, b.id)
    assert response.status == 403
    assert response.json == {"message": "Only the two participants may read a conversation"}


def test_history_stays_readable_after_unfriending(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    message = send_direct(api, a, b).json["message"]
    api.delete(f"/api/friends/{b.id}", headers=a.headers)
    assert history(api, b, a.id, b.id).json == [message]


@pytest.mark.parametrize("other", ["nope", "0123456789abcdef0123456", UNKNOWN_ID])
def test_history_with_unknown_or_malformed_user_is_404(api: Api, other: str) -> None:
    a = create_user(api)
    assert history(api, a, a.id, other).status == 404
    assert history(api, a, other, a.id).status == 404


def test_history_with_yourself_is_400(api: Api) -> None:
    a = create_user(api)
    assert history(api, a, a.id, a.id).status == 400


@pytest.mark.parametrize("query", ["?limit=0", "?limit=201", "?limit=x", "?before=nope", "?before=", "?limit="])
def test_history_bad_cursor_is_400(api: Api, pair: tuple[TestUser, TestUser], query: str) -> None:
    a, b = pair
    response = history(api, a, a.id, b.id, query)
    assert response.status == 400
    assert response.json["errors"][0]["field"].startswith("query.")


def test_message_routes_need_a_token(api: Api) -> None:
    assert api.post("/api/user-message", json={"to_id": UNKNOWN_ID, "msg": "x"}).status == 401
    assert api.get(f"/api/user-message/{UNKNOWN_ID}/{UNKNOWN_ID}").status == 401


def winning_plan(explained: dict[str, Any]) -> str:
    # nx-27017 answers SQLite's plan lines; MongoDB a tree of stages (IXSCAN / COLLSCAN).
    return str(explained["queryPlanner"]["winningPlan"])


@pytest.mark.parametrize("before_n", [None, 7])
def test_history_query_is_served_by_the_pair_number_index(sync_db: Db, before_n: int | None) -> None:
    sync_db.user_messages.insert_one(
        new_message_doc({"pair": "a:b", "to_id": "b"}, "a", "hi", n=1, created_at=utc_now())
    )
    query = direct_messages.page_filter("a:b", before_n)
    plan = winning_plan(sync_db.user_messages.find(query).sort("n", DESCENDING).limit(50).explain())
    assert "USING INDEX idx_user_messages_pair_n" in plan or "IXSCAN" in plan, plan
    assert "COLLSCAN" not in plan
    # The check can fail: the plain-equality form scans the table on nx-27017.
    if "USING INDEX" in plan:
        scan = winning_plan(sync_db.user_messages.find({"pair": "a:b"}).sort("n", DESCENDING).explain())
        assert "USING INDEX" not in scan
    # The unread count's range (the `before` lookup is by `_id`, which nx-27017's explain cannot show).
    plan = winning_plan(sync_db.user_messages.find(direct_messages.unread_filter("a:b", 3, "a")).explain())
    assert "USING INDEX" in plan or "IXSCAN" in plan, plan


def test_history_of_10000_messages_pages_without_gaps_or_duplicates(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    conversation = pair_key(a.id, b.id)
    now = utc_now()
    sides = [(a.id, b.id) if i % 2 else (b.id, a.id) for i in range(9_990)]
    docs = [
        new_message_doc({"pair": conversation, "to_id": to_id}, from_id, f"bulk {i}", n=i + 1, created_at=now)
        for i, (from_id, to_id) in enumerate(sides)
    ]
    sync_db.user_messages.insert_many(docs)
    sync_db.direct_conversations.insert_one(new_direct_conversation_doc(conversation, len(docs)))
    sent = [send_direct(api, a, b, f"live {i}").json["user_message_id"] for i in range(10)]
    # Newest first by number: the ids' own order (their seconds) plays no part.
    expected = sent[::-1] + [str(doc["_id"]) for doc in reversed(docs)]
    seen: list[str] = []
    query = "?limit=200"
    while True:
        page = history(api, a, a.id, b.id, query)
        assert page.status == 200
        if not page.json:
            break
        assert len(page.json) == 200
        seen.extend(m["id"] for m in page.json)
        query = f"?limit=200&before={page.json[-1]['id']}"
    assert len(seen) == 10_000
    assert seen == expected


def test_send_changes_only_this_pairs_conversations(api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]) -> None:
    # nx-27017 once matched other pairs' documents for a `$or` beside the pair's condition.
    a, b = pair
    c = create_user(api)
    make_friends(api, a, c)
    to_c = send_direct(api, a, c, "to c").json["message"]
    send_direct(api, a, b, "to b")
    for owner, friend in ((a, c), (c, a)):
        side = sync_db.friendships.find_one({"owner_id": owner.id, "friend_id": friend.id})
        assert side is not None
        assert side["last_message"]["id"] == to_c["id"]
        assert side["last_message"]["msg"] == "to c"


def test_ids_in_upper_case_name_the_same_conversation(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    message = send_direct(api, a, b.id.upper(), "upper").json["message"]
    assert message["to_id"] == b.id
    assert history(api, b, a.id.upper(), b.id.upper()).json == [message]
    assert api.put(f"/api/conversations/user/{a.id.upper()}/read", headers=b.headers).status == 204


def test_before_must_be_a_message_of_this_conversation(api: Api, pair: tuple[TestUser, TestUser]) -> None:
    a, b = pair
    c = create_user(api)
    make_friends(api, a, c)
    elsewhere = send_direct(api, a, c, "to c").json["message"]["id"]
    first = send_direct(api, a, b, "one").json["message"]["id"]
    second = send_direct(api, a, b, "two").json["message"]["id"]
    assert [m["id"] for m in history(api, a, a.id, b.id, f"?before={second}").json] == [first]
    assert history(api, a, a.id, b.id, f"?before={first}").json == []
    for before in (elsewhere, UNKNOWN_ID):
        response = history(api, a, a.id, b.id, f"?before={before}")
        assert response.status == 400
        assert response.json == {"message": "`before` must be the id of a message of this conversation"}


def test_numbering_continues_after_unfriending_and_befriending_again(
    api: Api, sync_db: Db, pair: tuple[TestUser, TestUser]
) -> None:
    a, b = pair
    send_direct(api, a, b, "one")
    send_direct(api, b, a, "two")
    assert api.delete(f"/api/friends/{b.id}", headers=a.headers).status == 204
    make_friends(api, a, b)
    # What was said before counts as read; the next message is number 3.
    third = send_direct(api, b, a, "three").json["message"]["id"]
    assert unread(api, a, b) == 1
    stored = sync_db.user_messages.find_one({"key": third}, {"n": 1})
    assert stored is not None
    assert stored["n"] == 3
    assert [m["msg"] for m in history(api, a, a.id, b.id).json] == ["three", "two", "one"]
