"""Groups, their members (lord, admins, plain users) and messages: the rules; raises domain errors, not HTTP ones."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from chat_api.blocks import repository as blocks
from chat_api.common.clock import epoch_ms, stored_datetime, utc_now
from chat_api.common.errors import Conflict, Forbidden, GroupNotFound, Invalid, NotFound, UserNotFound
from chat_api.common.ids import canonical_id, parse_object_id
from chat_api.events.models import EventType
from chat_api.events.service import PublishFailed, publish, publish_to_group, redact_events, redact_group_events
from chat_api.files.service import file_url_exists
from chat_api.friends import repository as friends
from chat_api.groups import repository
from chat_api.groups.models import MAX_PINS, Identity, new_group_doc, new_member_doc, new_pin_doc
from chat_api.groups.repository import group_messages
from chat_api.groups.schemas import (
    MENTION_ALL,
    GroupCreate,
    GroupMemberPublic,
    GroupMessageIn,
    GroupMessagePublic,
    GroupPublic,
    MessageReads,
    PinnedMessage,
)
from chat_api.messages import postings
from chat_api.messages.models import erased_summary, group_owner, message_summary
from chat_api.messages.schemas import MessageIn, Previews, current_state
from chat_api.messages.service import (
    Thread,
    before_number,
    check_reply,
    edit,
    find_message,
    new_message,
    previews_for,
    react,
    recall,
    render_page,
    store_message,
    valid_emoji,
)
from chat_api.users import repository as users

log = logging.getLogger("chat_api.groups")

MANAGERS = ("lord", "admin")
# How long a deleted group's tombstone outlives its deletion (docs/reliability.md#deleting-a-group):
# longer than any request under way could still write a member or a message of it. A request's
# handler is cancelled at Sanic's RESPONSE_TIMEOUT (60 s, checked every 30 s at most), and a write
# already sent then is bounded by STORE_TIMEOUT (at most 60 s): 150 s, doubled.
PURGE_DELAY_MS = 300_000


NOT_A_MEMBER = "Not a member of this group"


@dataclass(frozen=True)
class Access:
    """A group as a member sees it: the stored group and the caller's own membership."""

    group: Mapping[str, Any]
    identity: Identity
    user_id: str

    @property
    def group_id(self) -> str:
        return str(self.group["_id"])

    def public(self) -> GroupPublic:
        return group_public(self.group, self.identity)

    def require_manager(self, action: str) -> None:
        if self.identity not in MANAGERS:
            raise Forbidden(f"Only the lord or an admin may {action}")

    def require_lord(self, message: str) -> None:
        if self.identity != "lord":
            raise Forbidden(message)


def group_public(doc: Mapping[str, Any], identity: Identity) -> GroupPublic:
    return GroupPublic(
        id=str(doc["_id"]),
        group_name=doc["group_name"],
        group_desc=doc.get("group_desc"),
        group_avatar=doc.get("group_avatar"),
        group_placard=doc.get("group_placard"),
        lord_id=doc["lord_id"],
        created_at=doc["created_at"],
        identity=identity,
    )


async def access(group_id: str, user_id: str) -> Access:
    """The group and the caller's identity in it: GroupNotFound if there is no such group (or the id
    is malformed), Forbidden if the caller is not a member.

    Both lookups go out together. The group document is checked too, not only the membership: a
    deleted group is a tombstone until its purge is done (see `delete_group`), and the memberships
    it may still have must not open anything.
    """
    gid = canonical_id(group_id)
    if gid is None:
        raise GroupNotFound
    group, membership = await asyncio.gather(
        repository.find_group(gid), repository.membership(gid, user_id, {"identity": 1})
    )
    if group is None:
        raise GroupNotFound
    if membership is None:
        raise Forbidden("Only members of this group may do this")
    return Access(group, membership["identity"], user_id)


