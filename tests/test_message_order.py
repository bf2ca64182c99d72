"""Message order and unread counts, checked after every step of random sequences against a model (issue 11).

Hypothesis draws sequences of steps among a few users: direct and group sends (several at once, each
over its own HTTP connection), marking read, befriending and unfriending, joining and leaving groups.
The model (the test's own recount of what each user must see) is kept beside the API; after every step:
- each user's GET /api/conversations lists exactly the model's conversations, newest message first, with
  the exact unread count (the messages after the user's read position that they did not send);
- every history pages through the `before` cursor, newest first, with each message once, in the order
  the sends were made (messages sent at once in any order among themselves), numbered 1, 2, 3... in that
  order (holes allowed);
- for every list route, `X-Total-Count` equals what paging through the list returns.
Account deletions are steps too: a deleted user's conversations stay in the others' lists (read-only, under the
placeholder name), their friendships and memberships go, and a group they lorded passes to its longest-standing
member (or goes, with nobody left).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pymongo.database import Database

from chat_api.friends.models import pair_key
from tests.factories import TestUser, create_user, make_friends
from tests.helpers import Api

USERS = 3
GROUPS = 2  # lorded by users 0 and 1
PAGE = 2  # small pages, so that every list is paged
Db = Database[dict[str, Any]]


@dataclass
class Conversation:
    """The model of one conversation: its messages in the order of the steps that sent them (a step's
    concurrent sends share its index), and each user's read messages."""

    messages: list[tuple[str, str, int]] = field(default_factory=list)  # (message id, sender id, step)
    read: dict[str, set[str]] = field(default_factory=dict)  # user id -> ids of the messages read

    def read_all(self, user_id: str) -> None:
        self.read[user_id] = {message_id for message_id, _, _ in self.messages}

    def unread(self, user_id: str) -> int:
        read = self.read.get(user_id, set())
        return sum(1 for message_id, sender, _ in self.messages if sender != user_id and message_id not in read)


@dataclass
class Model:
    users: list[TestUser]
    groups: list[str]
    lords: list[TestUser]
    friends: set[str] = field(default_factory=set)  # pair keys
    # A pair's conversation is listed once a message was sent since they last became friends.
    shown: set[str] = field(default_factory=set)
    members: dict[str, dict[str, None]] = field(default_factory=dict)  # group id -> member ids, in joining order
    deleted: set[str] = field(default_factory=set)  # ids of deleted accounts
    # Pairs one of whom deleted their account: the other keeps the conversation if it was shown.
    ended: set[str] = field(default_factory=set)
    direct: dict[str, Conversation] = field(default_factory=dict)  # pair key -> conversation
    group: dict[str, Conversation] = field(default_factory=dict)  # group id -> conversation
    step: int = 0

    def pair(self, a: int, b: int) -> str:
        return pair_key(self.users[a].id, self.users[b].id)

    def conversation_of_pair(self, pair: str) -> Conversation:
        return self.direct.setdefault(pair, Conversation())

    def alive(self, *indexes: int) -> bool:
        return all(self.users[i].id not in self.deleted for i in indexes)


# Steps: (kind, arguments), drawn by Hypothesis.
user_index = st.integers(0, USERS - 1)
two_users = st.tuples(user_index, user_index).filter(lambda ab: ab[0] != ab[1])
STEPS = st.one_of(
    st.tuples(st.just("send_direct"), two_users, st.integers(1, 3)),
    st.tuples(st.just("send_group"), st.integers(0, GROUPS - 1), user_index, st.integers(1, 3)),
    st.tuples(st.just("read_direct"), two_users),
    st.tuples(st.just("read_group"), st.integers(0, GROUPS - 1), user_index),
    st.tuples(st.just("befriend"), two_users),
    st.tuples(st.just("unfriend"), two_users),
    st.tuples(st.just("join"), st.integers(0, GROUPS - 1), user_index),
    st.tuples(st.just("leave"), st.integers(0, GROUPS - 1), user_index),
    st.tuples(st.just("delete_account"), user_index),
)


