"""Recall and edit of direct and group messages over real HTTP and WebSocket (issue 13): who may, within which
window, what every answer shows afterwards, the events, and retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pymongo.database import Database

from chat_api.common.clock import utc_now
from tests.factories import create_group, create_user, direct_message, make_friends, send_direct, send_group
from tests.helpers import Api, assert_error

Db = Database[dict[str, Any]]


def history(api: Api, viewer: Any, other: Any) -> list[dict[str, Any]]:
    response = api.get(f"/api/user-message/{viewer.id}/{other.id}", headers=viewer.headers)
    assert response.status == 200, response.text
    return list(response.json)


def test_smoke(api: Api) -> None:
    a, b = create_user(api), create_user(api)
    make_friends(api, a, b)
    m = direct_message(api, a, b, "hello")
    r = api.delete(f"/api/user-message/{m['id']}", headers=a.headers)
    assert r.status == 204, r.text
    h = history(api, b, a)
    assert h[0]["recalled"] is True and h[0]["msg"] == "", h
    m2 = direct_message(api, a, b, "typo")
    r = api.patch(f"/api/user-message/{m2['id']}", json={"msg": "fixed"}, headers=a.headers)
    assert r.status == 200, r.text
    assert r.json["msg"] == "fixed" and r.json["edited_at"]
    r = api.put(f"/api/user-message/{m2['id']}/reactions/%F0%9F%91%8D", headers=b.headers)
    assert r.status == 204, r.text
    r = send_direct(api, b, a, "re", reply_to=m2["id"])
    assert r.status == 201, r.text
    h = history(api, a, b)
    print(h)
    assert h[0]["reply_to"]["msg"] == "fixed"
    assert h[1]["reactions"] == [{"emoji": "👍", "count": 1, "me": False}]
    c = api.get("/api/conversations", headers=a.headers).json
    print(c)