async def create_group(data: GroupCreate, lord_id: str) -> str:
    """Store the group, then its lord's membership; return the group's id.

    In that order, a crash in between leaves a group nobody belongs to, which no route shows
    to anyone; the other order would leave a membership of a group that does not exist.
    """
    now = utc_now()
    doc = new_group_doc(data.model_dump(), lord_id, now)
    group_id = str(doc["_id"])
    await repository.insert_group(doc)
    await repository.insert_member(new_member_doc(group_id, lord_id, "lord", now))
    await _membership_changed("group_joined", group_id, lord_id)
    return group_id


async def _membership_changed(kind: EventType, group_id: str, user_id: str) -> None:
    """Tell the member's sockets, in their partition's order: from this event on, the group's events are
    theirs (`group_joined`) or no longer (`group_left`), live on every process and on resume."""
    await publish(kind, [user_id], {"group_id": group_id})


async def my_groups(user_id: str, limit: int, offset: int) -> tuple[list[GroupPublic], int]:
    """The caller's groups in the order they were created (ids grow with time), and how many in all."""
    page, total = await repository.my_memberships_page(user_id, limit, offset)
    if not page:
        return [], total
    by_id = {str(doc["_id"]): doc for doc in await repository.groups_by_ids([m["group_id"] for m in page])}
    # A membership whose group is gone (a deletion cut short) is skipped.
    return [group_public(by_id[m["group_id"]], m["identity"]) for m in page if m["group_id"] in by_id], total


async def update_group(group: Access, changes: dict[str, Any]) -> None:
    """Change the group's fields (lord or admin); an empty change is a no-op."""
    group.require_manager("change the group")
    if changes and not await repository.set_group_fields(group.group_id, changes):
        raise GroupNotFound


async def delete_group(group: Access) -> None:
    """Delete a group (the lord only), finally: once this returns, nothing of it can appear again.

    1. The group document becomes a tombstone (`purge_after_ms`), in one conditional write: from
       then on every route answers 404 for it, and every write that creates a member or a message
       of it checks the group after writing and undoes itself (`add_member`, `send_message`).
    2. A `group_deleted` event goes to the members: every worker's hub drops any later event of the
       group, so none is delivered after it.
    3. The purge: members, messages, and the group's earlier events (redacted).
    A crash midway leaves the tombstone, and every worker's sweeper finishes the purge
    (`sweep_deleted_groups`); the tombstone itself goes after PURGE_DELAY_MS, longer than any request
    under way could still write. The argument: docs/reliability.md#deleting-a-group.
    """
    group.require_lord("Only the lord may delete the group")
    if not await tombstone_group(group.group_id):
        raise GroupNotFound  # a concurrent delete got there first
    await publish_to_group("group_deleted", group.group_id, {"group_id": group.group_id})
    await purge_group(group.group_id)


async def tombstone_group(group_id: str) -> bool:
    """The first step of a deletion; False if the group is already deleted (or gone)."""
    return await repository.mark_deleted(group_id, epoch_ms(utc_now()) + PURGE_DELAY_MS)


async def purge_group(group_id: str) -> None:
    """Delete a deleted group's members and messages and redact its events (idempotent).

    Members first: from then on nobody can send to it or type in it (those need a membership).
    """
    await repository.delete_members(group_id)
    await repository.delete_messages(group_id)
    await repository.delete_pins(group_id)
    await postings.forget_owner(group_owner(group_id))
    await redact_group_events(group_id)


async def sweep_deleted_groups(now_ms: int | None = None) -> list[str]:
    """Finish every deletion a crash cut short, and drop the tombstones whose time has come; returns
    the ids of the deleted groups still known (the hubs drop their events).

    Each worker runs it at start and every minute: one indexed query when no group is being deleted.
    """
    now_ms = epoch_ms(utc_now()) if now_ms is None else now_ms
    group_ids = []
    for doc in await repository.tombstones():
        group_id = str(doc["_id"])
        group_ids.append(group_id)
        await purge_group(group_id)
        if doc["purge_after_ms"] <= now_ms:
            await repository.delete_tombstone(group_id)
    return group_ids


