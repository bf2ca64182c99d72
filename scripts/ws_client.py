"""`python -m scripts.ws_client`: a small terminal chat client for `/ws` (docs/api.md, "Real time").

Prints every frame it receives, one JSON line each (what happens to a message, a one-line account of it first:
`* edited`, `* recalled`, `* reaction`, `* read`, `* pin`), and reads commands from stdin; <message> is a direct
message's id, or <group_id>/<message_id> for a group's:
  send <user_id> <text>       a direct message (POST /api/user-message)
  group <group_id> <text>     a group message (POST /api/groups/<id>/messages)
  to <user_id>                the friend a direct `reply` goes to
  reply <message> <text>      a reply in the message's conversation
  edit <message> <text>       edit one of my text messages
  recall <message>            recall a message
  react <message> <emoji>     add a reaction (unreact <message> <emoji> takes it back)
  read <user_id>              mark my conversation with a friend read (they see "read")
  typing <user_id>            a typing notice to a friend
  ping                        the server answers pong
  {"type": ...}               any JSON line is sent as a frame as it is
When the connection drops it reconnects with the last seq it saw, so nothing is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

RECONNECT_DELAY = 1.0
USAGE = (
    "send <user_id> <text> | group <group_id> <text> | to <user_id> | reply <message> <text> | edit <message> <text>"
    " | recall <message> | react|unreact <message> <emoji> | read <user_id> | typing <user_id> | ping"
)


def rest(base: str, method: str, path: str, body: dict[str, Any] | None, token: str | None) -> tuple[int, Any]:
    # Only http(s): the base URL is checked in main().
    data = json.dumps(body).encode() if body else None
    request = urllib.request.Request(f"{base}{path}", method=method, data=data)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def log_in(base: str, chat_id: str, password: str) -> str:
    status, body = rest(base, "POST", "/api/login", {"chat_id": chat_id, "password": password}, None)
    if status != 200:
        raise SystemExit(f"login failed ({status}): {body}")
    token: str = body["token"]
    return token


def describe(frame: dict[str, Any]) -> str | None:
    """A one-line account of what happened to a message, for the frames a person wants to notice; None otherwise."""
    kind = frame.get("type")
    where = frame.get("conversation") or {}
    place = f"{where.get('type', 'group')} {where.get('id', frame.get('group_id', '?'))}"
    if kind == "message_edited":
        message = frame.get("message", {})
        return f"* edited in {place}: {message.get('id')} now says {message.get('msg')!r}"
    if kind == "message_recalled":
        return f"* recalled in {place}: {frame.get('message_id')}"
    if kind == "reaction":
        verb = "reacted" if frame.get("added") else "took back"
        return f"* reaction in {place}: {frame.get('user_id')} {verb} {frame.get('emoji')} on {frame.get('message_id')}"
    if kind == "read":
        return f"* read: {where.get('id')} has read up to {frame.get('up_to')}"
    if kind == "pin":
        verb = "pinned" if frame.get("pinned") else "unpinned"
        return f"* pin in group {frame.get('group_id')}: {frame.get('message_id')} {verb}"
    if kind == "group_message" and frame.get("mentioned"):
        return f"* you were mentioned in group {frame.get('group_id')}"
    return None


def message_path(ref: str) -> str:
    """The REST path of a message named as <message_id> (direct) or <group_id>/<message_id> (group)."""
    group_id, _, message_id = ref.rpartition("/")
    return f"/api/groups/{group_id}/messages/{message_id}" if group_id else f"/api/user-message/{message_id}"


class Client:
    def __init__(self, base: str, token: str):
        self.base = base.rstrip("/")
        self.token = token
        self.last_seq: int | None = None
        self.ws: ClientConnection | None = None
        self.reply_to_user: str | None = None  # the friend a direct `reply` goes to (`to <user_id>`)

    def show(self, message: Any) -> None:
        print(json.dumps(message, ensure_ascii=False), flush=True)

    def show_frame(self, frame: dict[str, Any]) -> None:
        account = describe(frame)
        if account is not None:
            print(account, flush=True)
        self.show(frame)

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        status, answer = await asyncio.to_thread(rest, self.base, method, path, body, self.token)
        self.show({"rest": status, "body": answer})

    async def receive_forever(self) -> None:
        url = self.base.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
        while True:
            try:
                async with connect(url) as ws:
                    auth: dict[str, Any] = {"type": "auth", "token": self.token}
                    if self.last_seq is not None:
                        auth["last_seq"] = self.last_seq
                    await ws.send(json.dumps(auth))
                    self.ws = ws
                    async for raw in ws:
                        frame = json.loads(raw)
                        if (frame.get("type") == "ready" and self.last_seq is None) or isinstance(
                            frame.get("seq"), int
                        ):
                            self.last_seq = frame["seq"]
                        self.show_frame(frame)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                self.show({"closed": code, "reason": closed.rcvd.reason if closed.rcvd else ""})
                if code == 4401:
                    return  # a bad or revoked token: reconnecting would not help
            except (OSError, InvalidHandshake) as error:
                self.show({"error": f"cannot connect: {error}"})
            self.ws = None
            await asyncio.sleep(RECONNECT_DELAY)

    async def command(self, line: str) -> None:
        line = line.strip()
        if not line:
            return
        if line.startswith("{"):
            await self.send_frame(json.loads(line))
            return
        verb, _, rest_of_line = line.partition(" ")
        target, _, text = rest_of_line.partition(" ")
        if verb == "ping":
            await self.send_frame({"type": "ping"})
        elif verb == "typing" and target:
            await self.send_frame({"type": "typing", "to_id": target})
        elif verb in ("send", "group") and target and text:
            path, body = (
                ("/api/user-message", {"to_id": target, "msg": text})
                if verb == "send"
                else (f"/api/groups/{target}/messages", {"msg": text})
            )
            body["client_msg_id"] = uuid.uuid4().hex
            await self.call("POST", path, body)
        elif verb == "reply" and target and text:
            group_id, _, message_id = target.rpartition("/")
            if group_id:
                await self.call("POST", f"/api/groups/{group_id}/messages", {"msg": text, "reply_to": message_id})
            elif self.reply_to_user:
                await self.call(
                    "POST", "/api/user-message", {"to_id": self.reply_to_user, "msg": text, "reply_to": target}
                )
            else:
                self.show({"error": "a direct reply needs the friend first: to <user_id>"})
        elif verb == "to" and target:
            self.reply_to_user = target
        elif verb == "edit" and target and text:
            await self.call("PATCH", message_path(target), {"msg": text})
        elif verb == "recall" and target:
            await self.call("DELETE", message_path(target))
        elif verb in ("react", "unreact") and target and text:
            await self.call("PUT" if verb == "react" else "DELETE", f"{message_path(target)}/reactions/{quote(text)}")
        elif verb == "read" and target:
            await self.call("PUT", f"/api/conversations/user/{target}/read")
        else:
            self.show({"error": "commands: " + USAGE})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        # A line typed (or piped) before the socket is up waits for it a little, rather than being lost.
        for _ in range(50):
            if self.ws is not None:
                break
            await asyncio.sleep(0.1)
        if self.ws is None:
            self.show({"error": "not connected"})
            return
        await self.ws.send(json.dumps(frame))


async def main_async(client: Client) -> None:
    receiver = asyncio.create_task(client.receive_forever())
    loop = asyncio.get_running_loop()
    while not receiver.done():
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        await client.command(line)
    receiver.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.ws_client", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:7001", help="the API's base URL")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help='"Bearer <jwt>" as POST /api/login answers it')
    who.add_argument("--login", metavar="CHAT_ID_OR_EMAIL", help="log in first (the password is asked for)")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://", "https://")):
        parser.error("--url must start with http:// or https://")
    token = args.token or log_in(args.url.rstrip("/"), args.login, getpass.getpass("password: "))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main_async(Client(args.url, token)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
