"""The test factories, one definition each: users, friendships, groups and messages, made through the public
routes as a client would, or written straight to the store with the app's own document builders."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.database import Database
from sanic_testing.testing import TestingResponse

from chat_api.common.clock import utc_now
from chat_api.friends.models import DirectConversation, Friendship, new_friendship_docs, pair_key
from chat_api.groups.models import Group, GroupMember, GroupMessage, Identity, new_group_doc, new_member_doc
from chat_api.messages.models import DirectMessage, message_summary, new_message_doc
from tests.helpers import Api

Db = Database[dict[str, Any]]
_chat_ids = itertools.count(100_000 + secrets.randbelow(1_000_000) * 1000)


# Users


@dataclass
class TestUser:
    """A registered user as the tests know them: ids, credentials and, once logged in, a token."""

    __test__ = False  # a helper, not a test class

    id: str
    chat_id: int
    email: str
    password: str
    username: str
    token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return auth_headers(self.token)


def new_password() -> str:
    """A fresh password no other test user has."""
    return f"pw-{secrets.token_hex(8)}"


def user_payload(api: Api | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid registration body with a fresh chat id; its password joins what `api` checks answers for."""
    chat_id = next(_chat_ids)
    payload: dict[str, Any] = {
        "username": f"user{chat_id}",
        "password": new_password(),
        "email": f"user{chat_id}@example.com",
        "chat_id": chat_id,
    }
    payload.update(overrides)
    if api is not None and isinstance(payload.get("password"), str):
        api.passwords.add(payload["password"])
    return payload


def create_user(api: Api, *, login: bool = True, **overrides: Any) -> TestUser:
    """Register through the public route and, by default, log in."""
    payload = user_payload(api, **overrides)
    response = api.post("/api/register", json=payload)
    assert response.status == 201, response.text
    user = TestUser(
        id=response.json["user_id"],
        chat_id=int(payload["chat_id"]),
        email=payload["email"].strip().lower(),
        password=payload["password"],
        username=payload["username"],
    )
    if login:
        user.token = log_in(api, user.chat_id, user.password)
    return user


def log_in(api: Api, identifier: int | str, password: str) -> str:
    """Log in (by chat id or email) and return the `Bearer` token."""
    response = api.post("/api/login", json={"chat_id": identifier, "password": password})
    assert response.status == 200, response.text
    token: str = response.json["token"]
    assert token.startswith("Bearer ")
    return token


def auth_headers(token: str) -> dict[str, str]:
    """The headers that send `token`."""
    return {"Authorization": token}


# Through the public routes


def request_friend(api: Api, sender: TestUser, to_id: str, verify_data: str = "hello") -> TestingResponse:
    """A friend request from `sender` to the user `to_id` (POST /api/user-requests); the answer as it is."""
    return api.post("/api/user-requests", json={"to_id": to_id, "verify_data": verify_data}, headers=sender.headers)


def make_friends(api: Api, a: TestUser, b: TestUser) -> None:
    """`a` asks `b` to be friends and `b` agrees, through the API."""
    sent = request_friend(api, a, b.id, "hi")
    assert sent.status == 201, sent.text
    path = f"/api/user-requests/{sent.json['user_request_id']}"
    answered = api.put(path, json={"status": "agree"}, headers=b.headers)
    assert answered.status == 204, answered.text


# Bodies that both message routes (direct and group) refuse with 400.
INVALID_MESSAGE_BODIES: list[dict[str, Any]] = [
    {},
    {"msg": ""},
    {"msg": "x" * 4001},
    {"msg": 5},
    {"msg": "hi", "msg_type": "video"},
    {"msg": "hi", "client_msg_id": ""},
    {"msg": "hi", "client_msg_id": "x" * 65},
]


def send_direct(api: Api, sender: TestUser, to: TestUser | str, msg: str = "hello", **extra: Any) -> TestingResponse:
    """A direct message to a user (or a user id) through POST /api/user-message; the answer as it is."""
    to_id = to if isinstance(to, str) else to.id
    return api.post("/api/user-message", json={"to_id": to_id, "msg": msg, **extra}, headers=sender.headers)


def direct_message(api: Api, sender: TestUser, to: TestUser, msg: str = "hello") -> dict[str, Any]:
    """A direct message that must be accepted (201); the message as answered."""
    response = send_direct(api, sender, to, msg)
    assert response.status == 201, response.text
    message: dict[str, Any] = response.json["message"]
    return message


def add_member(api: Api, group_id: str, by: TestUser, user: TestUser) -> TestingResponse:
    """`by` adds `user` to the group (POST /api/groups/<id>/members); the answer as it is."""
    return api.post(f"/api/groups/{group_id}/members", json={"user_id": user.id}, headers=by.headers)


def create_group(
    api: Api, lord: TestUser, members: Iterable[TestUser] = (), admins: Iterable[TestUser] = (), **fields: Any
) -> str:
    """A group created by `lord` (named "team" unless `fields` say), who befriends, adds and promotes `admins`."""
    response = api.post("/api/groups", json={"group_name": "team", **fields}, headers=lord.headers)
    assert response.status == 201, response.text
    group_id: str = response.json["group_id"]
    admins = tuple(admins)
    for member in (*members, *admins):
        make_friends(api, lord, member)
        assert add_member(api, group_id, lord, member).status == 201
    for admin in admins:
        promoted = api.put(
            f"/api/groups/{group_id}/members/{admin.id}", json={"identity": "admin"}, headers=lord.headers
        )
        assert promoted.status == 204, promoted.text
    return group_id