async def list_members(group_id: str, limit: int, offset: int) -> tuple[list[GroupMemberPublic], int]:
    """Members in the order of their user ids (the index's order), and how many in all.

    A member whose account was deleted is left out of the page.
    """
    page, total = await repository.members_page(group_id, limit, offset)
    if not page:
        return [], total
    profiles = await users.public_users(m["user_id"] for m in page)
    out = []
    for member in page:
        profile = profiles.get(member["user_id"])
        if profile is not None:
            out.append(
                GroupMemberPublic(**profile.model_dump(), identity=member["identity"], joined_at=member["joined_at"])
            )
    return out, total


async def add_member(group: Access, user_id: str) -> GroupMemberPublic:
    """Add a friend of the adder (a lord or admin) as a plain member, who has read up to the group's
    newest message when they join: what was said before counts as history, not as unread.

    UserNotFound for an unknown user, Forbidden if they are not the adder's friend, Conflict if
    already a member (decided by the unique index, so two concurrent adds cannot both succeed).
    """
    group.require_manager("add members")
    user_id = user_id.lower()
    profiles, is_friend, blocked = await asyncio.gather(
        users.public_users([user_id]),
        friends.are_friends(group.user_id, user_id),
        blocks.blocks_user(user_id, group.user_id),
    )
    profile = profiles.get(user_id)
    if profile is None:
        raise UserNotFound
    if not is_friend or blocked:
        # The same answer for a user who blocks the adder: a block is not told (docs/decisions.md, "Blocks").
        raise Forbidden("You can only add your friends to a group")
    now, last_n = utc_now(), int(group.group.get("last_n", 0))
    try:
        await repository.insert_member(new_member_doc(group.group_id, user_id, "user", now, last_n, joined_n=last_n))
    except DuplicateKeyError:
        raise Conflict("This user is already a member of the group") from None
    if await repository.find_group(group.group_id, {"_id": 1}) is None:
        # The group was deleted while this member was being added: the membership goes with it.
        await repository.delete_member(group.group_id, user_id)
        raise GroupNotFound
    await _membership_changed("group_joined", group.group_id, user_id)
    return GroupMemberPublic(**profile.model_dump(), identity="user", joined_at=now)


async def remove_member(group: Access, user_id: str) -> None:
    """Leave a group (anyone but the lord), or remove a member (the lord anyone, an admin plain users).

    An admin's removal removes a plain user only, in the same write, so it cannot hit a member
    promoted meanwhile.
    """
    target = canonical_id(user_id)
    if target is None:
        raise NotFound(NOT_A_MEMBER)
    leaving = target == group.user_id
    if leaving and group.identity == "lord":
        raise Conflict("The lord cannot leave the group; delete it instead")
    if not leaving and group.identity not in MANAGERS:
        raise Forbidden("Only the lord or an admin may remove other members")
    only_plain = not leaving and group.identity == "admin"
    if await repository.remove_member(group.group_id, target, only_plain=only_plain):
        await _membership_changed("group_left", group.group_id, target)
        return
    if only_plain and await repository.membership(group.group_id, target, {"_id": 1}) is not None:
        raise Forbidden("An admin may remove plain members only")
    raise NotFound(NOT_A_MEMBER)


async def set_identity(group: Access, user_id: str, identity: Identity) -> None:
    """Make a member an admin or a plain user again (the lord only)."""
    group.require_lord("Only the lord may change identities")
    target = canonical_id(user_id)
    if target is None:
        raise NotFound(NOT_A_MEMBER)
    if target == group.user_id:
        raise Conflict("The lord's own identity cannot change")
    if not await repository.set_identity(group.group_id, target, identity):
        raise NotFound(NOT_A_MEMBER)


# Messages


def message_public(
    doc: Mapping[str, Any], viewer: str | None = None, previews: Previews | None = None
) -> GroupMessagePublic:
    """A group message as `viewer` sees it now (None: as a shared event shows it), with its reply's preview."""
    return GroupMessagePublic(
        id=str(doc["_id"]),
        group_id=doc["group_id"],
        from_id=doc["from_id"],
        msg=doc["msg"],
        msg_type=doc["msg_type"],
        client_msg_id=doc.get("client_msg_id"),
        created_at=doc["created_at"],
        seq=doc.get("seq"),
        erased=doc.get("erased", False),
        **current_state(doc, viewer, previews or {}),
        mentions=doc.get("mentions", []),
    )