def send_direct(api: Api, model: Model, a: int, b: int, count: int) -> None:
    sender, to = model.users[a], model.users[b]
    if not model.alive(a):
        return  # a deleted account has no token left
    body = {"to_id": to.id, "msg": f"step {model.step}"}
    responses = api.concurrently([("post", "/api/user-message", {"json": body, "headers": sender.headers})] * count)
    pair = model.pair(a, b)
    if not model.alive(b):
        assert {r.status_code for r in responses} == {404}  # as for an unknown user
        return
    if pair not in model.friends:
        assert {r.status_code for r in responses} == {403}
        return
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    conversation = model.conversation_of_pair(pair)
    conversation.messages.extend((r.json()["user_message_id"], sender.id, model.step) for r in responses)
    model.shown.add(pair)


def send_group(api: Api, model: Model, g: int, a: int, count: int) -> None:
    group_id, sender = model.groups[g], model.users[a]
    if not model.alive(a) or group_id not in model.members:
        return
    path = f"/api/groups/{group_id}/messages"
    body = {"msg": f"step {model.step}"}
    responses = api.concurrently([("post", path, {"json": body, "headers": sender.headers})] * count)
    if sender.id not in model.members[group_id]:
        assert {r.status_code for r in responses} == {403}
        return
    assert {r.status_code for r in responses} == {201}, [r.text for r in responses]
    model.group[group_id].messages.extend((r.json()["id"], sender.id, model.step) for r in responses)


def read_direct(api: Api, model: Model, a: int, b: int) -> None:
    reader, friend = model.users[a], model.users[b]
    if not model.alive(a):
        return
    response = api.put(f"/api/conversations/user/{friend.id}/read", headers=reader.headers)
    pair = model.pair(a, b)
    if pair in model.ended:
        # The conversation with a deleted account stays, read-only: it can still be marked read.
        assert response.status == 204, response.text
        model.conversation_of_pair(pair).read_all(reader.id)
        return
    if not model.alive(b):
        assert response.status == 404  # no conversation left with them: an unknown user
        return
    if pair not in model.friends:
        assert response.status == 403
        return
    assert response.status == 204
    model.conversation_of_pair(pair).read_all(reader.id)


def read_group(api: Api, model: Model, g: int, a: int) -> None:
    group_id, reader = model.groups[g], model.users[a]
    if not model.alive(a) or group_id not in model.members:
        return
    response = api.put(f"/api/conversations/group/{group_id}/read", headers=reader.headers)
    if reader.id not in model.members[group_id]:
        assert response.status == 403
        return
    assert response.status == 204
    model.group[group_id].read_all(reader.id)


def befriend(api: Api, model: Model, a: int, b: int) -> None:
    pair = model.pair(a, b)
    if pair in model.friends or not model.alive(a, b):
        return
    make_friends(api, model.users[a], model.users[b])
    model.friends.add(pair)
    model.shown.discard(pair)
    # What was said while they were friends before counts as read.
    conversation = model.conversation_of_pair(pair)
    for user in (model.users[a], model.users[b]):
        conversation.read_all(user.id)


def unfriend(api: Api, model: Model, a: int, b: int) -> None:
    pair = model.pair(a, b)
    if not model.alive(a):
        return
    response = api.delete(f"/api/friends/{model.users[b].id}", headers=model.users[a].headers)
    assert response.status == (204 if pair in model.friends else 404)
    model.friends.discard(pair)
    model.shown.discard(pair)


def join(api: Api, model: Model, g: int, a: int) -> None:
    group_id, lord, user = model.groups[g], model.lords[g], model.users[a]
    if group_id not in model.members or user.id in model.members[group_id]:
        return
    if pair_key(lord.id, user.id) not in model.friends:
        return  # the refusals of adding are the groups tests' subject
    response = api.post(f"/api/groups/{group_id}/members", json={"user_id": user.id}, headers=lord.headers)
    assert response.status == 201, response.text
    model.members[group_id][user.id] = None
    model.group[group_id].read_all(user.id)  # what was said before joining is read


def leave(api: Api, model: Model, g: int, a: int) -> None:
    group_id, user = model.groups[g], model.users[a]
    if group_id not in model.members or user.id not in model.members[group_id] or user.id == model.lords[g].id:
        return
    response = api.delete(f"/api/groups/{group_id}/members/{user.id}", headers=user.headers)
    assert response.status == 204, response.text
    del model.members[group_id][user.id]


