"""Message search over real HTTP: GET /api/messages/search, its matching rule (case, CJK, word prefixes), what a
user may read (their direct conversations, their groups since they joined), recalled and erased text never found,
paging by `before`, its 400s, its store commands, and a property: the index gives what a scan of every readable
message by the same rule gives, in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import DESCENDING
from pymongo.database import Database

from bench.round_trips import CommandCounter, RoundTrips
from chat_api.common.clock import epoch_ms, stored_datetime
from chat_api.messages import postings
from chat_api.messages.models import message_position, searchable
from chat_api.messages.terms import MAX_TERMS, Query, message_terms
from chat_api.store import client as store
from tests.conftest import OtherApp
from tests.factories import (
    TestUser,
    add_member,
    create_group,
    create_user,
    direct_message,
    make_friends,
    send_group,
)
from tests.helpers import Api, assert_error

Db = Database[dict[str, Any]]


def search(api: Api, user: TestUser, q: str, **params: Any) -> Any:
    response = api.get("/api/messages/search", params={"q": q, **params}, headers=user.headers)
    return response


def found(api: Api, user: TestUser, q: str, **params: Any) -> list[str]:
    """The texts found, newest first."""
    response = search(api, user, q, **params)
    assert response.status == 200, response.text
    return [hit["message"]["msg"] for hit in response.json]


def friends(api: Api) -> tuple[TestUser, TestUser]:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    return a, b


def group_message(api: Api, group_id: str, user: TestUser, msg: str) -> dict[str, Any]:
    response = send_group(api, group_id, user, msg)
    assert response.status == 201, response.text
    message: dict[str, Any] = response.json
    return message


# The matching rule


def test_a_word_is_found_whatever_its_case(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, a, b, "Hello there")
    direct_message(api, b, a, "nothing to see")
    assert found(api, a, "hello") == ["Hello there"]
    assert found(api, b, "HELLO") == ["Hello there"]
    assert found(api, a, "\uff28\uff25\uff2c\uff2c\uff2f") == [
        "Hello there"
    ]  # full width: the same word once normalised


def test_chinese_text_is_found_inside_a_longer_run(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, a, b, "你好世界")
    direct_message(api, a, b, "世上无难事")
    assert found(api, b, "世界") == ["你好世界"]
    assert found(api, b, "好世界") == ["你好世界"]
    assert found(api, b, "世上") == ["世上无难事"]
    assert found(api, b, "界世") == []


def test_japanese_and_korean_are_found_by_their_characters(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, a, b, "東京タワーに行きます")
    direct_message(api, a, b, "안녕하세요 여러분")
    assert found(api, b, "タワー") == ["東京タワーに行きます"]
    assert found(api, b, "하세") == ["안녕하세요 여러분"]


def test_a_query_word_finds_the_words_it_starts(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, a, b, "helpful people")
    direct_message(api, a, b, "hello world")
    direct_message(api, a, b, "shell script")
    assert found(api, a, "hel") == ["hello world", "helpful people"]  # not "shell": words are matched from their start
    assert found(api, a, "ell") == []
    assert found(api, a, "hello world") == ["hello world"]
    assert found(api, a, "world hello") == ["hello world"]  # every word, in any order
    assert found(api, a, "hello people") == []


def test_a_long_query_word_is_checked_past_the_indexed_prefix(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, a, b, "internationalization rocks")
    direct_message(api, a, b, "international food")
    assert found(api, a, "internationaliz") == ["internationalization rocks"]
    assert found(api, a, "internationa") == ["international food", "internationalization rocks"]


def test_mixed_scripts_need_every_part(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, a, b, "iPhone15发布会 today")
    direct_message(api, a, b, "发布会 tomorrow")
    assert found(api, a, "iphone 发布") == ["iPhone15发布会 today"]
    assert found(api, a, "发布会") == ["发布会 tomorrow", "iPhone15发布会 today"]


def test_only_the_first_terms_of_a_long_message_are_indexed() -> None:
    words = [f"w{i:03d}" for i in range(100)]  # 3 terms each: w0, w00, w000
    terms = message_terms(" ".join(words))
    assert len(terms) == MAX_TERMS
    query = Query.parse(words[-1])
    assert not query.matches(" ".join(words))  # past the indexed part: the rule does not look there either
    assert Query.parse(words[0]).matches(" ".join(words))


# What I may read


def test_another_pairs_messages_are_never_found(api: Api) -> None:
    a, b = friends(api)
    c, d = friends(api)
    direct_message(api, c, d, "secret plans")
    direct_message(api, a, b, "public plans")
    assert found(api, a, "plans") == ["public plans"]
    assert found(api, c, "plans") == ["secret plans"]


def test_a_group_is_searched_only_from_when_i_joined(api: Api) -> None:
    lord, early = create_user(api), create_user(api)
    late = create_user(api)
    group_id = create_group(api, lord, members=(early,))
    group_message(api, group_id, lord, "before the newcomer")
    make_friends(api, lord, late)
    assert add_member(api, group_id, lord, late).status == 201
    group_message(api, group_id, early, "after the newcomer")
    assert found(api, early, "newcomer") == ["after the newcomer", "before the newcomer"]
    assert found(api, late, "newcomer") == ["after the newcomer"]
    hit = search(api, late, "newcomer").json[0]
    assert hit["conversation"] == {"type": "group", "id": group_id}
    assert hit["message"]["group_id"] == group_id


def test_a_group_i_left_is_not_searched(api: Api) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    group_message(api, group_id, lord, "farewell party")
    assert found(api, member, "farewell") == ["farewell party"]
    left = api.delete(f"/api/groups/{group_id}/members/{member.id}", headers=member.headers)
    assert left.status == 204, left.text
    assert found(api, member, "farewell") == []


def test_a_deleted_group_is_found_no_more_and_its_postings_go(api: Api, sync_db: Db) -> None:
    lord, member = create_user(api), create_user(api)
    group_id = create_group(api, lord, members=(member,))
    group_message(api, group_id, member, "doomed words")
    assert sync_db.message_terms.count_documents({"owner": f"g:{group_id}"}) > 0
    assert api.delete(f"/api/groups/{group_id}", headers=lord.headers).status == 204
    assert found(api, member, "doomed") == []
    assert sync_db.message_terms.count_documents({"owner": f"g:{group_id}"}) == 0


def test_a_direct_hit_names_the_other_participant(api: Api) -> None:
    a, b = friends(api)
    sent = direct_message(api, a, b, "see you")
    for viewer, other in ((a, b), (b, a)):
        [hit] = search(api, viewer, "see").json
        assert hit["conversation"] == {"type": "user", "id": other.id}
        assert hit["message"]["id"] == sent["id"]
        assert hit["message"]["to_id"] == b.id


def test_a_conversation_with_a_deleted_account_is_still_searched(api: Api) -> None:
    a, b = friends(api)
    direct_message(api, b, a, "remember me")
    assert api.delete(f"/api/users/{b.id}", headers=b.headers).status == 200
    assert found(api, a, "remember") == ["remember me"]


def test_erased_text_is_never_found(api: Api, sync_db: Db) -> None:
    a, b = friends(api)
    direct_message(api, b, a, "erase this please")
    direct_message(api, a, b, "keep this please")
    assert api.delete(f"/api/users/{b.id}?erase=true", headers=b.headers).status == 200
    assert found(api, a, "please") == ["keep this please"]
    assert sync_db.message_terms.count_documents({"from_id": b.id}) == 0
    assert sync_db.message_terms.count_documents({"owner": b.id}) == 0


def test_recalled_text_is_never_found_even_before_its_postings_go(api: Api, sync_db: Db) -> None:
    """A recall (as the stored message shows it: `recalled`, blank `msg`) hides the message from search at once;
    `postings.unindex` then drops its postings."""
    a, b = friends(api)
    sent = direct_message(api, a, b, "oops wrong chat")
    direct_message(api, a, b, "oops again")
    sync_db.user_messages.update_one({"key": sent["id"]}, {"$set": {"recalled": True, "msg": ""}})
    assert found(api, b, "oops") == ["oops again"]
    api.client._run(unindex(sent["id"]))
    assert sync_db.message_terms.count_documents({"key": sent["id"]}) == 0
    assert found(api, b, "oops") == ["oops again"]


async def unindex(key: str) -> None:
    await postings.unindex(key)


def test_an_edit_is_searched_by_its_new_text(api: Api, sync_db: Db) -> None:
    a, b = friends(api)
    sent = direct_message(api, a, b, "meet at noon")
    sync_db.user_messages.update_one({"key": sent["id"]}, {"$set": {"msg": "meet at dawn"}})
    assert found(api, a, "noon") == []  # its old postings are checked against its text as it is now
    doc = sync_db.user_messages.find_one({"key": sent["id"]})
    assert doc is not None
    api.client._run(reindex(doc))
    assert found(api, a, "dawn") == ["meet at dawn"]
    assert sync_db.message_terms.count_documents({"key": sent["id"], "term": "noon"}) == 0


async def reindex(doc: dict[str, Any]) -> None:
    await postings.reindex(doc)


def test_image_messages_are_not_searched(api: Api, sync_db: Db) -> None:
    a, b = friends(api)
    file_id = ObjectId()
    sync_db["fs.files"].insert_one(
        {"_id": file_id, "length": 3, "chunkSize": 261120, "uploadDate": file_id.generation_time, "filename": "a.png"}
    )
    response = api.post(
        "/api/user-message", json={"to_id": b.id, "msg": f"/api/files/{file_id}", "msg_type": "img"}, headers=a.headers
    )
    assert response.status == 201, response.text
    assert found(api, a, "api files") == []


# Paging


def test_pages_follow_each_other_by_before_newest_first(api: Api) -> None:
    a, b = friends(api)
    lord = create_user(api)
    make_friends(api, lord, a)
    group_id = create_group(api, lord)
    assert add_member(api, group_id, lord, a).status == 201
    texts = []
    for i in range(7):
        text = f"page item {i}"
        if i % 2:
            group_message(api, group_id, lord, text)
        else:
            direct_message(api, b, a, text)
        texts.append(text)
    pages, before = [], None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if before is not None:
            params["before"] = before
        response = search(api, a, "item", **params)
        assert response.status == 200, response.text
        if not response.json:
            break
        pages.append([hit["message"]["msg"] for hit in response.json])
        before = response.json[-1]["message"]["id"]
    assert pages == [texts[::-1][0:3], texts[::-1][3:6], texts[::-1][6:]]
    assert found(api, a, "item") == texts[::-1]  # the default limit


def test_before_must_be_a_message_i_can_read(api: Api) -> None:
    a = create_user(api)
    c, d = friends(api)
    theirs = direct_message(api, c, d, "their words")
    assert_error(search(api, a, "words", before=theirs["id"]), 400, "`before` must be the id of a message you can read")
    assert_error(
        search(api, a, "words", before=str(ObjectId())), 400, "`before` must be the id of a message you can read"
    )


# Refused queries


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"q": "a"}, "`q` must have at least 2 characters"),
        ({"q": " a  "}, "`q` must have at least 2 characters"),
        ({"q": ""}, "`q` must have at least 2 characters"),
        ({"q": "世"}, "`q` must have at least 2 characters"),
        ({"q": "a b"}, "`q` must contain a word of 2 letters or more, or 2 CJK characters in a row"),
        ({"q": "?!"}, "`q` must contain a word of 2 letters or more, or 2 CJK characters in a row"),
        ({"q": "x" * 201}, "`q` must have at most 200 characters"),
    ],
)
def test_a_query_too_short_or_without_a_term_is_refused(api: Api, params: dict[str, Any], message: str) -> None:
    a = create_user(api)
    response = api.get("/api/messages/search", params=params, headers=a.headers)
    assert_error(response, 400, message)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"q": "hello", "limit": "0"},
        {"q": "hello", "limit": "201"},
        {"q": "hello", "before": "nope"},
        {"q": "hello", "page": "2"},
    ],
)
def test_bad_parameters_are_refused(api: Api, params: dict[str, Any]) -> None:
    a = create_user(api)
    assert api.get("/api/messages/search", params=params, headers=a.headers).status == 400


def test_search_needs_a_token(api: Api) -> None:
    assert api.get("/api/messages/search", params={"q": "hello"}).status == 401


# Store commands


@pytest.fixture
def counted(other_app: OtherApp, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Api, CommandCounter]]:
    counter = CommandCounter()
    monkeypatch.setitem(store.CLIENT_OPTIONS, "event_listeners", [counter])
    with other_app() as client:
        yield Api(client), counter


def measured(counter: CommandCounter, api: Api, user: TestUser, **params: Any) -> RoundTrips:
    counter.commands.clear()
    counter.recording = True
    try:
        response = api.get("/api/messages/search", params=params, headers=user.headers)
    finally:
        counter.recording = False
    assert response.status == 200, response.text
    return RoundTrips(tuple(counter.commands))


def test_a_search_takes_one_range_per_reader_scope_and_one_read_per_message_collection(
    counted: tuple[Api, CommandCounter],
) -> None:
    """My memberships, one range of postings for my direct messages and one per group (together), the direct
    messages found, the group messages found and their groups (together): 3 + groups + 2 with groups found. The
    token's user comes from the per-process cache (issue 14)."""
    api, counter = counted
    a, b = friends(api)
    direct_message(api, a, b, "hello direct")
    alone = measured(counter, api, a, q="hello")
    assert alone.data == 3, alone
    assert alone.commands.count(("find", "message_terms")) == 1
    c = create_user(api)
    group_one = create_group(api, a, members=(c,))
    create_group(api, a)
    group_message(api, group_one, c, "hello group")
    both = measured(counter, api, a, q="hello")
    assert both.data == 7, both
    assert both.commands.count(("find", "message_terms")) == 3
    paged = measured(counter, api, a, q="hello", before=search(api, a, "hello").json[0]["message"]["id"])
    # The `before` message (the group's) looked up in both collections beside the memberships; below it only the
    # direct message is left: no group messages or groups to read.
    assert paged.data == 7, paged
    assert paged.commands.count(("find", "group_messages")) == 1