async def _file_ok(body: MessageIn) -> bool:
    """A txt message is text; an img or voice one must name a file stored here."""
    return body.msg_type == "txt" or await file_url_exists(body.msg)


@dataclass(frozen=True)
class Sent:
    message: GroupMessagePublic
    created: bool  # False: a retry, answered with the original


async def _sender_and_named(gid: str, from_id: str, named: list[str]) -> list[dict[str, Any]]:
    """The sender's membership and those of the members the message names, in one read (the sender's alone
    when it names nobody): the same command as before mentions."""
    if named:
        return await repository.memberships_among(gid, [from_id, *named])
    sender = await repository.membership(gid, from_id, {"user_id": 1, "identity": 1})
    return [] if sender is None else [sender]


async def send_message(group_id: str, from_id: str, body: GroupMessageIn) -> Sent:
    """Store a group message, publish one event naming the group, and update the group's last message.

    The cost does not grow with the group: the sender's membership (not the member list), one number
    from the group's counter, one insert of the message, one event naming the group (per partition:
    each process delivers it to the members it holds sockets for). Unread counts are not written per
    member; they are counted at read time from each member's `read_n`.

    Mentions (docs/decisions.md#mentions): the named members' memberships are read with the sender's (the same
    command), and their `mention_n` raised in one more write; `@all` (managers only) raises the group's
    `all_mention_n` in the write of its summary, and the sender's own `mentions_seen_n` in one more write.
    """
    gid = canonical_id(group_id)
    if gid is None:
        raise GroupNotFound
    mentions = body.mentions or []
    # Naming yourself calls nobody: left out.
    named = [] if mentions == [MENTION_ALL] else [user_id for user_id in mentions if user_id != from_id]
    group, found, file_ok, original = await asyncio.gather(
        repository.find_group(gid, {"_id": 1}),
        _sender_and_named(gid, from_id, named),
        _file_ok(body),
        _original(gid, body.reply_to),
        return_exceptions=True,
    )
    for result in (group, file_ok):
        if isinstance(result, BaseException):
            raise result
    if isinstance(found, BaseException):
        raise found
    if group is None:
        raise GroupNotFound
    sender = next((m for m in found if m["user_id"] == from_id), None)
    if sender is None:
        raise Forbidden("Only members of this group may send messages to it")
    if mentions == [MENTION_ALL] and sender.get("identity") not in MANAGERS:
        raise Forbidden("Only the lord or an admin may mention everyone")
    members_found = {m["user_id"] for m in found}
    strangers = [user_id for user_id in named if user_id not in members_found]
    if strangers:
        message = f"Only members of this group can be mentioned: {', '.join(strangers)}"
        raise Invalid(message, errors=[{"field": "mentions", "message": message, "type": "not_a_member"}])
    if not file_ok:
        message = f"An {body.msg_type} message must be a /api/files/<id> URL of a file stored here"
        raise Invalid(message, errors=[{"field": "msg", "message": message, "type": "file_url"}])
    if isinstance(original, BaseException):
        raise original  # the reply's original: refused only once the sender may send here
    # Taken after the checks, so a refused send leaves no hole; a retry takes one (it keeps its original's).
    n = await repository.take_number(gid)
    if n is None:
        raise GroupNotFound
    called = [MENTION_ALL] if mentions == [MENTION_ALL] else named
    # The unique index refused a retry whose original is gone: it was deleted with its group.
    stored = await store_message(
        group_messages,
        new_message(from_id, body, n, group_id=gid, mentions=called),
        ("group_id", "msg", "msg_type", "reply_to"),
        GroupNotFound(),
    )
    previews = {original["key"]: original} if isinstance(original, dict) else {}
    if stored.deliver:
        # Acknowledged from here on: the message is stored. Its search postings (before `seq`, so a retry
        # redoes them), its delivery and the group's summary follow.
        doc = stored.doc
        await postings.index(doc)
        doc["seq"] = await _deliver(doc, previews)
        calls_all = doc.get("mentions") == [MENTION_ALL]
        await asyncio.gather(
            repository.set_last_message(gid, doc["n"], message_summary(doc), mentions_all=calls_all),
            _record_mentions(doc, sender, found),
        )
    return Sent(message_public(stored.doc, from_id, previews), created=stored.created)