def delete_account(api: Api, model: Model, a: int) -> None:
    """The account goes: its friendships (the shown conversations stay with the others, read-only), its
    memberships, and a group it lords passes to the longest-standing member, or goes with nobody left."""
    user = model.users[a]
    if not model.alive(a):
        return
    response = api.delete(f"/api/users/{user.id}", headers=user.headers)
    assert response.status == 200, response.text
    model.deleted.add(user.id)
    for pair in [pair for pair in model.friends if user.id in pair.split(":")]:
        model.friends.discard(pair)
        model.ended.add(pair)
    for pair in [pair for pair in model.shown if user.id in pair.split(":")]:
        model.ended.add(pair)
    for g, group_id in enumerate(model.groups):
        members = model.members.get(group_id)
        if members is None or user.id not in members:
            continue
        del members[user.id]
        if model.lords[g].id == user.id:
            if not members:
                del model.members[group_id]  # nobody left: the group goes
                continue
            heir = next(iter(members))  # the longest-standing member (there are no admins here)
            model.lords[g] = next(u for u in model.users if u.id == heir)


APPLY: dict[str, Callable[..., None]] = {
    "send_direct": send_direct,
    "send_group": send_group,
    "read_direct": read_direct,
    "read_group": read_group,
    "befriend": befriend,
    "unfriend": unfriend,
    "join": join,
    "leave": leave,
    "delete_account": delete_account,
}


# Checks


def paged(api: Api, path: str, user: TestUser, key: str = "id", limit: int = PAGE) -> list[Any]:
    """Every item of a list route, page by page: each page's X-Total-Count equals the number of items
    the whole walk returns, and no item comes twice."""
    items: list[Any] = []
    totals = set()
    for offset in itertools.count(0, limit):
        separator = "&" if "?" in path else "?"
        response = api.get(f"{path}{separator}limit={limit}&offset={offset}", headers=user.headers)
        assert response.status == 200, (path, response.text)
        totals.add(int(response.headers["x-total-count"]))
        items.extend(response.json)
        if len(response.json) < limit:
            break
    assert totals == {len(items)}, (path, totals, len(items))
    ids = [item[key] if key else item for item in items]
    assert len(set(map(str, ids))) == len(ids), (path, ids)
    return items


def history(api: Api, path: str, user: TestUser) -> list[dict[str, Any]]:
    """A whole history, newest first, through the `before` cursor."""
    messages: list[dict[str, Any]] = []
    query = f"?limit={PAGE}"
    while True:
        response = api.get(f"{path}{query}", headers=user.headers)
        assert response.status == 200, response.text
        messages.extend(response.json)
        if len(response.json) < PAGE:
            return messages
        query = f"?limit={PAGE}&before={response.json[-1]['id']}"


def check_history(shown: list[dict[str, Any]], conversation: Conversation, numbers: dict[str, int]) -> None:
    oldest_first = [m["id"] for m in reversed(shown)]
    assert sorted(oldest_first) == sorted(message_id for message_id, _, _ in conversation.messages)
    step_of = {message_id: step for message_id, _, step in conversation.messages}
    steps = [step_of[message_id] for message_id in oldest_first]
    assert steps == sorted(steps), "a message sent later is shown before an earlier one"
    stored = [numbers[message_id] for message_id in oldest_first]
    assert stored == sorted(stored)
    assert len(set(stored)) == len(stored)


def check(api: Api, sync_db: Db, model: Model) -> None:
    numbers = {m["key"]: m["n"] for name in ("user_messages", "group_messages") for m in sync_db[name].find()}
    newest: dict[tuple[str, str], str] = {}
    for pair, conversation in model.direct.items():
        if not conversation.messages:
            continue
        a, b = sorted(
            (next(u for u in model.users if u.id == user_id) for user_id in pair.split(":")),
            key=lambda u: u.id in model.deleted,
        )
        if a.id in model.deleted:
            continue  # both deleted: nobody left to read it
        shown = history(api, f"/api/user-message/{a.id}/{b.id}", a)
        check_history(shown, conversation, numbers)
        newest[("user", pair)] = shown[0]["id"]
    for group_id, conversation in model.group.items():
        lord = model.lords[model.groups.index(group_id)]
        if group_id not in model.members:
            assert api.get(f"/api/groups/{group_id}", headers=lord.headers).status in (401, 404)
            continue
        shown = history(api, f"/api/groups/{group_id}/messages", lord)
        check_history(shown, conversation, numbers)
        if shown:
            newest[("group", group_id)] = shown[0]["id"]
        members = paged(api, f"/api/groups/{group_id}/members", lord)
        assert {m["id"] for m in members} == set(model.members[group_id])
    alive = [user for user in model.users if user.id not in model.deleted]
    if not alive:
        return
    everyone = {u["id"] for u in paged(api, "/api/users", alive[0], limit=50)}
    assert {u.id for u in alive} <= everyone
    assert not model.deleted & everyone
    for user in alive:
        check_user(api, model, user, newest)