# The index


@pytest.mark.parametrize("before", [None, "1800000000000"])
@pytest.mark.usefixtures("app_started")  # the app made the indexes
def test_the_walk_is_served_by_the_owner_term_position_index(sync_db: Db, before: str | None) -> None:
    sync_db.message_terms.insert_one(
        {"_id": "k/o/hi", "owner": "o", "term": "hi", "pos": "1700000000000k", "key": "k", "from_id": "a"}
    )
    query = postings.walk_filter("o", "hi", "", before)
    plan = str(sync_db.message_terms.find(query).sort("pos", DESCENDING).limit(50).explain()["queryPlanner"])
    assert "USING INDEX idx_message_terms_owner_term_pos" in plan or "IXSCAN" in plan, plan
    # Read in the index's order: no sort of the matches (a SORT stage on MongoDB, a temporary B-tree on nx-27017).
    assert "COLLSCAN" not in plan
    assert "'SORT'" not in plan
    assert "TEMP B-TREE" not in plan
    if "USING INDEX" in plan:
        # The check can fail: `$in` on the owner, or the plain-equality form, is not served by the index there.
        widened = {**query, "owner": {"$in": ["o", "p"]}}
        assert "(<expr>=? AND <expr>=?" not in str(sync_db.message_terms.find(widened).explain()["queryPlanner"])