async def _original(group_id: str, reply_to: str | None) -> dict[str, Any] | None:
    """The message a new one answers, checked to be of this group (messages.service.check_reply)."""
    return await check_reply(group_messages, group_id, reply_to)


async def _record_mentions(doc: Mapping[str, Any], sender: Mapping[str, Any], found: list[dict[str, Any]]) -> None:
    """What the conversation list's `mentioned` reads: the named members' `mention_n`, or for `@all` the sender's
    `mentions_seen_n` (`all_mention_n` is written with the group's summary). `$max` writes: a retry that delivers
    the message again changes nothing more. The stored message's mentions count (a retry's body may differ)."""
    mentions = doc.get("mentions") or []
    if mentions == [MENTION_ALL]:
        await repository.mark_mentions_seen(sender["_id"], doc["n"])
        return
    if not mentions:
        return
    by_user = {m["user_id"]: m["_id"] for m in found}
    if any(user_id not in by_user for user_id in mentions):
        # A retry that named others than its original: read the original's (rare).
        by_user = {m["user_id"]: m["_id"] for m in await repository.memberships_among(doc["group_id"], mentions)}
    # A member named then gone is simply not written.
    await repository.mark_mentioned([by_user[user_id] for user_id in mentions if user_id in by_user], doc["n"])


async def _deliver(doc: Mapping[str, Any], previews: Previews) -> int | None:
    """Publish the message, check that its group still lives, then mark it delivered.

    The check comes after the event: if the group is still alive then, the event was committed
    before the group's tombstone, so before its `group_deleted` event, and the deletion's purge
    redacts it. If the group is deleted by then, the message and its event go with it (404); any
    hub that saw the event after `group_deleted` dropped it (docs/reliability.md#deleting-a-group).

    None when the event log kept failing: the message is stored (and answered), undelivered; a retry
    with the same client_msg_id delivers it (docs/reliability.md#the-event-log).
    """
    # The message inside the event has no seq yet: the event's frame carries it.
    data = {"group_id": doc["group_id"], "message": message_public(doc, None, previews).model_dump(mode="json")}
    try:
        event = await publish_to_group("group_message", doc["group_id"], data)
    except PublishFailed:
        log.error("group message %s stored but not delivered: the event log is failing", doc["_id"])
        return None
    if await repository.find_group(doc["group_id"], {"_id": 1}) is None:
        await redact_events(event.ids)
        await repository.delete_message(doc["_id"])
        await postings.unindex(doc["key"])
        raise GroupNotFound
    seq = event.seq_for(doc["from_id"])
    await group_messages.set_seq(doc["_id"], seq)
    return seq


async def history(group_id: str, before: str | None, limit: int, viewer: str) -> list[Any]:
    """Newest (highest number) first, older than `before` (a message id of this group) when given, as `viewer`
    sees them (their reactions' `me`), with the previews of the replies (one more read, when there are any)."""
    before_n = await before_number(group_messages, group_id, before)
    docs = await group_messages.page(group_id, before_n, limit)
    return await render_page(group_messages, docs, viewer, message_public)


# Recall, edit and reactions of group messages: the rules are messages.service's; who may do what is here.


def group_thread(group_id: str) -> Thread:
    async def publish_group(type_: EventType, data: dict[str, Any]) -> int:
        event = await publish_to_group(type_, group_id, data)
        return int(event.docs[0]["seq"])

    async def summarise(n: int, summary: dict[str, Any]) -> None:
        await repository.replace_last_message(group_id, n, summary)

    return Thread(group_messages, group_id, {"type": "group", "id": group_id}, publish_group, summarise, message_public)


