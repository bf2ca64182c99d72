"""`/ws`: authentication, every event type, resume with last_seq, typing, ping, bad frames and slow clients."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from chat_api.events.models import Event
from chat_api.events.service import newest_seq, publish, publish_to_group, signal
from chat_api.http.types import ChatApp
from chat_api.logs import RequestContext, TextFormatter
from chat_api.realtime.hub import Hub
from tests.factories import create_group, create_user, new_friends, store_group
from tests.helpers import Api
from tests.realtime_helpers import (
    close_code,
    frames_until,
    fresh_hub,
    message_data,
    next_frame,
    no_frame,
    open_socket,
    run,
    ws_url,
)

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)


def test_auth_frame_is_answered_ready_with_the_newest_seq(api: Api) -> None:
    alice = create_user(api)

    async def scenario() -> None:
        seq = await publish("message", ["someone-else"], {"message": {}})
        ws, ready = await open_socket(ws_url(api), alice)
        assert ready["seq"] == seq
        assert ready["user_id"] == alice.id
        await ws.close()

    run(api, scenario())


def test_token_in_the_query_is_accepted_without_an_auth_frame(api: Api) -> None:
    alice = create_user(api)

    async def scenario() -> None:
        token = alice.token.replace(" ", "%20")
        async with connect(ws_url(api, f"?token={token}")) as ws:
            ready = await next_frame(ws)
            assert ready["type"] == "ready"
            await ws.send(json.dumps({"type": "ping"}))
            assert await next_frame(ws) == {"type": "pong"}

    run(api, scenario())


def test_no_auth_frame_within_5_seconds_closes_4401(api: Api) -> None:
    async def scenario() -> None:
        async with connect(ws_url(api)) as ws:
            assert await close_code(ws, timeout=8) == 4401

    run(api, scenario())


@pytest.mark.parametrize(
    "first_frame",
    [
        {"type": "auth", "token": "Bearer not-a-jwt"},
        {"type": "auth"},
        {"type": "ping"},
        "not json",
        {"type": "auth", "token": "<valid>", "last_seq": -1},
        {"type": "auth", "token": "<valid>", "last_seq": "x"},
    ],
)
def test_a_bad_first_frame_or_token_closes_4401(api: Api, first_frame: Any) -> None:
    alice = create_user(api)
    if isinstance(first_frame, dict) and first_frame.get("token") == "<valid>":
        first_frame = {**first_frame, "token": alice.token}

    async def scenario() -> None:
        async with connect(ws_url(api)) as ws:
            await ws.send(first_frame if isinstance(first_frame, str) else json.dumps(first_frame))
            assert await close_code(ws) == 4401

    run(api, scenario())


def test_a_bad_query_token_closes_4401(api: Api) -> None:
    async def scenario() -> None:
        async with connect(ws_url(api, "?token=Bearer%20nope")) as ws:
            assert await close_code(ws) == 4401

    run(api, scenario())


def test_a_revoked_token_closes_4401(api: Api) -> None:
    alice = create_user(api)
    assert api.get("/api/logout", headers=alice.headers).status == 204

    async def scenario() -> None:
        async with connect(ws_url(api)) as ws:
            await ws.send(json.dumps({"type": "auth", "token": alice.token}))
            assert await close_code(ws) == 4401

    run(api, scenario())


def test_logout_closes_every_socket_of_the_user_with_4401(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        first, _ = await open_socket(ws_url(api), alice)
        second, _ = await open_socket(ws_url(api), alice)
        other, _ = await open_socket(ws_url(api), bob)
        async with asyncio.timeout(10):
            await api_logout(api, alice.token)
        assert await close_code(first) == 4401
        assert await close_code(second) == 4401
        await other.send(json.dumps({"type": "ping"}))
        assert await next_frame(other) == {"type": "pong"}
        await other.close()

    run(api, scenario())


async def api_logout(api: Api, token: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
        response = await http.get("/api/logout", headers={"Authorization": token})
        assert response.status_code == 204


@pytest.mark.parametrize("type_", ["message", "group_message", "friend_request"])
def test_stored_event_types_reach_every_socket_of_every_recipient(api: Api, type_: Any) -> None:
    alice, bob, carol = create_user(api), create_user(api), create_user(api)

    async def scenario() -> None:
        # A group event names its group: the members (alice and bob) receive it, carol does not.
        group_id = await store_group(alice, bob)
        data = {
            "message": message_data(alice, bob, "hi"),
            "group_message": {"group_id": group_id, "message": {"id": "1" * 24, "msg": "hello group"}},
            "friend_request": {"request": {"user_request_id": "2" * 24, "from_id": alice.id, "to_id": bob.id}},
        }[type_]
        sender_other_tab, _ = await open_socket(ws_url(api), alice)
        bob_phone, _ = await open_socket(ws_url(api), bob)
        bob_laptop, _ = await open_socket(ws_url(api), bob)
        outsider, _ = await open_socket(ws_url(api), carol)
        if type_ == "group_message":
            seq = (await publish_to_group(type_, group_id, data)).seq_for(alice.id)
        else:
            seq = await publish(type_, [alice.id, bob.id], data)
        for ws in (sender_other_tab, bob_phone, bob_laptop):
            assert await next_frame(ws) == {"type": type_, "seq": seq, **data}
        await no_frame(outsider)
        for ws in (sender_other_tab, bob_phone, bob_laptop, outsider):
            await ws.close()

    run(api, scenario())


def test_without_last_seq_only_events_after_connecting_arrive(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        await publish("message", [bob.id], message_data(alice, bob, "before"))
        ws, ready = await open_socket(ws_url(api), bob)
        seq = await publish("message", [bob.id], message_data(alice, bob, "after"))
        frame = await next_frame(ws)
        assert (frame["seq"], frame["message"]["msg"]) == (seq, "after")
        assert seq > ready["seq"]
        await no_frame(ws)
        await ws.close()

    run(api, scenario())


def test_reconnect_with_last_seq_gets_every_missed_event_once_in_order(api: Api) -> None:
    """Kill a socket mid-stream while events keep coming, reconnect with the last seq seen."""
    alice, bob = create_user(api), create_user(api)
    total = 120

    async def scenario() -> None:
        sent: list[int] = []

        async def sender() -> None:
            for n in range(total):
                sent.append(await publish("message", [alice.id, bob.id], message_data(alice, bob, f"m{n}")))
                if n % 10 == 0:
                    await asyncio.sleep(0.01)

        ws, _ = await open_socket(ws_url(api), bob)
        producing = asyncio.create_task(sender())
        seen = await frames_until(ws, lambda frames: len(frames) >= 30)
        ws.transport.abort()  # a dropped connection, not a clean close
        await asyncio.sleep(0.05)
        ws, _ = await open_socket(ws_url(api), bob, last_seq=seen[-1]["seq"])
        await producing
        seen += await frames_until(ws, lambda frames: bool(frames) and frames[-1]["seq"] == sent[-1])
        await no_frame(ws)
        await ws.close()
        received = [frame["seq"] for frame in seen]
        assert received == sent, "every event exactly once, in order"
        assert [frame["message"]["msg"] for frame in seen] == [f"m{n}" for n in range(total)]

    run(api, scenario())


def test_resume_skips_transient_events_and_other_users_events(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        start = await newest_seq()
        first = await publish("message", [bob.id], message_data(alice, bob, "one"))
        await signal("typing", {"from_id": alice.id, "to_id": bob.id}, to=[bob.id])
        await publish("message", [alice.id], message_data(bob, alice, "not bob's"))
        last = await publish("friend_request", [bob.id], {"request": {"from_id": alice.id}})
        ws, ready = await open_socket(ws_url(api), bob, last_seq=start)
        assert ready["seq"] == last
        frames = await frames_until(ws, lambda frames: len(frames) == 2)
        assert [(f["type"], f["seq"]) for f in frames] == [("message", first), ("friend_request", last)]
        await no_frame(ws)
        await ws.close()

    run(api, scenario())


def test_last_seq_beyond_the_newest_gets_resync_required(api: Api) -> None:
    bob, alice = create_user(api), create_user(api)

    async def scenario() -> None:
        newest = await newest_seq()
        ws, ready = await open_socket(ws_url(api), bob, last_seq=newest + 100)
        assert await next_frame(ws) == {"type": "resync_required", "seq": ready["seq"]}
        # Live events still arrive after a resync notice.
        seq = await publish("message", [bob.id], message_data(alice, bob, "live"))
        assert (await next_frame(ws))["seq"] == seq
        await ws.close()

    run(api, scenario())


def test_last_seq_older_than_the_oldest_kept_event_gets_resync_required(api: Api) -> None:
    alice, bob = create_user(api), create_user(api)

    async def scenario() -> None:
        first = await publish("message", [bob.id], message_data(alice, bob, "expired"))
        await publish("message", [bob.id], message_data(alice, bob, "kept"))
        # What the TTL index does after 7 days.
        await Event.get_pymongo_collection().delete_one({"seq": first})
        ws, _ = await open_socket(ws_url(api), bob, last_seq=first - 1)
        assert (await next_frame(ws))["type"] == "resync_required"
        await ws.close()
        # Resuming from the expired event itself misses nothing: the next one is kept.
        ws, _ = await open_socket(ws_url(api), bob, last_seq=first)
        assert (await next_frame(ws))["message"]["msg"] == "kept"
        await ws.close()

    run(api, scenario())


def test_typing_reaches_a_friend_and_is_never_stored_for_replay(api: Api) -> None:
    alice, bob = new_friends(api)

    async def scenario() -> None:
        start = await newest_seq()
        typist, _ = await open_socket(ws_url(api), alice)
        friend, _ = await open_socket(ws_url(api), bob)
        await typist.send(json.dumps({"type": "typing", "to_id": bob.id}))
        frame = await next_frame(friend)
        assert {k: frame[k] for k in ("type", "from_id", "to_id")} == {
            "type": "typing",
            "from_id": alice.id,
            "to_id": bob.id,
        }
        await no_frame(typist)
        await friend.close()
        replay, _ = await open_socket(ws_url(api), bob, last_seq=start)
        await no_frame(replay)
        await replay.close()
        await typist.close()

    run(api, scenario())


def test_typing_in_a_group_reaches_the_other_members(api: Api) -> None:
    lord, member, outsider = create_user(api), create_user(api), create_user(api)

    async def scenario() -> None:
        group_id = await store_group(lord, member)
        typist, _ = await open_socket(ws_url(api), lord)
        other, _ = await open_socket(ws_url(api), member)
        stranger, _ = await open_socket(ws_url(api), outsider)
        await typist.send(json.dumps({"type": "typing", "group_id": group_id}))
        frame = await next_frame(other)
        assert (frame["type"], frame["from_id"], frame["group_id"]) == ("typing", lord.id, group_id)
        await no_frame(typist)
        await no_frame(stranger)
        await stranger.send(json.dumps({"type": "typing", "group_id": group_id}))
        assert (await next_frame(stranger))["type"] == "error"
        for ws in (typist, other, stranger):
            await ws.close()

    run(api, scenario())


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        json.dumps({"no": "type"}),
        json.dumps({"type": "dance"}),
        json.dumps({"type": "auth", "token": "again"}),
        json.dumps({"type": "typing"}),
        json.dumps({"type": "typing", "to_id": "nope"}),
        json.dumps({"type": "typing", "to_id": "a" * 24, "group_id": "b" * 24}),
        json.dumps({"type": "typing", "to_id": "a" * 24}),  # not a friend
        b"\x00binary",
    ],
)
def test_a_bad_frame_is_answered_with_an_error_and_the_socket_stays_open(api: Api, frame: str | bytes) -> None:
    alice = create_user(api)

    async def scenario() -> None:
        ws, _ = await open_socket(ws_url(api), alice)
        await ws.send(frame)
        answer = await next_frame(ws)
        assert answer["type"] == "error"
        assert answer["message"]
        await ws.send(json.dumps({"type": "ping"}))
        assert await next_frame(ws) == {"type": "pong"}
        await ws.close()

    run(api, scenario())


def test_a_client_that_does_not_read_is_dropped_and_others_keep_receiving(api: Api, app: ChatApp) -> None:
    bob, carol = create_user(api), create_user(api)
    padding = "x" * 200_000
    hub: Hub = app.ctx.hub

    def dropped() -> bool:
        # Seen from the server: the client's own state changes only once it reads again.
        return not any(not connection.closing for connection in hub.sockets.get(bob.id, ()))

    async def scenario() -> None:
        # The client library stops reading the connection once it holds one unread message.
        sleeper, _ = await open_socket(ws_url(api), bob, max_queue=1, max_size=None)
        reader, _ = await open_socket(ws_url(api), carol, max_size=None)
        received = 0
        for n in range(400):
            await publish("message", [bob.id, carol.id], {"message": {"msg": padding, "n": n}})
            await frames_until(reader, lambda frames: len(frames) == 1, timeout=5)
            received += 1
            if dropped():
                break
            await asyncio.sleep(0)
        assert received < 400, "the non-reading client was never dropped"
        # Once it reads again, the client finds its connection gone.
        assert await close_code(sleeper, timeout=10) in (4408, 1006)
        await reader.close()

    run(api, scenario(), timeout=120)


def test_no_log_line_shows_a_query_token(api: Api) -> None:
    alice = create_user(api)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(RequestContext())
    handler.setFormatter(TextFormatter())
    loggers = [logging.getLogger(name) for name in ("sanic.access", "sanic.websockets", "sanic.error", "chat_api")]
    for logger in loggers:
        logger.addHandler(handler)
    try:

        async def scenario() -> None:
            token = alice.token.replace(" ", "%20")
            async with connect(ws_url(api, f"?token={token}&last_seq=0")) as ws:
                await next_frame(ws)
            async with connect(ws_url(api, f"?token={token}x")) as ws:
                await close_code(ws)

        run(api, scenario())
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    jwt = alice.token.removeprefix("Bearer ")
    assert not [line for line in lines if jwt in line or jwt.rsplit(".", 1)[1] in line]


def test_messages_sent_over_rest_reach_the_sockets_of_both_sides(api: Api) -> None:
    alice, bob, carol = create_user(api), create_user(api), create_user(api)
    group_id = create_group(api, alice, members=(bob, carol), group_name="trio")  # friends of alice, added by her

    async def scenario() -> None:
        alice_tab, _ = await open_socket(ws_url(api), alice)
        bob_ws, _ = await open_socket(ws_url(api), bob)
        carol_ws, _ = await open_socket(ws_url(api), carol)
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            body = {"to_id": bob.id, "msg": "hello bob", "client_msg_id": "c-1"}
            sent = await http.post("/api/user-message", headers=alice.headers, json=body)
            assert sent.status_code == 201
            for ws in (alice_tab, bob_ws):
                frame = await next_frame(ws)
                assert frame["type"] == "message"
                assert frame["message"]["id"] == sent.json()["user_message_id"]
                assert frame["message"]["client_msg_id"] == "c-1"
            await no_frame(carol_ws)
            posted = await http.post(f"/api/groups/{group_id}/messages", headers=bob.headers, json={"msg": "hi all"})
            assert posted.status_code == 201
            for ws in (alice_tab, bob_ws, carol_ws):
                frame = await next_frame(ws)
                assert (frame["type"], frame["group_id"], frame["message"]["msg"]) == (
                    "group_message",
                    group_id,
                    "hi all",
                )
        for ws in (alice_tab, bob_ws, carol_ws):
            await ws.close()

    run(api, scenario())
