"""Group logic and store access: groups, members, group messages; raises domain errors, never HTTP ones.

Group ids are ObjectIds in `groups._id` and hex strings everywhere else (members, messages,
events), because nx-27017 does not match ObjectIds outside `_id` (README, "The store"). Every
filter on an indexed field is written with `$eq`, the form that uses the index on nx-27017.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from chat_api.events.service import publish
from chat_api.files.service import file_url_exists
from chat_api.friends.models import Friendship
from chat_api.groups.models import Group, GroupMember, GroupMessage, Identity
from chat_api.groups.schemas import GroupCreate, GroupMemberPublic, GroupMessagePublic, GroupPublic
from chat_api.messages.schemas import MessageIn
from chat_api.messages.service import new_message_doc, summary, take_over_delivery
from chat_api.users.models import User
from chat_api.users.schemas import PUBLIC_PROJECTION, UserPublic
from chat_api.users.service import parse_user_id, utc_now

# Large enough that a group's member ids come back in one reply (PyMongo's first batch is
# otherwise 101 documents, and each further batch is one more round trip).
MEMBER_BATCH = 100_000
Collection = AsyncCollection[dict[str, Any]]


class GroupError(Exception):
    """A domain error; the routes turn each kind into its status."""


class GroupNotFound(GroupError):
    pass


class UserNotFound(GroupError):
    pass


class NotAllowed(GroupError):
    pass


class Conflict(GroupError):
    pass


class BadMessage(GroupError):
    pass


def groups() -> Collection:
    return Group.get_pymongo_collection()


def members() -> Collection:
    return GroupMember.get_pymongo_collection()


def messages() -> Collection:
    return GroupMessage.get_pymongo_collection()


def parse_id(value: str) -> str | None:
    """The canonical (lower-case) hex form of a 24-hex-digit id, else None."""
    oid = parse_user_id(value)
    return None if oid is None else str(oid)


async def count_members(query: Mapping[str, Any], field: str) -> int:
    """How many memberships match `query`, whose first field is `field`.

    Not `count_documents`: nx-27017 runs its `$match` in Python over the whole collection (5.4 s
    at 100,000 memberships, for a count of 100), where this find uses the index (6 ms). Projected
    to the indexed field alone, MongoDB answers it from the index without reading a document.
    """
    cursor = members().find(query, {"_id": 0, field: 1}).batch_size(MEMBER_BATCH)
    return len(await cursor.to_list())


async def member_ids(group_id: str) -> list[str]:
    """The user ids of a group's members (hex), in one round trip whatever the group's size; the
    recipients of an event for the whole group (a group message, typing in a group)."""
    cursor = members().find({"group_id": {"$eq": group_id}}, {"user_id": 1, "_id": 0}).batch_size(MEMBER_BATCH)
    return [doc["user_id"] for doc in await cursor.to_list()]


def member_filter(group_id: str, user_id: str) -> dict[str, Any]:
    return {"group_id": {"$eq": group_id}, "user_id": {"$eq": user_id}}


@dataclass(frozen=True)
class Access:
    """A group as a member sees it: the stored group and the caller's own membership."""

    group: Mapping[str, Any]
    identity: Identity

    @property
    def group_id(self) -> str:
        return str(self.group["_id"])

    def public(self) -> GroupPublic:
        return group_public(self.group, self.identity)


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
    is malformed), NotAllowed if the caller is not a member.

    Both lookups go out together. The group document is checked too, not only the membership: a
    group deleted by a lord whose request died midway may leave memberships behind (see
    `delete_group`), and those must not open anything.
    """
    gid = parse_id(group_id)
    if gid is None:
        raise GroupNotFound
    group, membership = await asyncio.gather(
        groups().find_one({"_id": ObjectId(gid)}),
        members().find_one(member_filter(gid, user_id), {"identity": 1}),
    )
    if group is None:
        raise GroupNotFound
    if membership is None:
        raise NotAllowed("Only members of this group may do this")
    return Access(group, membership["identity"])


async def create_group(data: GroupCreate, lord_id: str) -> str:
    """Store the group, then its lord's membership; return the group's id.

    In that order, a crash in between leaves a group nobody belongs to, which no route shows
    to anyone; the other order would leave a membership of a group that does not exist.
    """
    now = utc_now()
    group_oid = ObjectId()
    group_id = str(group_oid)
    await groups().insert_one(
        {
            "_id": group_oid,
            **data.model_dump(),
            "lord_id": lord_id,
            "created_at": now,
            "last_message": None,
            "last_key": None,
        }
    )
    await members().insert_one(
        {"group_id": group_id, "user_id": lord_id, "identity": "lord", "joined_at": now, "read_key": ""}
    )
    return group_id


async def my_groups(user_id: str, limit: int, offset: int) -> tuple[list[GroupPublic], int]:
    """The caller's groups in the order they were created (ids grow with time), and how many in all."""
    mine = {"user_id": {"$eq": user_id}}
    page_cursor = members().find(mine, {"group_id": 1, "identity": 1, "_id": 0})
    page_cursor = page_cursor.sort("group_id", ASCENDING).skip(offset).limit(limit)
    page, total = await asyncio.gather(page_cursor.to_list(), count_members(mine, "user_id"))
    if not page:
        return [], total
    found = groups().find({"_id": {"$in": [ObjectId(m["group_id"]) for m in page]}})
    by_id = {str(doc["_id"]): doc for doc in await found.to_list()}
    # A membership whose group is gone (a deletion cut short) is skipped.
    return [group_public(by_id[m["group_id"]], m["identity"]) for m in page if m["group_id"] in by_id], total


