# ruff: noqa: RUF001, RUF002 (look-alike digits and letters are what this module is about)
"""Numbers and ids are ASCII only: `last_seq`, `after`, `limit`, `offset`, `before` and chat ids refuse
"²", "١٢", "１２", " 12", "1_2"... with the documented answer (400, or 4401 on the socket), never a crash
and never a misreading as another number."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from chat_api.common.fields import MAX_INT64, whole_number
from chat_api.events.service import publish
from tests.factories import TestUser, befriend, create_user, direct_message, make_friends, store_group
from tests.helpers import Api
from tests.realtime_helpers import close_code, fresh_hub, next_frame, open_socket, run, ws_url

pytestmark = pytest.mark.usefixtures("api", fresh_hub.__name__)  # the hub starts with the server

# Each is something `str.isdigit()`, `int()`, a `\d` regex or a lax parser would take for a number.
NOT_ASCII_DIGITS = [
    "²",  # superscript two: isdigit() is true, int() raises
    "①",  # circled one: likewise
    "١٢",  # Arabic-Indic twelve: int() reads 12
    "１２",  # fullwidth twelve: int() reads 12
    "߁",  # NKo one
    " 12",  # int() strips whitespace
    "12\n",  # and a `$` regex lets a final newline through
    "12 ",
    "1_2",  # int() reads 12
    "+12",
    "-1",
    "0x1",
    "12.0",
    "1e1",
    "",
]
ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
# Text that is anything but a string of ASCII digits: random text, and strings of other digits.
OTHER_DIGITS = st.characters(categories=["Nd", "No", "Nl"], exclude_characters="0123456789")
NOT_A_NUMBER = st.one_of(
    st.text(alphabet=OTHER_DIGITS, min_size=1, max_size=6),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
    st.tuples(st.from_regex(r"[0-9]{1,4}", fullmatch=True), OTHER_DIGITS).map("".join),
).filter(lambda text: not ASCII_DIGITS.fullmatch(text))
IN_RANGE = st.integers(min_value=0, max_value=MAX_INT64).map(str) | st.from_regex(r"0{1,5}[0-9]{1,6}", fullmatch=True)


def assert_json_400(response: Any) -> None:
    assert response.status == 400, response.text
    assert isinstance(response.json["message"], str)
    assert "Traceback" not in response.text


def with_query(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}"


# The property the parser of every numeric input keeps.


@settings(max_examples=500)
@given(NOT_A_NUMBER)
def test_whole_number_refuses_anything_but_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError, match="must be a whole number"):
        whole_number(text, minimum=0)


@settings(max_examples=500)
@given(IN_RANGE)
def test_whole_number_reads_ascii_digits_as_int(text: str) -> None:
    assert whole_number(text, minimum=0) == int(text)


# Over HTTP: every query number, path and body chat id.


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
def test_query_numbers_refuse_anything_but_ascii_digits(api: Api, value: str) -> None:
    alice, bob = create_user(api), create_user(api)
    group = run(api, store_group(alice, bob))
    checks = [
        with_query("/api/events", after=value),
        with_query("/api/events", limit=value),
        with_query("/api/users", limit=value),
        with_query("/api/users", offset=value),
        with_query("/api/friends", offset=value),
        with_query("/api/groups", limit=value),
        with_query(f"/api/user-message/{alice.id}/{bob.id}", limit=value),
        with_query(f"/api/groups/{group}/messages", limit=value),
        with_query(f"/api/groups/{group}/members", offset=value),
    ]
    for path in checks:
        response = api.get(path, headers=alice.headers)
        assert_json_400(response)
        assert response.json["errors"][0]["field"].startswith("query."), (path, response.json)


BAD_MESSAGE_IDS = [
    "ａ" * 24,  # fullwidth a
    "٠" * 24,  # Arabic-Indic zeros
    "0" * 24 + "\n",
    " " + "0" * 23,
    "0" * 23 + "²",
    "0x" + "0" * 22,
    "0" * 23 + "g",
]


@pytest.mark.parametrize("before", BAD_MESSAGE_IDS, ids=repr)
def test_before_refuses_anything_but_ascii_hex(api: Api, before: str) -> None:
    alice, bob = create_user(api), create_user(api)
    group = run(api, store_group(alice, bob))
    for path in (f"/api/user-message/{alice.id}/{bob.id}", f"/api/groups/{group}/messages"):
        response = api.get(with_query(path, before=before), headers=alice.headers)
        assert_json_400(response)
        assert [error["field"] for error in response.json["errors"]] == ["query.before"]


def test_before_takes_ascii_hex_in_either_case(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)
    make_friends(api, alice, bob)
    first = direct_message(api, alice, bob, "first")["id"]
    direct_message(api, alice, bob, "second")
    path = f"/api/user-message/{alice.id}/{bob.id}"
    for before in (first.lower(), first.upper()):
        response = api.get(with_query(path, before=before), headers=alice.headers)
        assert response.status == 200, response.text
        assert response.json == []  # nothing is older than the first message
    # Well-formed but no message of this conversation: refused for what it names, not for its form.
    response = api.get(with_query(path, before="0" * 24), headers=alice.headers)
    assert response.status == 400
    assert "errors" not in response.json, response.json


@pytest.mark.parametrize("value", [value for value in NOT_ASCII_DIGITS if value])
def test_check_chat_id_refuses_anything_but_ascii_digits(api: Api, value: str) -> None:
    # A user holds chat_id 12: a misreading of "١٢" as 12 would answer 422 (taken).
    create_user(api, chat_id=12, login=False)
    response = api.get(f"/api/users/checkChatId/{quote(value, safe='')}")
    assert_json_400(response)
    assert api.get("/api/users/checkChatId/12").status == 422
    assert api.get("/api/users/checkChatId/0012").status == 422  # ASCII digits, leading zeros and all


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
def test_body_chat_ids_refuse_anything_but_ascii_digits(api: Api, value: str) -> None:
    owner = create_user(api, chat_id=12, login=False)
    login = api.post("/api/login", json={"chat_id": value, "password": owner.password})
    assert_json_400(login)
    assert "token" not in login.json
    assert [error["field"] for error in login.json["errors"]] == ["chat_id"]
    register = api.post(
        "/api/register", json={"username": "x", "password": "secret-1", "email": "x@example.com", "chat_id": value}
    )
    assert_json_400(register)
    assert [error["field"] for error in register.json["errors"]] == ["chat_id"]
    assert api.get("/api/users/checkEmail/x@example.com").status == 200  # nothing was stored


def test_property_http_after_refuses_anything_but_ascii_digits(api: Api) -> None:
    user = create_user(api)

    @settings(max_examples=40, deadline=None)
    @given(NOT_A_NUMBER)
    def check(text: str) -> None:
        assert_json_400(api.get(with_query("/api/events", after=text), headers=user.headers))

    check()


def test_property_http_after_reads_ascii_digits_as_int(api: Api) -> None:
    user = create_user(api)
    seqs = [run(api, publish("message", [user.id], {"message": {}})) for _ in range(4)]

    @settings(max_examples=40, deadline=None)
    @given(st.integers(min_value=0, max_value=seqs[-1] + 2).map(lambda n: f"{n:0{n % 3 + 1}d}") | IN_RANGE)
    def check(text: str) -> None:
        response = api.get(with_query("/api/events", after=text), headers=user.headers)
        if int(text) > seqs[-1]:  # a seq never given out: 422 (docs/api.md), so read as that number too
            assert response.status == 422, response.text
            return
        assert response.status == 200, response.text
        assert [event["seq"] for event in response.json] == [seq for seq in seqs if seq > int(text)]

    check()


# Over the WebSocket: `last_seq` in the query and in the auth frame.


async def _close_code_for_query(api: Api, user: TestUser, last_seq: str) -> int | None:
    query = "?" + urlencode({"token": user.token, "last_seq": last_seq})
    async with connect(ws_url(api, query)) as ws:
        return await close_code(ws)


async def _close_code_for_frame(api: Api, user: TestUser, last_seq: str) -> int | None:
    async with connect(ws_url(api)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": user.token, "last_seq": last_seq}))
        return await close_code(ws)


@pytest.mark.parametrize("value", NOT_ASCII_DIGITS)
def test_last_seq_refuses_anything_but_ascii_digits_with_4401(api: Api, value: str) -> None:
    user = create_user(api)

    async def scenario() -> None:
        assert await _close_code_for_frame(api, user, value) == 4401
        if value:  # `?last_seq=` (blank) is taken as absent, as before
            assert await _close_code_for_query(api, user, value) == 4401

    run(api, scenario())


def test_last_seq_of_ascii_digits_is_read_as_that_number(api: Api) -> None:
    user = create_user(api)

    async def scenario() -> None:
        seqs = [await publish("message", [user.id], {"message": {}}) for _ in range(3)]
        for given_seq in (str(seqs[0]), f"00{seqs[0]}"):
            query = "?" + urlencode({"token": user.token, "last_seq": given_seq})
            async with connect(ws_url(api, query)) as ws:
                frames = [await next_frame(ws) for _ in range(3)]
            assert frames[0]["type"] == "ready"
            assert [frame["seq"] for frame in frames[1:]] == seqs[1:]

    run(api, scenario())


def test_property_websocket_last_seq_refuses_anything_but_ascii_digits(api: Api) -> None:
    user = create_user(api)

    @settings(max_examples=25, deadline=None)
    @given(NOT_A_NUMBER.filter(lambda text: text != ""))
    def check(text: str) -> None:
        assert run(api, _close_code_for_frame(api, user, text)) == 4401

    check()


def test_path_ids_are_ascii_hex_only(api: Api) -> None:
    alice = create_user(api)
    arabic_indic = alice.id.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    fullwidth = alice.id.translate(str.maketrans("0123456789abcdef", "０１２３４５６７８９ａｂｃｄｅｆ"))
    for other_form in (arabic_indic, fullwidth, f"{alice.id}\n", f" {alice.id}", f"{alice.id} "):
        response = api.get(f"/api/users/{quote(other_form, safe='')}", headers=alice.headers)
        assert response.status == 404, (other_form, response.text)
        assert isinstance(response.json["message"], str)
    assert api.get(f"/api/users/{alice.id.upper()}", headers=alice.headers).status == 200


def test_typing_frame_ids_are_ascii_hex_only(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        await befriend(alice, bob)
        ws, _ = await open_socket(ws_url(api), alice)
        arabic_indic = bob.id.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
        for other_form in (arabic_indic, f"{bob.id}\n", f" {bob.id}", bob.id[:-1] + "²"):
            await ws.send(json.dumps({"type": "typing", "to_id": other_form}))
            frame = await next_frame(ws)
            assert frame == {"type": "error", "message": "to_id and group_id are 24 lowercase hex digits"}, frame
        await ws.close()

    run(api, scenario())