async def recall_message(group: Access, message_id: str, window: int) -> None:
    """Its sender within `window`; the lord and admins any message, at any time (a member's message too)."""
    doc = await find_message(group_messages, message_id, group.group_id)
    await recall(group_thread(group.group_id), doc, group.user_id, any_time=group.identity in MANAGERS, window=window)
    # After the recall, every time (a retry too): a pin of it goes, and the members are told.
    await unpin_recalled(group.group_id, doc["key"])


async def edit_message(group: Access, message_id: str, text: str, window: int) -> BaseModel:
    """Its sender only, whatever their identity."""
    doc = await find_message(group_messages, message_id, group.group_id)
    return await edit(group_thread(group.group_id), doc, group.user_id, text, window=window)


async def react_to_message(group: Access, message_id: str, emoji: str, *, add: bool) -> None:
    """Any member (the caller's `Access` says they are one)."""
    valid_emoji(emoji)
    doc = await find_message(group_messages, message_id, group.group_id)
    await react(group_thread(group.group_id), doc, group.user_id, emoji, add=add)


async def mark_read(group_id: str, user_id: str) -> None:
    """Everything in this group so far is read: my read_n becomes the number of its newest delivered message."""
    oid = parse_object_id(group_id)
    if oid is None:
        raise GroupNotFound
    gid = str(oid)
    group, member = await asyncio.gather(
        repository.find_group(gid, {"message_n": 1}), repository.membership(gid, user_id, {"read_n": 1})
    )
    if group is None:
        raise GroupNotFound
    if member is None:
        raise Forbidden("Only members of the group may do this")
    last_n = int(group.get("message_n", 0))
    if last_n > int(member.get("read_n", 0)):
        await repository.mark_read(member["_id"], last_n)


async def set_muted(group_id: str, user_id: str, muted: bool) -> None:
    """Mute or unmute a group for one member (again: nothing changes). The group and the write go out
    together: a malformed id, no group or a deleted one is GroupNotFound, no membership Forbidden, as for
    marking it read."""
    oid = parse_object_id(group_id)
    if oid is None:
        raise GroupNotFound
    gid = str(oid)
    group, member = await asyncio.gather(
        repository.find_group(gid, {"_id": 1}), repository.set_muted(gid, user_id, muted)
    )
    if group is None:
        raise GroupNotFound
    if not member:
        raise Forbidden("Only members of the group may do this")


# Pins (docs/decisions.md#pins, docs/reliability.md#pins)

# How often a pin looks for a free slot again when concurrent pins took the one it chose.
PIN_ATTEMPTS = 2 * MAX_PINS
NO_SUCH_MESSAGE = "No such message in this group"
RECALLED = "A recalled message cannot be pinned"


def _message_key(message_id: str) -> str:
    key = canonical_id(message_id)
    if key is None:
        raise NotFound(NO_SUCH_MESSAGE)
    return key


async def pin(group: Access, message_id: str) -> None:
    """Pin a message of the group (lord or admin); pinning a pinned message changes nothing.

    The limit holds under concurrency: each pin takes a free `slot` (0 to MAX_PINS - 1) under a unique index, so a
    51st pin finds none (Conflict), and two pins that chose the same slot cannot both be stored (the loser reads the
    pins again and takes another). After the event, the group and the message are read again: a recall or a deletion
    of the group that raced the pin undoes it (docs/reliability.md#pins).
    """
    group.require_manager("pin messages")
    gid, key = group.group_id, _message_key(message_id)
    message, pinned = await asyncio.gather(repository.message_of(gid, key, {"recalled": 1}), repository.pins_of(gid))
    if message is None:
        raise NotFound(NO_SUCH_MESSAGE)
    if message.get("recalled"):
        raise Conflict(RECALLED)
    for _ in range(PIN_ATTEMPTS):
        if any(p["message_key"] == key for p in pinned):
            return
        free = sorted(set(range(MAX_PINS)) - {int(p["slot"]) for p in pinned})
        if not free:
            raise Conflict(f"A group can have at most {MAX_PINS} pinned messages; unpin one first")
        # A random free slot, so that concurrent pins seldom choose the same one (not a secret: S311).
        slot = random.choice(free)  # noqa: S311
        try:
            await repository.insert_pin(new_pin_doc(gid, key, slot, group.user_id, utc_now()))
            break
        except DuplicateKeyError:
            pinned = await repository.pins_of(gid)
    else:
        raise Conflict("The group's pins kept changing meanwhile; try again")
    try:
        await _announce_pin(gid, key, pinned=True)
    except PublishFailed:
        # Not announced, so not pinned: a retry pins and announces it (else it would find it pinned and stay silent).
        await repository.delete_pin(gid, key)
        raise
    alive, now = await asyncio.gather(
        repository.find_group(gid, {"_id": 1}), repository.message_of(gid, key, {"recalled": 1})
    )
    if alive is None:
        # Deleted meanwhile: the purge (or the sweeper's next one) takes the pin and redacts its event.
        await repository.delete_pin(gid, key)
        raise GroupNotFound
    if now is None or now.get("recalled"):
        # Recalled meanwhile: the recall's unpin may have run before this pin was stored, so this one undoes it,
        # and says so after its own `pinned: true` whoever deleted it.
        await repository.delete_pin(gid, key)
        await _announce_pin(gid, key, pinned=False)
        raise Conflict(RECALLED)