async def update_group(group_id: str, changes: dict[str, Any]) -> bool:
    assert changes, "an empty $set is an error on MongoDB; callers skip empty updates"
    result = await groups().update_one({"_id": ObjectId(group_id)}, {"$set": changes})
    return result.matched_count == 1


async def delete_group(group_id: str, lord_id: str) -> None:
    """Delete a group with its members and messages.

    The order makes every crash midway leave a state that is safe: first the members other than
    the lord, then the group document, then the messages, and the remaining memberships (the
    lord's, and any added by a request that was under way) last. Until the group document goes,
    the group is alive with its lord and its whole history, and the lord simply deletes it again;
    once it is gone every route answers 404 (`access` checks the group document too), and what a
    crash could leave behind (messages, the lord's membership) is reachable by no route; the list
    of groups skips such a membership. At no point is there a group that looks alive without its lord.
    """
    await members().delete_many({"group_id": {"$eq": group_id}, "user_id": {"$ne": lord_id}})
    await groups().delete_one({"_id": ObjectId(group_id)})
    await messages().delete_many({"group_id": {"$eq": group_id}})
    await members().delete_many({"group_id": {"$eq": group_id}})


async def list_members(group_id: str, limit: int, offset: int) -> tuple[list[GroupMemberPublic], int]:
    """Members in the order of their user ids (the index's order), and how many in all.

    A member whose account was deleted is left out of the page.
    """
    of_group = {"group_id": {"$eq": group_id}}
    cursor = members().find(of_group, {"user_id": 1, "identity": 1, "joined_at": 1, "_id": 0})
    cursor = cursor.sort("user_id", ASCENDING).skip(offset).limit(limit)
    page, total = await asyncio.gather(cursor.to_list(), count_members(of_group, "group_id"))
    if not page:
        return [], total
    users = User.get_pymongo_collection().find(
        {"_id": {"$in": [ObjectId(m["user_id"]) for m in page]}}, PUBLIC_PROJECTION
    )
    profiles = {str(doc["_id"]): UserPublic.from_stored(doc) for doc in await users.to_list()}
    out = []
    for member in page:
        profile = profiles.get(member["user_id"])
        if profile is not None:
            out.append(
                GroupMemberPublic(**profile.model_dump(), identity=member["identity"], joined_at=member["joined_at"])
            )
    return out, total


async def add_member(group_id: str, adder_id: str, user_id: str, read_key: str = "") -> GroupMemberPublic:
    """Add a friend of the adder as a plain member, who has read up to `read_key` (the group's newest
    message when they join: what was said before counts as history, not as unread).

    UserNotFound for an unknown user, NotAllowed if they are not the adder's friend, Conflict if
    already a member (decided by the unique index, so two concurrent adds cannot both succeed).
    """
    user_doc, friendship = await asyncio.gather(
        User.get_pymongo_collection().find_one({"_id": ObjectId(user_id)}, PUBLIC_PROJECTION),
        Friendship.get_pymongo_collection().find_one(
            {"owner_id": {"$eq": adder_id}, "friend_id": {"$eq": user_id}}, {"_id": 1}
        ),
    )
    if user_doc is None:
        raise UserNotFound
    if friendship is None:
        raise NotAllowed("You can only add your friends to a group")
    now = utc_now()
    try:
        await members().insert_one(
            {"group_id": group_id, "user_id": user_id, "identity": "user", "joined_at": now, "read_key": read_key}
        )
    except DuplicateKeyError:
        raise Conflict("This user is already a member of the group") from None
    profile = UserPublic.from_stored(user_doc)
    return GroupMemberPublic(**profile.model_dump(), identity="user", joined_at=now)


async def remove_member(group_id: str, user_id: str, *, only_plain: bool = False) -> bool:
    """Remove a membership (never the lord's); False if there was none to remove.

    `only_plain` removes a plain user only, in the same write, so an admin's removal cannot hit a
    member promoted meanwhile; a refused one raises NotAllowed.
    """
    query: dict[str, Any] = {**member_filter(group_id, user_id), "identity": {"$ne": "lord"}}
    if only_plain:
        query["identity"] = {"$eq": "user"}
    result = await members().delete_one(query)
    if result.deleted_count == 1:
        return True
    if only_plain and await members().find_one(member_filter(group_id, user_id), {"_id": 1}) is not None:
        raise NotAllowed("An admin may remove plain members only")
    return False


