"""The README's first chat session, as a new user would try it: register, befriend, chat over REST and WebSocket,
a group with a third user, and an avatar that a browser can show."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.factories import TestUser, log_in
from tests.helpers import Api
from tests.realtime_helpers import fresh_hub, next_frame, open_socket, run, ws_url

pytestmark = pytest.mark.usefixtures(fresh_hub.__name__)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(64)


def test_the_readme_session_works_end_to_end(api: Api) -> None:
    ids, tokens, users = {}, {}, {}
    for name, chat_id in (("alice", "9001001"), ("bob", "9001002"), ("carol", "9001003")):
        password = f"password-{name}"
        api.passwords.add(password)
        body = {"username": name, "chat_id": chat_id, "email": f"{name}@example.com", "password": password}
        registered = api.post("/api/register", json=body)
        assert registered.status == 201, registered.text
        ids[name] = registered.json["user_id"]
        token = log_in(api, chat_id, password)
        tokens[name] = {"Authorization": token}
        users[name] = TestUser(ids[name], int(chat_id), f"{name}@example.com", password, name, token)
    alice, bob, carol = tokens["alice"], tokens["bob"], tokens["carol"]

    for friend in ("bob", "carol"):
        asked = api.post("/api/user-requests", headers=alice, json={"to_id": ids[friend], "verify_data": "hi"})
        assert asked.status == 201, asked.text
        answer = {"status": "agree"}
        agreed = api.put(f"/api/user-requests/{asked.json['user_request_id']}", headers=tokens[friend], json=answer)
        assert agreed.status == 204, agreed.text
    assert {friend["id"] for friend in api.get("/api/friends", headers=alice).json} == {ids["bob"], ids["carol"]}

    group = api.post("/api/groups", headers=alice, json={"group_name": "hikers"})
    assert group.status == 201
    group_id = group.json["group_id"]
    for member in ("bob", "carol"):
        added = api.post(f"/api/groups/{group_id}/members", headers=alice, json={"user_id": ids[member]})
        assert added.status == 201, added.text

    async def chat() -> None:
        bob_ws, _ = await open_socket(ws_url(api), users["bob"])
        async with httpx.AsyncClient(base_url=f"http://{api.client.host}:{api.client.port}") as http:
            body = {"to_id": ids["bob"], "msg": "hello bob", "client_msg_id": "m1"}
            sent = await http.post("/api/user-message", headers=alice, json=body)
            assert sent.status_code == 201
            frame = await next_frame(bob_ws)
            assert (frame["type"], frame["message"]["msg"], frame["message"]["from_id"]) == (
                "message",
                "hello bob",
                ids["alice"],
            )
            posted = await http.post(f"/api/groups/{group_id}/messages", headers=carol, json={"msg": "hello all"})
            assert posted.status_code == 201
            frame = await next_frame(bob_ws)
            assert (frame["type"], frame["group_id"], frame["message"]["msg"]) == (
                "group_message",
                group_id,
                "hello all",
            )
        await bob_ws.close()

    run(api, chat())

    history = api.get(f"/api/user-message/{ids['alice']}/{ids['bob']}", headers=bob)
    assert [m["msg"] for m in history.json] == ["hello bob"]
    conversations = {(c["type"], c["id"]): c for c in api.get("/api/conversations", headers=bob).json}
    assert conversations[("user", ids["alice"])]["unread"] == 1
    assert conversations[("group", group_id)]["last_message"]["msg"] == "hello all"

    uploaded = api.post("/api/upload/image", headers=alice, files={"file": ("avatar.png", PNG, "image/png")})
    assert uploaded.status == 201, uploaded.text
    url = uploaded.json["url"]
    assert api.put(f"/api/users/{ids['alice']}", headers=alice, json={"avatar": url}).status == 204
    assert api.get(f"/api/users/{ids['alice']}", headers=bob).json["avatar"] == url
    shown = api.get(url)  # public: an <img src> sends no token
    assert shown.status == 200
    assert shown.headers["content-type"] == "image/png"
    assert shown.content == PNG