def send_group(api: Api, group_id: str, user: TestUser, msg: str = "hello", **fields: Any) -> TestingResponse:
    """A group message through POST /api/groups/<id>/messages; the answer as it is."""
    return api.post(f"/api/groups/{group_id}/messages", json={"msg": msg, **fields}, headers=user.headers)


# Straight to the store, built by the app's own builders


def group_docs(
    lord: TestUser, members: Iterable[TestUser], now: datetime, **fields: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A group named "g" (unless `fields` say) and its memberships, `lord`'s first, as the groups routes store them."""
    group = new_group_doc({"group_name": "g", **fields}, lord.id, now)
    rows: list[tuple[TestUser, Identity]] = [(lord, "lord"), *((member, "user") for member in members)]
    return group, [new_member_doc(str(group["_id"]), user.id, identity, now) for user, identity in rows]


def insert_group(
    sync_db: Db, lord: TestUser, *members: TestUser, created_at: datetime | None = None, **fields: Any
) -> str:
    """A group with its members written to the store (not through the routes); its id."""
    group, memberships = group_docs(lord, members, created_at or utc_now(), **fields)
    sync_db[Group.Settings.name].insert_one(group)
    sync_db[GroupMember.Settings.name].insert_many(memberships)
    return str(group["_id"])


def insert_group_messages(sync_db: Db, group_id: str, sender: TestUser, count: int = 1, msg: str = "hi all") -> int:
    """Group messages as the groups part stores them (numbered from the group's counter), and the group's summary
    of the last; that one's number."""
    counter = sync_db[Group.Settings.name].find_one_and_update(
        {"_id": ObjectId(group_id)}, {"$inc": {"last_n": count}}, return_document=ReturnDocument.AFTER
    )
    assert counter is not None
    last_n = int(counter["last_n"])
    numbers = range(last_n - count + 1, last_n + 1)
    docs = [new_message_doc({"group_id": group_id}, sender.id, msg, n=n, created_at=utc_now()) for n in numbers]
    sync_db[GroupMessage.Settings.name].insert_many(docs)
    summary = {"last_message": message_summary(docs[-1]), "message_n": last_n}
    sync_db[Group.Settings.name].update_one({"_id": ObjectId(group_id)}, {"$set": summary})
    return last_n


def insert_direct_messages(
    sync_db: Db, a: TestUser, b: TestUser, count: int = 1, msg: str = "hello", **fields: Any
) -> list[dict[str, Any]]:
    """Undelivered direct messages from `a` to `b` written to the store, numbered from the pair's counter
    (`fields` as `new_message_doc` takes)."""
    pair = pair_key(a.id, b.id)
    counter = sync_db[DirectConversation.Settings.name].find_one_and_update(
        {"_id": pair}, {"$inc": {"last_n": count}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert counter is not None
    last_n = int(counter["last_n"])
    target = {"pair": pair, "to_id": b.id}
    numbers = range(last_n - count + 1, last_n + 1)
    docs = [new_message_doc(target, a.id, msg, n=n, created_at=utc_now(), **fields) for n in numbers]
    sync_db[DirectMessage.Settings.name].insert_many(docs)
    return docs


async def befriend(a: TestUser, b: TestUser) -> None:
    """Both sides of a friendship written to the store, as the friends routes store them."""
    await Friendship.get_pymongo_collection().insert_many(new_friendship_docs(a.id, b.id, utc_now()))


def new_friends(api: Api, **first: Any) -> tuple[TestUser, TestUser]:
    """Two new users (`first` as `create_user` takes it, for the first one), made friends in the store."""
    a, b = create_user(api, **first), create_user(api)
    api.client._loop.run_until_complete(befriend(a, b))  # in the app's loop, where its store client lives
    return a, b


async def store_group(lord: TestUser, *members: TestUser) -> str:
    """A group named "g" with its members written to the store from within the app's loop; its id."""
    group, memberships = group_docs(lord, members, utc_now())
    await Group.get_pymongo_collection().insert_one(group)
    await GroupMember.get_pymongo_collection().insert_many(memberships)
    return str(group["_id"])


# Recall, edit, replies and reactions (issue 13)


def message_url(message_id: str, group_id: str | None = None) -> str:
    """A direct message's route (`/api/user-message/<id>`), or a group message's."""
    if group_id is None:
        return f"/api/user-message/{message_id}"
    return f"/api/groups/{group_id}/messages/{message_id}"


def reaction_url(message_id: str, emoji: str, group_id: str | None = None) -> str:
    """The route of one reaction, the emoji percent-encoded as a client sends it."""
    return f"{message_url(message_id, group_id)}/reactions/{quote(emoji, safe='')}"


def events_of(api: Api, user: TestUser, after: int = 0) -> list[dict[str, Any]]:
    """The user's stored events after `after` (GET /api/events), as their frames."""
    response = api.get(f"/api/events?after={after}&limit=200", headers=user.headers)
    assert response.status == 200, response.text
    return list(response.json)