async def unpin(group: Access, message_id: str) -> None:
    """Unpin a message of the group (lord or admin); unpinning a message that is not pinned changes nothing."""
    group.require_manager("unpin messages")
    gid, key = group.group_id, _message_key(message_id)
    if await repository.delete_pin(gid, key):
        await _announce_pin(gid, key, pinned=False)
    elif await repository.message_of(gid, key, {"_id": 1}) is None:
        raise NotFound(NO_SUCH_MESSAGE)


async def unpin_recalled(group_id: str, message_key: str) -> None:
    """A message was recalled: unpin it if it is pinned, and tell the members (`pin`, `pinned: false`)."""
    if await repository.delete_pin(group_id, message_key):
        await _announce_pin(group_id, message_key, pinned=False)


async def _announce_pin(group_id: str, message_key: str, *, pinned: bool) -> None:
    await publish_to_group("pin", group_id, {"group_id": group_id, "message_id": message_key, "pinned": pinned})


async def pinned_messages(group_id: str, viewer: str) -> list[PinnedMessage]:
    """The group's pinned messages as `viewer` sees them, most recently pinned first: the pins, then their messages
    (one `$in`), then the originals of those that are replies (one more read, only then)."""
    pins = await repository.pins_of(group_id)
    if not pins:
        return []
    messages = {
        doc["key"]: doc for doc in await repository.messages_by_keys(group_id, [p["message_key"] for p in pins])
    }
    previews = await previews_for(group_messages, list(messages.values()))
    pins.sort(key=lambda p: (stored_datetime(p["pinned_at"]), p["_id"]), reverse=True)
    return [
        PinnedMessage(
            **message_public(messages[p["message_key"]], viewer, previews).model_dump(),
            pinned_at=p["pinned_at"],
            pinned_by=p["pinned_by"],
        )
        for p in pins
        if p["message_key"] in messages
    ]


# Read receipts


