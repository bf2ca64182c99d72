"""Groups, their members (lord, admins, plain users) and messages: the rules; raises domain errors, not HTTP ones."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.errors import DuplicateKeyError

from chat_api.common.clock import epoch_ms, stored_datetime, utc_now
from chat_api.common.errors import Conflict, Forbidden, GroupNotFound, Invalid, NotFound, UserNotFound
from chat_api.common.ids import canonical_id, parse_object_id
from chat_api.events.models import EventType
from chat_api.events.service import PublishFailed, publish, publish_to_group, redact_events, redact_group_events
from chat_api.files.service import file_url_exists
from chat_api.friends import repository as friends
from chat_api.groups import repository
from chat_api.groups.models import Identity, new_group_doc, new_member_doc
from chat_api.groups.repository import group_messages
from chat_api.groups.schemas import GroupCreate, GroupMemberPublic, GroupMessagePublic, GroupPublic
from chat_api.messages import postings
from chat_api.messages.models import erased_summary, group_owner, message_summary
from chat_api.messages.schemas import MessageIn
from chat_api.messages.service import before_number, new_message, store_message
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
    profiles, is_friend = await asyncio.gather(
        users.public_users([user_id]), friends.are_friends(group.user_id, user_id)
    )
    profile = profiles.get(user_id)
    if profile is None:
        raise UserNotFound
    if not is_friend:
        raise Forbidden("You can only add your friends to a group")
    now = utc_now()
    try:
        await repository.insert_member(
            new_member_doc(group.group_id, user_id, "user", now, int(group.group.get("last_n", 0)))
        )
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


def message_public(doc: Mapping[str, Any]) -> GroupMessagePublic:
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
    )


async def _file_ok(body: MessageIn) -> bool:
    """A txt message is text; an img or voice one must name a file stored here."""
    return body.msg_type == "txt" or await file_url_exists(body.msg)


@dataclass(frozen=True)
class Sent:
    message: GroupMessagePublic
    created: bool  # False: a retry, answered with the original


async def send_message(group_id: str, from_id: str, body: MessageIn) -> Sent:
    """Store a group message, publish one event naming the group, and update the group's last message.

    The cost does not grow with the group: the sender's membership (not the member list), one number
    from the group's counter, one insert of the message, one event naming the group (per partition:
    each process delivers it to the members it holds sockets for). Unread counts are not written per
    member; they are counted at read time from each member's `read_n`.
    """
    gid = canonical_id(group_id)
    if gid is None:
        raise GroupNotFound
    group, sender, file_ok = await asyncio.gather(
        repository.find_group(gid, {"_id": 1}),
        repository.membership(gid, from_id, {"_id": 1}),
        _file_ok(body),
    )
    if group is None:
        raise GroupNotFound
    if sender is None:
        raise Forbidden("Only members of this group may send messages to it")
    if not file_ok:
        message = f"An {body.msg_type} message must be a /api/files/<id> URL of a file stored here"
        raise Invalid(message, errors=[{"field": "msg", "message": message, "type": "file_url"}])
    # Taken after the checks, so a refused send leaves no hole; a retry takes one (it keeps its original's).
    n = await repository.take_number(gid)
    if n is None:
        raise GroupNotFound
    # The unique index refused a retry whose original is gone: it was deleted with its group.
    stored = await store_message(
        group_messages, new_message(from_id, body, n, group_id=gid), ("group_id", "msg", "msg_type"), GroupNotFound()
    )
    if stored.deliver:
        # Acknowledged from here on: the message is stored. Its search postings (before `seq`, so a retry
        # redoes them), its delivery and the group's summary follow.
        await postings.index(stored.doc)
        stored.doc["seq"] = await _deliver(stored.doc)
        await repository.set_last_message(gid, stored.doc["n"], message_summary(stored.doc))
    return Sent(message_public(stored.doc), created=stored.created)


async def _deliver(doc: Mapping[str, Any]) -> int | None:
    """Publish the message, check that its group still lives, then mark it delivered.

    The check comes after the event: if the group is still alive then, the event was committed
    before the group's tombstone, so before its `group_deleted` event, and the deletion's purge
    redacts it. If the group is deleted by then, the message and its event go with it (404); any
    hub that saw the event after `group_deleted` dropped it (docs/reliability.md#deleting-a-group).

    None when the event log kept failing: the message is stored (and answered), undelivered; a retry
    with the same client_msg_id delivers it (docs/reliability.md#the-event-log).
    """
    # The message inside the event has no seq yet: the event's frame carries it.
    data = {"group_id": doc["group_id"], "message": message_public(doc).model_dump(mode="json")}
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


async def history(group_id: str, before: str | None, limit: int) -> list[GroupMessagePublic]:
    """Newest (highest number) first, older than `before` (a message id of this group) when given."""
    before_n = await before_number(group_messages, group_id, before)
    return [message_public(doc) for doc in await group_messages.page(group_id, before_n, limit)]


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