# The property: the index gives what a scan gives


WORDS = ["hello", "Help", "HELLO", "world", "wor", "helpful", "世界", "你好世界", "世", "好", "东京タワー", "test"]
QUERIES = ["hello", "hel", "wor", "world", "世界", "你好", "好世", "helpful world", "te", "ワー"]


def readable_scan(sync_db: Db, me: TestUser, q: str) -> list[str]:
    """Every message `me` may read (direct ones they are in; groups from when they joined), found by the rule,
    newest first: what the index must give."""
    query = Query.parse(q)
    joined = {m["group_id"]: m["joined_at"] for m in sync_db.group_members.find({"user_id": me.id})}
    docs = [d for d in sync_db.user_messages.find({}) if me.id in (d["from_id"], d["to_id"])]
    docs += [
        d
        for d in sync_db.group_messages.find({})
        if d["group_id"] in joined
        and epoch_ms(stored_datetime(d["created_at"])) >= epoch_ms(stored_datetime(joined[d["group_id"]]))
    ]
    hits = [d for d in docs if searchable(d) and query.matches(d["msg"])]
    return [d["key"] for d in sorted(hits, key=message_position, reverse=True)]


def all_pages(api: Api, me: TestUser, q: str, limit: int) -> list[str]:
    keys: list[str] = []
    before: str | None = None
    while True:
        params: dict[str, Any] = {"q": q, "limit": limit}
        if before is not None:
            params["before"] = before
        response = api.get("/api/messages/search", params=params, headers=me.headers)
        assert response.status == 200, response.text
        page = [hit["message"]["id"] for hit in response.json]
        assert len(page) <= limit
        if not page:
            return keys
        keys += page
        before = page[-1]


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
corpus = st.lists(
    st.tuples(st.sampled_from(["mine", "theirs", "group_before", "group_after"]), texts, st.booleans()),
    min_size=1,
    max_size=12,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=corpus, q=st.sampled_from(QUERIES), limit=st.integers(1, 4))