async def reads(group_id: str, user_id: str, message_id: str, limit: int, offset: int) -> MessageReads:
    """Who has read a message (its sender, the lord or an admin may ask): the members who were members when it was
    sent (joined at or before its `created_at`) and still are, its sender left out; read means a read position at
    or past its number. Each list in user id order, `limit` from `offset`; the counts are exact.

    The group's memberships are read in one round trip whatever its size, and profiles only for the page shown.
    """
    gid = canonical_id(group_id)
    if gid is None:
        raise GroupNotFound
    key = _message_key(message_id)
    group, message = await asyncio.gather(
        access(gid, user_id), repository.message_of(gid, key, {"from_id": 1, "n": 1, "created_at": 1})
    )
    if message is None:
        raise NotFound(NO_SUCH_MESSAGE)
    if message["from_id"] != user_id and group.identity not in MANAGERS:
        raise Forbidden("Only its sender, the lord or an admin may see who read a message")
    sent_at, n = stored_datetime(message["created_at"]), int(message["n"])

    def was_member(m: Mapping[str, Any]) -> bool:
        # By numbers: the message counts for a member who joined before it was numbered (as their unread count
        # does); a membership from before `joined_n` existed by time.
        joined_n = m.get("joined_n")
        return joined_n < n if joined_n is not None else stored_datetime(m["joined_at"]) <= sent_at

    members = await repository.members_since(gid)
    audience = sorted(
        (m for m in members if m["user_id"] != message["from_id"] and was_member(m)), key=lambda m: m["user_id"]
    )
    read = [m["user_id"] for m in audience if int(m.get("read_n", 0)) >= n]
    unread = [m["user_id"] for m in audience if int(m.get("read_n", 0)) < n]
    read_page, unread_page = read[offset : offset + limit], unread[offset : offset + limit]
    profiles = await users.public_users([*read_page, *unread_page]) if read_page or unread_page else {}
    return MessageReads(
        # A member whose account is being deleted (no profile any more) is counted, not shown.
        read=[profiles[u] for u in read_page if u in profiles],
        unread=[profiles[u] for u in unread_page if u in profiles],
        read_count=len(read),
        unread_count=len(unread),
    )


# An account being deleted (accounts.service): every step can run again after a crash.

# How often a lord's succession is tried again when the chosen successor leaves at that very moment.
SUCCESSION_ATTEMPTS = 5


def successor(members: list[Mapping[str, Any]], leaving: str) -> Mapping[str, Any] | None:
    """Who becomes lord when `leaving` goes: a member already promoted by a succession cut short, else the
    longest-standing admin, else the longest-standing member (ties: the earlier membership); None if nobody."""
    others = [m for m in members if m["user_id"] != leaving]
    rank = {"lord": 0, "admin": 1, "user": 2}
    return min(others, key=lambda m: (rank[m["identity"]], stored_datetime(m["joined_at"]), m["_id"]), default=None)


async def forget_account(user_id: str) -> None:
    """The deleted account leaves every group: a group it lords passes to its successor, who every member hears
    of (`group_lord_changed`), or is deleted if nobody else is left in it."""
    for membership in await repository.memberships_with_identity(user_id):
        group_id = membership["group_id"]
        if membership["identity"] == "lord":
            await _pass_on(group_id, user_id)
        await repository.delete_membership(group_id, user_id)


async def _pass_on(group_id: str, lord_id: str) -> None:
    """Make the successor the lord of `group_id` (the membership first, then the group, then the event), or
    delete the group when the lord was its last member. The lord's membership goes after this (the caller): until
    then a crash leaves it, and the next run finds the group again."""
    for _ in range(SUCCESSION_ATTEMPTS):
        group, members = await asyncio.gather(
            repository.find_group(group_id, {"_id": 1}), repository.members_with_seniority(group_id)
        )
        heir = successor(members, lord_id)
        if group is None or heir is None:
            # Nobody left to lead it, or a deletion of the group was cut short: finish deleting it.
            await tombstone_group(group_id)
            await purge_group(group_id)
            return
        if await repository.promote_to_lord(heir["_id"]):
            await repository.set_lord(group_id, heir["user_id"])
            data = {"group_id": group_id, "lord_id": heir["user_id"], "previous_lord_id": lord_id}
            await publish_to_group("group_lord_changed", group_id, data)
            return
    raise RuntimeError(f"no successor of group {group_id} stayed long enough to become its lord")


async def erase_messages_from(user_id: str) -> None:
    """Blank every group message the account sent, and each group's summary where it is the newest message."""
    group_ids = await group_messages.conversations_from(user_id)
    await group_messages.erase_from(user_id)
    if not group_ids:
        return
    projection = {"last_message": 1, "message_n": 1}
    for group in await repository.groups_by_ids(sorted(group_ids), projection):
        summary = erased_summary(group.get("last_message"), user_id)
        if summary is not None:
            await repository.replace_last_message(str(group["_id"]), int(group.get("message_n", 0)), summary)
