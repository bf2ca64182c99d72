"""Direct messages between friends: sending (stored, published, summarised) and the history; no HTTP.

The storing and the at-least-once delivery of a message (`store_message`, `DELIVERY_LEASE_MS`) serve
group messages too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from chat_api.common.clock import epoch_ms, utc_now
from chat_api.common.errors import Conflict, DomainError, Forbidden, Invalid, UserNotFound
from chat_api.common.ids import canonical_id
from chat_api.events.service import PublishFailed, publish
from chat_api.files.service import file_url_exists
from chat_api.friends import repository as friends
from chat_api.friends.models import pair_key
from chat_api.messages import postings
from chat_api.messages.models import message_summary, new_message_doc
from chat_api.messages.repository import MessageStore, direct_messages
from chat_api.messages.schemas import DirectMessageIn, MessageIn, MessagePublic
from chat_api.users import repository as users

# How long the request that stored a message has to deliver it before a retry may take over.
DELIVERY_LEASE_MS = 10_000

log = logging.getLogger("chat_api.messages")


def new_message(from_id: str, body: MessageIn, n: int, **target: str) -> dict[str, Any]:
    """A message to store, numbered `n` in its conversation, with the storing request's delivery lease.

    Built once the number is taken, so `created_at` is the time the conversation's order was decided.
    """
    now = utc_now()
    return new_message_doc(
        target,
        from_id,
        body.msg,
        n=n,
        msg_type=body.msg_type,
        client_msg_id=body.client_msg_id,
        created_at=now,
        deliver_by_ms=epoch_ms(now) + DELIVERY_LEASE_MS,
    )


@dataclass(frozen=True)
class Stored:
    doc: dict[str, Any]  # the stored message: this one, or the original of a retry
    created: bool  # False: a retry with a client_msg_id already used, answered with the original
    deliver: bool  # this request delivers it: a new message, or a retry that took over the delivery


async def store_message(
    store: MessageStore, doc: dict[str, Any], same: Sequence[str], gone: DomainError | None = None
) -> Stored:
    """Store a message, or find the original of a retry (the same client_msg_id).

    Stored first: from here on the message exists, and a retry with the same client_msg_id finds
    it through the unique client_key instead of storing a copy. A retry whose `same` fields differ
    from the original's reused the id for another message (Conflict). The original is gone only if
    its conversation was deleted meanwhile: `gone` is raised then (else the clash itself).
    """
    try:
        await store.insert(doc)
    except DuplicateKeyError:
        original = await store.find_by_client_key(doc["client_key"])
        if original is None:
            if gone is None:
                raise
            raise gone from None
        if any(original[field] != doc[field] for field in same):
            raise Conflict("This client_msg_id was already used for another message") from None
        return Stored(original, created=False, deliver=await take_over_delivery(store, original))
    return Stored(doc, created=True, deliver=True)


async def take_over_delivery(store: MessageStore, original: dict[str, Any]) -> bool:
    """Whether this retry now delivers a stored, undelivered message: only once the storing request's
    lease has run out (it may still be delivering), and only one of several concurrent retries (the
    one whose conditional write matches)."""
    if original.get("seq") is not None:
        return False
    lease = original.get("deliver_by_ms")
    now = epoch_ms(utc_now())
    if lease is not None and lease > now:
        return False
    return await store.claim_delivery(original, lease, now + DELIVERY_LEASE_MS)


async def check_recipient(from_id: str, to_id: str) -> None:
    """404 for no such user, 403 for someone who is not a friend (one more lookup, on refusal only)."""
    if await friends.are_friends(from_id, to_id):
        return
    if await users.user_exists(to_id):
        raise Forbidden("You can only send messages to your friends")
    raise UserNotFound


async def send_message(from_id: str, body: DirectMessageIn) -> tuple[MessagePublic, bool]:
    """Store, publish and summarise a message; the message, and whether it is new (False: a retry)."""
    to_id = canonical_id(body.to_id)
    if to_id is None:
        raise UserNotFound
    if to_id == from_id:
        raise Invalid("You cannot send a message to yourself")
    file_check = file_url_exists(body.msg) if body.msg_type != "txt" else None
    if file_check is None:
        await check_recipient(from_id, to_id)
    else:
        _, file_found = await asyncio.gather(check_recipient(from_id, to_id), file_check)
        if not file_found:
            raise Invalid(f"A {body.msg_type} message must be the /api/files/<id> URL of an upload")
    pair = pair_key(from_id, to_id)
    # A retry takes a number too, which then stays unused (a hole): it keeps its original's.
    doc = new_message(from_id, body, await friends.take_number(pair), pair=pair, to_id=to_id)
    stored = await store_message(direct_messages, doc, ("to_id", "msg", "msg_type"))
    if stored.deliver:
        # New, or the first attempt stopped before it was delivered: index it for search (again: a no-op
        # for the postings already there), then deliver it. Indexed before `seq` is set, so a delivered
        # message is always searchable.
        await postings.index(stored.doc)
        stored.doc["seq"] = await deliver(stored.doc)
    return MessagePublic.from_stored(stored.doc), stored.created


async def deliver(doc: dict[str, Any]) -> int | None:
    """Publish a stored message, update both sides' conversation, then mark it delivered.

    `seq` is written last, so a message without one is redone by a retry once the lease of the
    request that stored it has run out: after a crash between publishing and `seq`, the event
    goes out twice (same message id; clients drop the copy). Nothing is lost, and nothing is
    counted twice: unread counts are counted from the stored messages. If the event log keeps failing,
    the message stays stored and undelivered (None), and is answered all the same: a retry delivers it.
    """
    data = {"message": MessagePublic.from_stored(doc).model_dump(mode="json")}
    try:
        seq = await publish("message", [doc["from_id"], doc["to_id"]], data)
    except PublishFailed:
        log.error("message %s stored but not delivered: the event log is failing", doc["_id"])
        seq = None
    await friends.record_message(doc["pair"], doc["n"], message_summary(doc))
    if seq is not None:
        await direct_messages.set_seq(doc["_id"], seq)
    return seq


async def history(me: str, from_id: str, to_id: str, before: str | None, limit: int) -> list[MessagePublic]:
    """A page of the conversation between `from_id` and `to_id`, newest first, older than `before`."""
    first, second = canonical_id(from_id), canonical_id(to_id)
    if first is None or second is None:
        raise UserNotFound
    from_id, to_id = first, second
    if me not in (from_id, to_id):
        raise Forbidden("Only the two participants may read a conversation")
    other = to_id if from_id == me else from_id
    if other == me:
        raise Invalid("A conversation is between two different users")
    pair = pair_key(me, other)
    docs = await direct_messages.page(pair, await before_number(direct_messages, pair, before), limit)
    if not docs and before is None and not await users.user_exists(other):
        # Checked only when there is nothing to show: a page of messages proves the user existed.
        raise UserNotFound
    return [MessagePublic.from_stored(doc) for doc in docs]


async def before_number(store: MessageStore, conversation_id: str, before: str | None) -> int | None:
    """The number of the message `before` names (one read, only when it is given): Invalid if it is
    no message of this conversation."""
    if before is None:
        return None
    n = await store.number_of(conversation_id, before)
    if n is None:
        raise Invalid("`before` must be the id of a message of this conversation")
    return n