def test_search_pages_equal_a_scan_of_what_i_may_read(
    api: Api, sync_db: Db, messages: list[tuple[str, str, bool]], q: str, limit: int
) -> None:
    me, friend = friends(api)
    stranger, other = friends(api)
    lord = create_user(api)
    make_friends(api, lord, me)
    group_id = create_group(api, lord)
    joined = False
    for where, text, recalled in sorted(messages, key=lambda m: m[0] == "group_after"):
        if where == "group_after" and not joined:
            assert add_member(api, group_id, lord, me).status == 201
            joined = True
        if where == "mine":
            sent = direct_message(api, friend, me, text)
            collection = sync_db.user_messages
        elif where == "theirs":
            sent = direct_message(api, stranger, other, text)
            collection = sync_db.user_messages
        else:
            sent = group_message(api, group_id, lord, text)
            collection = sync_db.group_messages
        if recalled:
            collection.update_one({"key": sent["id"]}, {"$set": {"recalled": True, "msg": ""}})
    assert all_pages(api, me, q, limit) == readable_scan(sync_db, me, q)


def test_the_walk_takes_more_postings_when_other_words_rule_candidates_out(api: Api) -> None:
    """Candidates the other query words rule out make the walk read further (twice as many each time)."""
    a, b = friends(api)
    direct_message(api, a, b, "hello target")
    for i in range(12):
        direct_message(api, a, b, f"hello filler {i}")
    assert found(api, a, "hello target", limit=2) == ["hello target"]
    assert len(found(api, a, "hello", limit=200)) == 13
    assert found(api, a, "filler", limit=5) == [f"hello filler {i}" for i in range(11, 6, -1)]
