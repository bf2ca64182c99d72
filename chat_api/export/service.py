"""Writing a user's export as a stream of JSON text: bounded memory however much there is; no HTTP.

Each list is read from the store with a cursor, BATCH documents at a time, and written out a batch
at a time, so the memory used is a batch of documents and its text, not the account's data.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

from pydantic_core import to_json

from chat_api.blocks import repository as blocks
from chat_api.common.clock import stored_datetime
from chat_api.files.service import files_of
from chat_api.friends import repository as friends
from chat_api.groups import repository as groups
from chat_api.groups.repository import group_messages
from chat_api.messages.repository import direct_messages
from chat_api.messages.schemas import Previews, current_state
from chat_api.messages.service import previews_for
from chat_api.users import repository as users
from chat_api.users.schemas import UserPublic

# Documents per store batch and per piece of text sent: a message is a few hundred bytes of JSON,
# so a piece is about a few hundred KB.
BATCH = 1000
Item = dict[str, Any]


def encode(value: Any) -> str:
    """Compact JSON, dates written as every other answer of the API writes them (pydantic's form)."""
    return to_json(value).decode()


async def in_batches(items: AsyncIterable[Item]) -> AsyncIterator[list[Item]]:
    batch: list[Item] = []
    async for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def json_array(batches: AsyncIterable[Iterable[Item]]) -> AsyncIterator[str]:
    """`[`, the items a batch at a time, `]`."""
    yield "["
    first = True
    async for batch in batches:
        text = ",".join(encode(item) for item in batch)
        if text:
            yield text if first else "," + text
            first = False
    yield "]"


async def export_document(user_id: str, profile: UserPublic) -> AsyncIterator[str]:
    """The whole export of `user_id`, as pieces of one JSON document (schemas.Export)."""
    group_ids: list[str] = []
    yield '{"profile":' + profile.model_dump_json()
    yield ',"friends":'
    async for piece in json_array(_friends(user_id)):
        yield piece
    yield ',"friend_requests":'
    async for piece in json_array(_requests(user_id)):
        yield piece
    yield ',"blocks":'
    async for piece in json_array(_batched(blocks.blocks_of(user_id, BATCH), _block)):
        yield piece
    yield ',"groups":'
    async for piece in json_array(_groups(user_id, group_ids)):
        yield piece
    yield ',"messages":'
    # Every direct conversation the user has had, with a friend of now or of before.
    pairs = [(other_of(pair, user_id), pair) for pair in await friends.direct_conversations_of(user_id)]
    async for piece in json_array(_messages(user_id, pairs, group_ids)):
        yield piece
    yield ',"files":'
    async for piece in json_array(_batched(files_of(user_id, BATCH), _file)):
        yield piece
    yield "}"


async def _batched(cursor: AsyncIterable[Item], shape: Callable[[Item], Item]) -> AsyncIterator[list[Item]]:
    async for batch in in_batches(cursor):
        yield [shape(doc) for doc in batch]


def other_of(pair: str, user_id: str) -> str:
    low, high = pair.split(":")
    return high if low == user_id else low


async def _friends(user_id: str) -> AsyncIterator[list[Item]]:
    async for batch in in_batches(friends.friendships_of(user_id, BATCH)):
        profiles = await users.public_users(doc["friend_id"] for doc in batch)
        out = []
        for doc in batch:
            profile = profiles.get(doc["friend_id"])
            username = profile.username if profile is not None else None
            out.append({"user_id": doc["friend_id"], "username": username, "since": stored_datetime(doc["created_at"])})
        yield out


async def _requests(user_id: str) -> AsyncIterator[list[Item]]:
    for side in ("from_id", "to_id"):
        async for batch in in_batches(friends.requests_involving(user_id, side, BATCH)):
            yield [
                {
                    "id": str(doc["_id"]),
                    "from_id": doc["from_id"],
                    "to_id": doc["to_id"],
                    "verify_data": doc["verify_data"],
                    "status": doc["status"],
                    "created_at": doc["created_at"],
                    # Written by $set: nx-27017 gives it back as a naive string (docs/store.md).
                    "answered_at": stored_datetime(doc["answered_at"]) if doc.get("answered_at") else None,
                }
                for doc in batch
            ]


async def _groups(user_id: str, group_ids: list[str]) -> AsyncIterator[list[Item]]:
    async for batch in in_batches(groups.memberships_cursor(user_id, BATCH)):
        projection = {"group_name": 1, "group_desc": 1, "lord_id": 1, "created_at": 1}
        found = {str(doc["_id"]): doc for doc in await groups.groups_by_ids([m["group_id"] for m in batch], projection)}
        out = []
        for membership in batch:
            group = found.get(membership["group_id"])
            if group is None:  # deleted, its purge under way
                continue
            group_ids.append(membership["group_id"])
            out.append(
                {
                    "id": membership["group_id"],
                    "group_name": group["group_name"],
                    "group_desc": group.get("group_desc"),
                    "lord_id": group["lord_id"],
                    "created_at": stored_datetime(group["created_at"]),
                    "identity": membership["identity"],
                    "joined_at": stored_datetime(membership["joined_at"]),
                }
            )
        yield out


async def _messages(user_id: str, pairs: list[tuple[str, str]], group_ids: list[str]) -> AsyncIterator[list[Item]]:
    """Each message as it is now (edited text, recalled placeholder, reactions with the user's own `me`, the
    preview of the message a reply answers: one more read per batch that has replies)."""
    conversations = [(direct_messages, pair, {"type": "user", "id": friend}) for friend, pair in pairs]
    conversations += [(group_messages, group_id, {"type": "group", "id": group_id}) for group_id in group_ids]
    for store, conversation_id, conversation in conversations:
        after = 0  # messages are numbered from 1
        while True:
            batch = await store.batch_after(conversation_id, after, BATCH)
            if batch:
                previews = await previews_for(store, batch)
                yield [_message(doc, conversation, user_id, previews) for doc in batch]
                after = int(batch[-1]["n"])
            if len(batch) < BATCH:
                break


def _message(doc: Item, conversation: Item, user_id: str, previews: Previews) -> Item:
    state = current_state(doc, user_id, previews)
    return {
        "id": str(doc["_id"]),
        "conversation": conversation,
        "from_id": doc["from_id"],
        "to_id": doc.get("to_id"),
        "msg": doc["msg"],
        "msg_type": doc["msg_type"],
        "client_msg_id": doc.get("client_msg_id"),
        "created_at": stored_datetime(doc["created_at"]),
        "recalled": state["recalled"],
        "edited_at": stored_datetime(doc["edited_at"]) if doc.get("edited_at") else None,
        "reply_to": state["reply_to"].model_dump() if state["reply_to"] is not None else None,
        "reactions": [reaction.model_dump() for reaction in state["reactions"]],
    }


def _block(doc: Item) -> Item:
    return {"user_id": doc["blocked_id"], "since": stored_datetime(doc["created_at"])}


def _file(doc: Item) -> Item:
    metadata = doc.get("metadata") or {}
    return {
        "id": str(doc["_id"]),
        "url": f"/api/files/{doc['_id']}",
        "kind": metadata.get("kind"),
        "content_type": metadata.get("content_type"),
        "length": doc["length"],
        "uploaded_at": stored_datetime(doc["uploadDate"]),
    }
