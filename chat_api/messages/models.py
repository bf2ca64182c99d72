"""Direct messages as stored in MongoDB, and the one builder of a stored message (direct or group)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from beanie import Document
from bson import ObjectId
from pydantic import Field
from pymongo import IndexModel

from chat_api.common.clock import epoch_ms, stored_datetime
from chat_api.messages.terms import message_terms
from chat_api.store.keys import ascending

MsgType = Literal["txt", "img", "voice"]


class StoredMessage(Document):
    """The fields every stored message has, direct or group (its conversation is the subclass's)."""

    from_id: str
    msg: str
    msg_type: MsgType = "txt"
    # The message's number in its conversation (1, 2, 3... in the order the numbers were taken from
    # the conversation's counter): the history's order and the unread counts (docs/decisions.md).
    n: int
    # The hex string of this document's own ObjectId: the message's public id.
    key: str
    # "<from_id>:<client_msg_id>", or the message's own key when the client sent none, under a
    # unique index: a retried send finds the original (a sparse index would be dropped).
    client_key: str
    client_msg_id: str | None = None
    created_at: datetime
    seq: int | None = None  # the event that delivered it, once published
    # While `seq` is None, the request that stored the message is delivering it until this time
    # (epoch ms); after it, a retry with the same client_msg_id takes the delivery over. An int:
    # nx-27017 turns dates written by $set into strings, which equality filters would then miss.
    deliver_by_ms: int | None = None
    # Its sender deleted their account with `?erase=true`: `msg` is blank and `msg_type` txt.
    erased: bool = False
    # Issue 13 (docs/decisions.md, "Recall, edit, replies, reactions"); absent on older documents.
    # Recalled: `msg` is blank (the text and file link are gone from the store), `reactions` empty.
    recalled: bool = False
    # The `seq` of the recall's event once published; None while a recall is stored but not announced
    # (a retry announces it: docs/reliability.md).
    recall_seq: int | None = None
    edited_at: datetime | None = None
    # The `seq` of the last edit's event once published; None while it is stored but not announced.
    edit_seq: int | None = None
    reply_to: str | None = None  # the original's public id (`key`), in the same conversation
    # [{"emoji": str, "users": [user id, ...]}], in the order each emoji was first added.
    reactions: list[dict[str, Any]] = Field(default_factory=list)
    # Bumped by every recall, edit and reaction: each is a compare-and-set on it (docs/store.md).
    version: int | None = None
    # Group messages only: the member ids it mentions, or ["all"] (absent: none).
    mentions: list[str] = Field(default_factory=list)

    # Both message collections have these besides their history's (<conversation>, key): the unique
    # client_key, and from_id (the messages an account sent, found when it is erased: accounts.service).
    SHARED_INDEXES: ClassVar[list[IndexModel]] = [ascending("client_key", unique=True), ascending("from_id")]


class DirectMessage(StoredMessage):
    pair: str  # friends.models.pair_key(from_id, to_id)
    to_id: str

    class Settings:
        name = "user_messages"
        indexes: ClassVar[list[IndexModel]] = [ascending("pair", "n", unique=True), *StoredMessage.SHARED_INDEXES]


def new_message_doc(
    target: Mapping[str, str],
    from_id: str,
    msg: str,
    *,
    n: int,
    msg_type: MsgType = "txt",
    client_msg_id: str | None = None,
    created_at: datetime,
    deliver_by_ms: int | None = None,
    reply_to: str | None = None,
    mentions: list[str] | None = None,
) -> dict[str, Any]:
    """A direct or group message as stored, not yet delivered (`seq` None). `target` is its pair and
    `to_id`, or its `group_id`; `n` its number in that conversation; `deliver_by_ms` is the storing
    request's delivery lease, if any; `reply_to` the key of the message it answers; `mentions` (group
    messages only) the member ids it calls, or `["all"]`, stored only when there are some."""
    oid = ObjectId()
    key = str(oid)
    doc: dict[str, Any] = {
        "_id": oid,
        **target,
        "from_id": from_id,
        "msg": msg,
        "msg_type": msg_type,
        "n": n,
        "key": key,
        "client_key": f"{from_id}:{client_msg_id}" if client_msg_id is not None else key,
        "client_msg_id": client_msg_id,
        "created_at": created_at,
        "seq": None,
        "deliver_by_ms": deliver_by_ms,
        "reply_to": reply_to,
    }
    if mentions:
        doc["mentions"] = mentions
    return doc


def message_summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a conversation shows of its newest message (kept on Friendship and Group, beside its `n`);
    `recalled` only on a recalled one (its `msg` is then blank)."""
    summary = {
        "id": doc["key"],
        "from_id": doc["from_id"],
        "msg": doc["msg"],
        "msg_type": doc["msg_type"],
        "created_at": doc["created_at"],
    }
    if doc.get("recalled"):
        summary["recalled"] = True
    return summary


# What a recalled message becomes in the store (beside its `recall_seq` and `version`): its
# text or file link and its reactions gone; `msg_type` stays, so a client can say "recalled a photo".
RECALLED: dict[str, Any] = {"recalled": True, "msg": "", "reactions": []}


# What an erased message becomes: text that says nothing, marked as erased.
ERASED = {"msg": "", "msg_type": "txt", "erased": True}


def erased_summary(summary: Mapping[str, Any] | None, sender: str) -> dict[str, Any] | None:
    """A conversation's summary with its text erased if `sender` wrote it; None when there is nothing to change."""
    if summary is None or summary.get("from_id") != sender:
        return None
    return {**summary, **ERASED}


class MessageTerm(Document):
    """One search posting: a message (`key`) is indexed under `term` for the readers of `owner`.

    `owner` is a direct message's participant (each one's own copy, so a user's direct messages are one index
    range) or `g:<group id>` (one copy for all members). `pos` orders postings newest first: the message's
    creation time (epoch ms, 13 digits) then its key, so equal times still have one order. The `_id` is
    `<key>/<owner>/<term>`, so indexing a message again (a retried send) inserts nothing new.
    """

    owner: str
    term: str
    pos: str
    key: str
    from_id: str

    class Settings:
        name = "message_terms"
        indexes: ClassVar[list[IndexModel]] = [
            # The search: one term of one owner, newest first, from a position on (`$eq`, `$eq`, range).
            ascending("owner", "term", "pos"),
            # A message's postings (recall, edit), and a sender's (account erasure).
            ascending("key"),
            ascending("from_id"),
        ]


def group_owner(group_id: str) -> str:
    return f"g:{group_id}"


def message_position(doc: Mapping[str, Any]) -> str:
    """Where a message stands in the search's newest-first order (MessageTerm.pos)."""
    return f"{epoch_ms(stored_datetime(doc['created_at'])):013d}{doc['key']}"


def searchable(doc: Mapping[str, Any]) -> bool:
    """Whether a stored message's text is found by search: text, neither recalled nor erased."""
    return doc.get("msg_type", "txt") == "txt" and not doc.get("recalled", False) and not doc.get("erased", False)


def new_term_docs(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The postings of a stored message (none if it is not searchable): one per term and reader scope."""
    if not searchable(doc):
        return []
    owners = [group_owner(doc["group_id"])] if "group_id" in doc else sorted({doc["from_id"], doc["to_id"]})
    pos = message_position(doc)
    return [
        {
            "_id": f"{doc['key']}/{owner}/{term}",
            "owner": owner,
            "term": term,
            "pos": pos,
            "key": doc["key"],
            "from_id": doc["from_id"],
        }
        for owner in owners
        for term in message_terms(doc["msg"])
    ]
