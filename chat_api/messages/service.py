"""Direct messages between friends: sending (stored, published, summarised) and the history; no HTTP.

The storing and the at-least-once delivery of a message (`store_message`, `DELIVERY_LEASE_MS`) serve
group messages too.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regex
from bson import ObjectId
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from chat_api.blocks import repository as blocks
from chat_api.common.clock import epoch_ms, stored_datetime, utc_now
from chat_api.common.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, UserNotFound
from chat_api.common.ids import canonical_id, parse_object_id
from chat_api.events.models import EventType
from chat_api.events.service import REACTORS, PublishFailed, direct_conversation, publish
from chat_api.files.service import file_url_exists
from chat_api.friends import repository as friends
from chat_api.friends.models import pair_key
from chat_api.messages import postings
from chat_api.messages.models import RECALLED, message_summary, new_message_doc
from chat_api.messages.repository import MessageStore, direct_messages
from chat_api.messages.schemas import DirectMessageIn, MessageIn, MessagePublic, Previews, reactors
from chat_api.users import repository as users

# How long the request that stored a message has to deliver it before a retry may take over.
DELIVERY_LEASE_MS = 10_000

log = logging.getLogger("chat_api.messages")


def new_message(
    from_id: str, body: MessageIn, n: int, *, mentions: list[str] | None = None, **target: str
) -> dict[str, Any]:
    """A message to store, numbered `n` in its conversation, with the storing request's delivery lease
    (`mentions`: a group message's, as checked by groups.service).

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
        reply_to=body.reply_to.lower() if body.reply_to is not None else None,
        mentions=mentions,
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
        if any(original.get(field) != doc.get(field) for field in same):
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


NOT_FRIENDS = "You can only send messages to your friends"


async def first_refusal(checks: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run checks together; their results, or the refusal of the first one in the list that refused (the same
    answer whichever finished first)."""
    results = await asyncio.gather(*checks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def check_recipient(from_id: str, to_id: str) -> None:
    """404 for no such user, 403 for someone who is not a friend, or who blocks the sender: the same answer, so
    a block is not told (one more lookup, on refusal only). The block is read beside the friendship: no wait."""
    friends_now, blocked = await asyncio.gather(friends.are_friends(from_id, to_id), blocks.blocks_user(to_id, from_id))
    if blocked:
        raise Forbidden(NOT_FRIENDS)
    if friends_now:
        return
    if await users.user_exists(to_id):
        raise Forbidden(NOT_FRIENDS)
    raise UserNotFound


async def send_message(from_id: str, body: DirectMessageIn) -> tuple[MessagePublic, bool]:
    """Store, publish and summarise a message; the message, and whether it is new (False: a retry)."""
    to_id = canonical_id(body.to_id)
    if to_id is None:
        raise UserNotFound
    if to_id == from_id:
        raise Invalid("You cannot send a message to yourself")
    pair = pair_key(from_id, to_id)
    file_check = file_url_exists(body.msg) if body.msg_type != "txt" else None
    # Only the checks the message needs, together: the friendship, the file of an img/voice, the original of a reply.
    checks: list[Awaitable[Any]] = [check_recipient(from_id, to_id)]
    if file_check is not None:
        checks.append(file_check)
    if body.reply_to is not None:
        checks.append(check_reply(direct_messages, pair, body.reply_to))
    results = await first_refusal(checks)
    if file_check is not None and not results[1]:
        raise Invalid(f"A {body.msg_type} message must be the /api/files/<id> URL of an upload")
    original = results[-1] if body.reply_to is not None else None
    previews = {original["key"]: original} if original is not None else {}
    # A retry takes a number too, which then stays unused (a hole): it keeps its original's.
    doc = new_message(from_id, body, await friends.take_number(pair), pair=pair, to_id=to_id)
    stored = await store_message(direct_messages, doc, ("to_id", "msg", "msg_type", "reply_to"))
    if stored.deliver:
        # New, or the first attempt stopped before it was delivered: index it for search (again: a no-op
        # for the postings already there), then deliver it. Indexed before `seq` is set, so a delivered
        # message is always searchable.
        await postings.index(stored.doc)
        stored.doc["seq"] = await deliver(stored.doc, previews)
    return MessagePublic.from_stored(stored.doc, from_id, previews), stored.created


async def deliver(doc: dict[str, Any], previews: Previews | None = None) -> int | None:
    """Publish a stored message, update both sides' conversation, then mark it delivered.

    `seq` is written last, so a message without one is redone by a retry once the lease of the
    request that stored it has run out: after a crash between publishing and `seq`, the event
    goes out twice (same message id; clients drop the copy). Nothing is lost, and nothing is
    counted twice: unread counts are counted from the stored messages. If the event log keeps failing,
    the message stays stored and undelivered (None), and is answered all the same: a retry delivers it.
    """
    data = {"message": MessagePublic.from_stored(doc, None, previews).model_dump(mode="json")}
    try:
        seq = await publish("message", [doc["from_id"], doc["to_id"]], data)
    except PublishFailed:
        log.error("message %s stored but not delivered: the event log is failing", doc["_id"])
        seq = None
    await friends.record_message(doc["pair"], doc["n"], message_summary(doc))
    if seq is not None:
        await direct_messages.set_seq(doc["_id"], seq)
    return seq


async def history(me: str, from_id: str, to_id: str, before: str | None, limit: int) -> list[Any]:
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
    return await render_page(direct_messages, docs, me, render_direct)


async def before_number(store: MessageStore, conversation_id: str, before: str | None) -> int | None:
    """The number of the message `before` names (one read, only when it is given): Invalid if it is
    no message of this conversation."""
    if before is None:
        return None
    n = await store.number_of(conversation_id, before)
    if n is None:
        raise Invalid("`before` must be the id of a message of this conversation")
    return n


# Recall, edit, replies and reactions (issue 13; docs/decisions.md, "Recall, edit, replies, reactions"). The
# rules are here, for a `Thread` of either kind; the direct routes build theirs below, the group routes theirs in
# groups.service, with who may do what in a group.

# How often a compare-and-set that lost to a concurrent change of the same message reads and tries again, and
# the first pause between tries (doubled each time, jittered, capped): a message that a crowd reacts to at once
# still takes each reaction; past this the caller is told to try again (422, retry-safe: the routes are idempotent).
CHANGE_ATTEMPTS = 40
CHANGE_PAUSE = 0.002
CHANGE_PAUSE_CAP = 0.05
MAX_EMOJIS = 20
MAX_EMOJI_BYTES = 32
# One grapheme cluster (`\X`, Unicode's extended clusters) that has a pictographic character, a regional
# indicator (flags) or the keycap mark (1️⃣): an emoji, and never plain letters, digits or text.
_CLUSTER = regex.compile(r"\X")
_EMOJI_PART = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}\N{COMBINING ENCLOSING KEYCAP}]")

Render = Callable[[Mapping[str, Any], "str | None", Previews], BaseModel]
Publish = Callable[[EventType, dict[str, Any]], Awaitable[int]]
Summarise = Callable[[int, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Thread:
    """A conversation as its messages' changes see it: where they are, how its events go out, how its summary
    (the conversation list's last message) is replaced, and how a message of it is shown."""

    store: MessageStore
    id: str  # the messages' conversation field: the pair, or the group id
    conversation: dict[str, Any]  # as its events store it (events.service.direct_conversation for a pair)
    publish: Publish  # an event to its participants; returns a seq (the marker of a recall or an edit)
    summarise: Summarise  # replace its summary if that is still the message numbered n
    render: Render


def valid_emoji(emoji: str) -> str:
    """One emoji: one grapheme cluster of at most 32 bytes of UTF-8 with a pictographic part; else Invalid."""
    if (
        not emoji
        or len(emoji.encode("utf-8", "surrogatepass")) > MAX_EMOJI_BYTES
        or _CLUSTER.fullmatch(emoji) is None
        or _EMOJI_PART.search(emoji) is None
    ):
        raise Invalid("The reaction must be one emoji (one grapheme cluster of at most 32 bytes)")
    return emoji


async def find_message(store: MessageStore, message_id: str, conversation_id: str | None = None) -> dict[str, Any]:
    """The message with this id (in this conversation, when given); NotFound otherwise."""
    oid = parse_object_id(message_id)
    doc = None if oid is None else await store.find(oid, conversation_id)
    if doc is None:
        raise NotFound("Message not found")
    return doc


async def previews_for(store: MessageStore, docs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The originals that these messages answer, by id: one read, only when some of them are replies."""
    keys = {doc["reply_to"] for doc in docs if doc.get("reply_to")}
    if not keys:
        return {}
    found = await store.by_ids([ObjectId(key) for key in keys], PREVIEW_PROJECTION)
    return {doc["key"]: doc for doc in found}


PREVIEW_PROJECTION = {"key": 1, "from_id": 1, "msg": 1, "msg_type": 1, "recalled": 1}


async def check_reply(store: MessageStore, conversation_id: str, reply_to: str | None) -> dict[str, Any] | None:
    """The original a new message answers: Invalid if it is no message of this conversation, Conflict if it
    was recalled (there is nothing left to quote). None when the message answers nothing."""
    if reply_to is None:
        return None
    oid = parse_object_id(reply_to)
    original = None if oid is None else await store.find(oid, conversation_id)
    if original is None:
        raise Invalid("`reply_to` must be the id of a message of this conversation")
    if original.get("recalled"):
        raise Conflict("This message was recalled: it cannot be replied to")
    return original


def age_seconds(doc: Mapping[str, Any]) -> float:
    return (utc_now() - stored_datetime(doc["created_at"])).total_seconds()


async def _change(
    store: MessageStore, doc: dict[str, Any], compute: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> tuple[dict[str, Any], bool]:
    """Apply what `compute` makes of the message as it is, by compare-and-set, reading it again after each
    concurrent change (bounded). `compute` raises to refuse, or returns None for nothing to change. The message
    as it is afterwards, and whether this call changed it."""
    for attempt in range(CHANGE_ATTEMPTS):
        changes = compute(doc)
        if changes is None:
            return doc, False
        if await store.compare_and_set(doc, changes):
            return {**doc, **changes, "version": (doc.get("version") or 0) + 1}, True
        await asyncio.sleep(min(CHANGE_PAUSE_CAP, CHANGE_PAUSE * 2**attempt) * (0.5 + random.random()))  # noqa: S311
        fresh = await store.find(doc["_id"])
        if fresh is None:
            raise NotFound("Message not found")
        doc = fresh
    raise Conflict("This message is being changed by many people at once; try again")


async def recall(thread: Thread, doc: dict[str, Any], actor: str, *, any_time: bool, window: int) -> None:
    """Recall a message: its sender within `window` seconds, or anyone `any_time` allows (a group's lord and
    admins; the caller checked who may). Recalled twice: nothing changes.

    Stored first (text, file link and reactions gone, `recall_seq` None), then the conversation's summary if it
    is this message, then the event, then `recall_seq`: a recall that died before its event is announced by its
    retry, which finds `recall_seq` still None (docs/reliability.md).
    """
    if actor != doc["from_id"] and not any_time:
        raise Forbidden("Only its sender may recall a message")

    def compute(current: dict[str, Any]) -> dict[str, Any] | None:
        if current.get("recalled"):
            return None
        if not any_time and age_seconds(current) > window:
            raise Conflict(f"A message can only be recalled within {window} seconds of sending it")
        return {**RECALLED, "recall_seq": None}

    doc, _ = await _change(thread.store, doc, compute)
    if doc.get("recall_seq") is not None:
        return
    # Out of search before it is announced (redone by a retry, like the rest).
    await postings.unindex(doc["key"])
    await thread.summarise(int(doc["n"]), message_summary(doc))
    data = {"message_id": doc["key"], "conversation": thread.conversation}
    seq = await thread.publish("message_recalled", data)
    await thread.store.mark_announced(doc["_id"], "recall_seq", seq, {"recalled": {"$eq": True}})


async def edit(thread: Thread, doc: dict[str, Any], actor: str, text: str, *, window: int) -> BaseModel:
    """Change the text of a `txt` message (its sender only, within `window` seconds, never once recalled); the
    message as it is now, for `actor`. The same text again changes nothing (a retry), and announces the edit if
    its first attempt died before doing so (`edit_seq` None)."""
    if actor != doc["from_id"]:
        raise Forbidden("Only its sender may edit a message")

    def compute(current: dict[str, Any]) -> dict[str, Any] | None:
        if current.get("recalled"):
            raise Conflict("A recalled message cannot be edited")
        if current.get("erased") or current.get("msg_type", "txt") != "txt":
            raise Conflict("Only text messages can be edited")
        if current["msg"] == text:
            return None
        if age_seconds(current) > window:
            raise Conflict(f"A message can only be edited within {window} seconds of sending it")
        return {"msg": text, "edited_at": utc_now(), "edit_seq": None}

    doc, _ = await _change(thread.store, doc, compute)
    previews = await previews_for(thread.store, [doc])
    if doc.get("edited_at") is not None and doc.get("edit_seq") is None:
        await postings.reindex(doc)
        await thread.summarise(int(doc["n"]), message_summary(doc))
        shared = thread.render(doc, None, previews).model_dump(mode="json")
        shared[REACTORS] = reactors(doc)
        seq = await thread.publish("message_edited", {"message": shared, "conversation": thread.conversation})
        await thread.store.mark_announced(doc["_id"], "edit_seq", seq, {"msg": {"$eq": text}})
    return thread.render(doc, actor, previews)


async def react(thread: Thread, doc: dict[str, Any], actor: str, emoji: str, *, add: bool) -> None:
    """Add or take back the caller's reaction (the caller checked they are a participant). Idempotent: the event
    states the caller's reaction as it now is, and goes out on every call, so a retry of a call that died before
    its event still announces it. At most 20 different emojis on a message; none on a recalled one."""
    emoji = valid_emoji(emoji)

    def compute(current: dict[str, Any]) -> dict[str, Any] | None:
        if current.get("recalled"):
            if add:
                raise Conflict("A recalled message cannot be reacted to")
            return None
        reactions = [dict(r, users=list(r["users"])) for r in current.get("reactions") or () if r["users"]]
        entry = next((r for r in reactions if r["emoji"] == emoji), None)
        if add:
            if entry is None:
                if len(reactions) >= MAX_EMOJIS:
                    raise Conflict(f"A message can have at most {MAX_EMOJIS} different reactions")
                reactions.append({"emoji": emoji, "users": [actor]})
            elif actor in entry["users"]:
                return None
            else:
                entry["users"].append(actor)
        else:
            if entry is None or actor not in entry["users"]:
                return None
            entry["users"].remove(actor)
            reactions = [r for r in reactions if r["users"]]
        return {"reactions": reactions}

    doc, _ = await _change(thread.store, doc, compute)
    if doc.get("recalled"):
        return
    data = {
        "message_id": doc["key"],
        "conversation": thread.conversation,
        "emoji": emoji,
        "user_id": actor,
        "added": add,
    }
    await thread.publish("reaction", data)


async def render_page(thread_store: MessageStore, docs: list[dict[str, Any]], viewer: str, render: Render) -> list[Any]:
    """A page of stored messages as `viewer` sees them, with their replies' previews (one read, when any)."""
    previews = await previews_for(thread_store, docs)
    return [render(doc, viewer, previews) for doc in docs]


# Direct messages: the two participants of the message are its conversation's.


def render_direct(doc: Mapping[str, Any], viewer: str | None, previews: Previews) -> MessagePublic:
    return MessagePublic.from_stored(doc, viewer, previews)


def direct_thread(doc: Mapping[str, Any]) -> Thread:
    a, b = doc["from_id"], doc["to_id"]
    pair = doc["pair"]

    async def publish_direct(type_: EventType, data: dict[str, Any]) -> int:
        return await publish(type_, [a, b], data)

    async def summarise(n: int, summary: dict[str, Any]) -> None:
        await friends.replace_last_message(pair, n, summary)

    return Thread(direct_messages, pair, direct_conversation(a, b), publish_direct, summarise, render_direct)


async def direct_for(me: str, message_id: str) -> tuple[Thread, dict[str, Any]]:
    """A direct message and its conversation, for one of its two participants (else Forbidden)."""
    doc = await find_message(direct_messages, message_id)
    if me not in (doc["from_id"], doc["to_id"]):
        raise Forbidden("Only the two participants of a conversation may do this")
    return direct_thread(doc), doc


async def recall_direct(me: str, message_id: str, window: int) -> None:
    thread, doc = await direct_for(me, message_id)
    await recall(thread, doc, me, any_time=False, window=window)


async def edit_direct(me: str, message_id: str, text: str, window: int) -> BaseModel:
    thread, doc = await direct_for(me, message_id)
    return await edit(thread, doc, me, text, window=window)


async def react_direct(me: str, message_id: str, emoji: str, *, add: bool) -> None:
    valid_emoji(emoji)
    thread, doc = await direct_for(me, message_id)
    await react(thread, doc, me, emoji, add=add)