async def set_identity(group_id: str, user_id: str, identity: Identity) -> bool:
    """Make a member an admin or a plain user (never touches the lord); False if not a member."""
    query = {**member_filter(group_id, user_id), "identity": {"$ne": "lord"}}
    result = await members().update_one(query, {"$set": {"identity": identity}})
    return result.matched_count == 1


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
    )


async def _file_ok(body: MessageIn) -> bool:
    """A txt message is text; an img or voice one must name a file stored here."""
    return body.msg_type == "txt" or await file_url_exists(body.msg)


@dataclass(frozen=True)
class Sent:
    message: GroupMessagePublic
    created: bool  # False: a retry, answered with the original


async def send_message(group_id: str, from_id: str, body: MessageIn) -> Sent:
    """Store a group message, publish one event to every current member, and update the group's last message.

    The cost does not grow with the group: one `find` of the member ids (in one batch), one
    insert of the message, one event for all recipients. Unread counts are not written per
    member; they are counted at read time from each member's `read_key`.
    """
    gid = parse_id(group_id)
    if gid is None:
        raise GroupNotFound
    group, recipients, file_ok = await asyncio.gather(
        groups().find_one({"_id": ObjectId(gid)}, {"_id": 1}),
        member_ids(gid),
        _file_ok(body),
    )
    if group is None:
        raise GroupNotFound
    if from_id not in recipients:
        raise NotAllowed("Only members of this group may send messages to it")
    if not file_ok:
        raise BadMessage(f"An {body.msg_type} message must be a /api/files/<id> URL of a file stored here")

    doc = new_message_doc(from_id, body, group_id=gid)
    try:
        await messages().insert_one(doc)
    except DuplicateKeyError:
        return await _retried(doc, recipients)
    # Acknowledged from here on: the message is stored. Its delivery and the group's summary follow.
    doc["seq"] = await _deliver(doc, recipients)
    await _set_last_message(doc)
    return Sent(message_public(doc), created=True)


async def _retried(doc: Mapping[str, Any], recipients: list[str]) -> Sent:
    """A send whose client_msg_id was used before: the original, if this is the same message."""
    original = await messages().find_one({"client_key": {"$eq": doc["client_key"]}})
    if original is None:  # the unique index refused it, so it existed a moment ago: deleted with its group
        raise GroupNotFound
    same = all(original[field] == doc[field] for field in ("group_id", "msg", "msg_type"))
    if not same:
        raise Conflict("This client_msg_id was already used for another message")
    if original.get("seq") is None and await take_over_delivery(messages(), original):
        # The attempt that stored it died before delivering it: this retry delivers it.
        original["seq"] = await _deliver(original, recipients)
        await _set_last_message(original)
    return Sent(message_public(original), created=False)


async def _deliver(doc: Mapping[str, Any], recipients: list[str]) -> int:
    # The message inside the event has no seq yet: the event's frame carries it.
    data = {"group_id": doc["group_id"], "message": message_public(doc).model_dump(mode="json")}
    seq = await publish("group_message", recipients, data)
    await messages().update_one({"_id": doc["_id"]}, {"$set": {"seq": seq}})
    return seq


async def _set_last_message(doc: dict[str, Any]) -> None:
    """Point the group at this message unless a newer one got there first (concurrent senders).

    Two updates in one round trip rather than one filter with `$or` (no last key yet, or an older
    one): nx-27017 joins `$or` to the other conditions without parentheses, and the `$or` form
    updated another group whose last key was older (README, "The store").
    """
    gid = ObjectId(doc["group_id"])
    last = {"$set": {"last_message": summary(doc), "last_key": doc["key"]}}
    await groups().bulk_write(
        [
            UpdateOne({"_id": gid, "last_key": {"$eq": None}}, last),
            UpdateOne({"_id": gid, "last_key": {"$lt": doc["key"]}}, last),
        ],
        ordered=False,
    )


def history_query(group_id: str, before: str | None) -> dict[str, Any]:
    """Served by `group_id_1_key_1`: equality on the group, a range on the key."""
    query: dict[str, Any] = {"group_id": {"$eq": group_id}}
    if before is not None:
        query["key"] = {"$lt": before.lower()}
    return query


async def history(group_id: str, before: str | None, limit: int) -> list[GroupMessagePublic]:
    """Newest first, older than `before` (a message id) when given."""
    cursor = messages().find(history_query(group_id, before)).sort("key", DESCENDING).limit(limit)
    return [message_public(doc) for doc in await cursor.to_list()]
