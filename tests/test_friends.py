"""Friend requests (/api/user-requests) and friends (/api/friends)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo.database import Database

from chat_api.common.clock import utc_now
from chat_api.friends.models import new_friendship_docs
from tests.factories import TestUser, create_user, make_friends, request_friend
from tests.helpers import Api

UNKNOWN_ID = "0123456789abcdef01234567"


def answer(api: Api, user: TestUser, request_id: str, status: str) -> Any:
    return api.put(f"/api/user-requests/{request_id}", json={"status": status}, headers=user.headers)


def events(sync_db: Database[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
    return list(sync_db.events.find({"type": type_}).sort("seq", 1))


def friend_ids(api: Api, user: TestUser) -> list[str]:
    response = api.get("/api/friends", headers=user.headers)
    assert response.status == 200
    return [friend["id"] for friend in response.json]


def test_send_request_is_201_and_reaches_the_recipient(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    response = request_friend(api, a, b.id, "it's me")
    assert response.status == 201
    request_id = response.json["user_request_id"]
    assert set(response.json) == {"user_request_id"}
    [event] = events(sync_db, "friend_request")
    assert event["to"] == [b.id]
    assert event["data"]["request"] == {
        "user_request_id": request_id,
        "from_id": a.id,
        "to_id": b.id,
        "verify_data": "it's me",
        "status": "waiting",
        "created_at": event["data"]["request"]["created_at"],
        "answered_at": None,
    }


def test_verify_data_may_be_empty_or_left_out(api: Api) -> None:
    a, b, c = create_user(api), create_user(api), create_user(api)
    assert request_friend(api, a, b.id, "").status == 201
    assert api.post("/api/user-requests", json={"to_id": c.id}, headers=a.headers).status == 201


def test_request_to_yourself_is_400(api: Api) -> None:
    a = create_user(api)
    response = request_friend(api, a, a.id)
    assert response.status == 400
    assert "yourself" in response.json["message"]


@pytest.mark.parametrize("to_id", [UNKNOWN_ID, "not-an-id", "", "1"])
def test_request_to_unknown_or_malformed_user_is_404(api: Api, to_id: str) -> None:
    a = create_user(api)
    response = request_friend(api, a, to_id)
    assert response.status == 404
    assert response.json == {"message": "User not found"}


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"verify_data": "x"},
        {"to_id": 12, "verify_data": "x"},
        {"to_id": UNKNOWN_ID, "verify_data": "x" * 201},
        {"to_id": UNKNOWN_ID, "verify_data": None},
        {"to_id": UNKNOWN_ID, "verify_data": "x", "extra": 1},
    ],
)
def test_invalid_request_body_is_400(api: Api, body: dict[str, Any]) -> None:
    a = create_user(api)
    assert api.post("/api/user-requests", json=body, headers=a.headers).status == 400


def test_requests_need_a_token(api: Api) -> None:
    assert api.post("/api/user-requests", json={"to_id": UNKNOWN_ID}).status == 401
    assert api.get("/api/user-requests").status == 401
    assert api.put(f"/api/user-requests/{UNKNOWN_ID}", json={"status": "agree"}).status == 401
    assert api.get("/api/friends").status == 401
    assert api.delete(f"/api/friends/{UNKNOWN_ID}").status == 401


def test_second_request_while_one_waits_is_422_in_either_direction(api: Api) -> None:
    a, b = create_user(api), create_user(api)
    assert request_friend(api, a, b.id).status == 201
    again = request_friend(api, a, b.id)
    assert again.status == 422
    assert "waiting" in again.json["message"]
    assert request_friend(api, b, a.id).status == 422


def test_request_between_friends_is_422(api: Api) -> None:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    response = request_friend(api, b, a.id)
    assert response.status == 422
    assert "already friends" in response.json["message"]


def test_concurrent_requests_between_two_users_create_one(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    requests = [
        ("post", "/api/user-requests", {"json": {"to_id": to.id}, "headers": sender.headers})
        for sender, to in [(a, b), (b, a)] * 4
    ]
    statuses = sorted(r.status_code for r in api.concurrently(requests))
    assert statuses == [201] + [422] * 7
    assert sync_db.user_requests.count_documents({}) == 1


def test_list_shows_incoming_and_outgoing_waiting_requests_with_the_other_profile(api: Api) -> None:
    me, sender, target, stranger = (create_user(api) for _ in range(4))
    incoming = request_friend(api, sender, me.id, "from sender").json["user_request_id"]
    outgoing = request_friend(api, me, target.id, "to target").json["user_request_id"]
    request_friend(api, stranger, sender.id)  # not mine
    response = api.get("/api/user-requests", headers=me.headers)
    assert response.status == 200
    assert response.headers["x-total-count"] == "2"
    newest, oldest = response.json
    assert newest["user_request_id"] == outgoing
    assert newest["direction"] == "outgoing"
    assert newest["user"]["id"] == target.id
    assert newest["verify_data"] == "to target"
    assert oldest["user_request_id"] == incoming
    assert oldest["direction"] == "incoming"
    assert oldest["user"]["id"] == sender.id
    assert oldest["user"]["username"] == sender.username
    assert "password" not in oldest["user"]


def test_list_leaves_out_answered_requests(api: Api) -> None:
    me, a, b = create_user(api), create_user(api), create_user(api)
    agreed = request_friend(api, a, me.id).json["user_request_id"]
    refused = request_friend(api, b, me.id).json["user_request_id"]
    assert answer(api, me, agreed, "agree").status == 204
    assert answer(api, me, refused, "refuse").status == 204
    response = api.get("/api/user-requests", headers=me.headers)
    assert response.json == []
    assert response.headers["x-total-count"] == "0"


def test_list_pages_through_both_directions_newest_first(api: Api) -> None:
    me = create_user(api)
    others = [create_user(api) for _ in range(5)]
    ids = []
    for i, other in enumerate(others):
        sent = request_friend(api, other, me.id) if i % 2 else request_friend(api, me, other.id)
        ids.append(sent.json["user_request_id"])
    newest_first = ids[::-1]
    pages = [api.get(f"/api/user-requests?limit=2&offset={offset}", headers=me.headers) for offset in (0, 2, 4)]
    assert all(page.headers["x-total-count"] == "5" for page in pages)
    assert [r["user_request_id"] for page in pages for r in page.json] == newest_first


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=x", "limit=", "offset="])
def test_list_bad_paging_is_400(api: Api, query: str) -> None:
    me = create_user(api)
    assert api.get(f"/api/user-requests?{query}", headers=me.headers).status == 400
    assert api.get(f"/api/friends?{query}", headers=me.headers).status == 400


def test_agree_makes_both_friends_and_tells_both(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    assert answer(api, b, request_id, "agree").status == 204
    assert friend_ids(api, a) == [b.id]
    assert friend_ids(api, b) == [a.id]
    answered = events(sync_db, "friend_request")[-1]
    assert sorted(answered["to"]) == sorted([a.id, b.id])
    assert answered["data"]["request"]["status"] == "agree"
    assert answered["data"]["request"]["answered_at"] is not None
    stored = sync_db.user_requests.find_one({})
    assert stored is not None
    assert stored["pending_key"] == request_id


def test_refuse_makes_no_friends_and_allows_a_new_request(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    assert answer(api, b, request_id, "refuse").status == 204
    assert friend_ids(api, a) == []
    assert friend_ids(api, b) == []
    assert events(sync_db, "friend_request")[-1]["data"]["request"]["status"] == "refuse"
    assert request_friend(api, a, b.id).status == 201
    assert request_friend(api, b, a.id).status == 422


def test_only_the_recipient_may_answer(api: Api) -> None:
    a, b, c = create_user(api), create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    for user in (a, c):
        response = answer(api, user, request_id, "agree")
        assert response.status == 403
        assert "recipient" in response.json["message"]
    assert friend_ids(api, a) == []


def test_answering_twice_is_422(api: Api) -> None:
    a, b = create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    assert answer(api, b, request_id, "refuse").status == 204
    for status in ("agree", "refuse"):
        response = answer(api, b, request_id, status)
        assert response.status == 422
        assert "already answered" in response.json["message"]
    assert friend_ids(api, b) == []


def test_concurrent_answers_have_one_winner(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    path = f"/api/user-requests/{request_id}"
    requests = [("put", path, {"json": {"status": s}, "headers": b.headers}) for s in ["agree", "refuse"] * 3]
    responses = api.concurrently(requests)
    assert sorted(r.status_code for r in responses) == [204] + [422] * 5
    [winner] = [request for request, response in zip(requests, responses, strict=False) if response.status_code == 204]
    stored = sync_db.user_requests.find_one({})
    assert stored is not None
    assert stored["status"] == winner[2]["json"]["status"]
    friendships = sync_db.friendships.count_documents({})
    assert friendships == (2 if stored["status"] == "agree" else 0)
    assert len(events(sync_db, "friend_request")) == 2


@pytest.mark.parametrize("request_id", [UNKNOWN_ID, "nope"])
def test_answer_unknown_request_is_404(api: Api, request_id: str) -> None:
    b = create_user(api)
    assert answer(api, b, request_id, "agree").status == 404


@pytest.mark.parametrize("body", [{}, {"status": "waiting"}, {"status": "yes"}, {"status": "agree", "x": 1}])
def test_answer_with_invalid_status_is_400(api: Api, body: dict[str, Any]) -> None:
    a, b = create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    assert api.put(f"/api/user-requests/{request_id}", json=body, headers=b.headers).status == 400


def test_agree_keeps_friendships_that_already_exist(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    # A crash after the friendships were written but before the status: answering again completes it.
    a, b = create_user(api), create_user(api)
    request_id = request_friend(api, a, b.id).json["user_request_id"]
    sync_db.friendships.insert_one(new_friendship_docs(a.id, b.id, utc_now())[0])  # a's side only
    assert answer(api, b, request_id, "agree").status == 204
    assert sync_db.friendships.count_documents({}) == 2
    assert friend_ids(api, b) == [a.id]


def test_friends_list_pages_with_total_and_presence(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    me = create_user(api)
    friends = [create_user(api) for _ in range(3)]
    for friend in friends:
        make_friends(api, friend, me)
    # Logging in sets `online`; the flag is the stored presence, whatever set it.
    sync_db.users.update_one({"chat_id": friends[2].chat_id}, {"$set": {"flag": "offline"}})
    response = api.get("/api/friends?limit=2&offset=1", headers=me.headers)
    assert response.status == 200
    assert response.headers["x-total-count"] == "3"
    assert [f["id"] for f in response.json] == [friends[1].id, friends[2].id]
    assert [f["flag"] for f in response.json] == ["online", "offline"]
    assert set(response.json[0]) >= {"id", "username", "avatar", "flag"}
    assert "password" not in response.json[0]


def test_unfriend_removes_both_sides(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    assert api.delete(f"/api/friends/{a.id}", headers=b.headers).status == 204
    assert friend_ids(api, a) == []
    assert friend_ids(api, b) == []
    assert sync_db.friendships.count_documents({}) == 0
    assert request_friend(api, a, b.id).status == 201  # they may become friends again


@pytest.mark.parametrize("user_id", ["stranger", UNKNOWN_ID, "bad-id"])
def test_unfriend_a_non_friend_is_404(api: Api, user_id: str) -> None:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, create_user(api))
    target = b.id if user_id == "stranger" else user_id
    response = api.delete(f"/api/friends/{target}", headers=a.headers)
    assert response.status == 404
    assert response.json == {"message": "This user is not your friend"}


def test_friend_and_request_queries_are_served_by_indexes(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    request_friend(api, create_user(api), a.id)
    queries = [
        ("friendships", {"owner_id": {"$eq": a.id}}),
        ("friendships", {"owner_id": {"$eq": a.id}, "friend_id": {"$eq": b.id}}),
        ("friendships", {"pair": {"$eq": "x:y"}}),
        ("user_requests", {"to_id": {"$eq": a.id}, "status": {"$eq": "waiting"}}),
        ("user_requests", {"from_id": {"$eq": a.id}, "status": {"$eq": "waiting"}}),
    ]
    for collection, query in queries:
        plan = str(sync_db[collection].find(query).explain()["queryPlanner"]["winningPlan"])
        assert "USING INDEX" in plan or "IXSCAN" in plan, (collection, query, plan)


def test_friends_total_counts_only_mine_among_many(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    me, friend = create_user(api), create_user(api)
    make_friends(api, me, friend)
    now = utc_now()
    sync_db.friendships.insert_many([new_friendship_docs(f"other{i}", "x", now)[0] for i in range(3_000)])
    response = api.get("/api/friends", headers=me.headers)
    assert response.headers["x-total-count"] == "1"
    assert [f["id"] for f in response.json] == [friend.id]


def test_ids_in_upper_case_name_the_same_users(api: Api, sync_db: Database[dict[str, Any]]) -> None:
    a, b = create_user(api), create_user(api)
    assert request_friend(api, a, b.id.upper()).status == 201
    assert request_friend(api, a, b.id).status == 422
    stored = sync_db.user_requests.find_one({})
    assert stored is not None
    assert stored["to_id"] == b.id
    request_id = stored["_id"]
    assert answer(api, b, str(request_id).upper(), "agree").status == 204
    assert api.delete(f"/api/friends/{a.id.upper()}", headers=b.headers).status == 204
    assert sync_db.friendships.count_documents({}) == 0