def check_user(api: Api, model: Model, user: TestUser, newest: dict[tuple[str, str], str]) -> None:
    friends = {pair for pair in model.friends if user.id in pair.split(":")}
    expected: dict[tuple[str, str], int] = {}
    ended = {pair for pair in model.ended & model.shown if user.id in pair.split(":")}
    for pair in (friends & model.shown) | ended:
        other = next(i for i in pair.split(":") if i != user.id)
        expected[("user", other)] = model.direct[pair].unread(user.id)
    for group_id, member_ids in model.members.items():
        if user.id in member_ids:
            expected[("group", group_id)] = model.group[group_id].unread(user.id)
    listed = paged(api, "/api/conversations", user)
    assert {(c["type"], c["id"]): c["unread"] for c in listed} == expected
    for c in listed:
        # The conversation with a deleted account is listed under the placeholder, read-only.
        assert c["deleted"] == (c["type"] == "user" and c["id"] in model.deleted)
        if c["deleted"]:
            assert c["name"] == "Deleted account"
    times = [c["updated_at"] for c in listed]
    assert times == sorted(times, reverse=True), "the conversation list is not newest first"
    for c in listed:
        key = ("user", pair_key(user.id, c["id"])) if c["type"] == "user" else ("group", c["id"])
        if c["last_message"] is not None:
            assert c["last_message"]["id"] == newest[key]
    listed_friends = paged(api, "/api/friends", user)
    assert {f["id"] for f in listed_friends} == {next(i for i in p.split(":") if i != user.id) for p in friends}
    assert paged(api, "/api/user-requests", user) == []  # every request here is answered at once
    groups = paged(api, "/api/groups", user)
    assert {g["id"] for g in groups} == {g for g, member_ids in model.members.items() if user.id in member_ids}


# No shrinking: each example is dozens of HTTP requests, and a failure is reported with its steps as drawn.
@settings(
    max_examples=5,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(STEPS, min_size=4, max_size=8))
# Always tried: a lord with messages in both kinds of conversation deletes their account, and the others go on.
@example(
    steps=[
        ("join", 0, 1),
        ("send_group", 0, 1, 2),
        ("send_direct", (1, 0), 2),
        ("delete_account", 0),
        ("send_direct", (1, 0), 1),
        ("send_group", 0, 1, 1),
        ("read_direct", (1, 0)),
        ("join", 0, 2),
    ]
)
def test_order_and_unread_counts_are_exact_at_every_step(api: Api, sync_db: Db, steps: list[tuple[Any, ...]]) -> None:
    users = [create_user(api) for _ in range(USERS)]
    lords = users[:GROUPS]
    groups = []
    for lord in lords:
        response = api.post("/api/groups", json={"group_name": f"g of {lord.id}"}, headers=lord.headers)
        assert response.status == 201, response.text
        groups.append(response.json["group_id"])
    model = Model(users, groups, lords)
    model.members = {group_id: {lord.id: None} for group_id, lord in zip(groups, lords, strict=True)}
    model.group = {group_id: Conversation() for group_id in groups}
    # Start with the users as friends in a chain, so that sends and joins mostly succeed.
    for a in range(USERS - 1):
        befriend(api, model, a, a + 1)
    check(api, sync_db, model)
    for step in steps:
        model.step += 1
        # Pairs of users come as one tuple: flattened into the step's arguments.
        args = [part for arg in step[1:] for part in (arg if isinstance(arg, tuple) else (arg,))]
        APPLY[step[0]](api, model, *args)
        check(api, sync_db, model)
