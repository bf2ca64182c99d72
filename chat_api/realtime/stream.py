"""A user's stream of stored events: the backlog a resume replays and `GET /api/events` lists.

A user's events are those of their home partition addressed to them, and the group events of that
partition for groups they were a member of at the time. Membership is known from the memberships of
now and the user's `group_joined` / `group_left` events in the range: for each group, the first change
after `after` says whether the user was in it before (a `group_left`) or not (a `group_joined`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from chat_api.events import service as events
from chat_api.groups import repository as groups
from chat_api.groups.service import message_public
from chat_api.messages.repository import MessageStore, direct_messages
from chat_api.messages.service import Render, previews_for, render_direct

# The frames that carry a whole message, which a replay shows as the message is now (edited, recalled, its
# reactions and its reply's preview), not as it was when the event was stored.
MESSAGE_FRAMES = frozenset({"message", "group_message", "message_edited"})
# What rendering a message needs of its document (the delivery bookkeeping left out).
RENDER_PROJECTION = {"client_key": 0, "deliver_by_ms": 0}


@dataclass(frozen=True)
class Page:
    events: list[dict[str, Any]]  # the user's, as frames, oldest first
    read_upto: int  # the number of the last event read (the next page starts after it)
    more: bool  # the read was cut at its limit: more may follow


async def group_ids_of(user_id: str) -> set[str]:
    return {m["group_id"] for m in await groups.memberships_of(user_id)}


async def membership_at(user_id: str, groups_now: Iterable[str], after: int, upto: int) -> dict[str, bool]:
    """Whether the user was a member of each group just after `after` (groups never mentioned: absent)."""
    first: dict[str, str] = {}
    for change in await events.membership_changes(user_id, events.home_partition(user_id), after, upto):
        first.setdefault(change["data"]["group_id"], change["type"])
    member = {group_id: True for group_id in groups_now}
    member.update((group_id, kind == "group_left") for group_id, kind in first.items())
    return member


async def page(user_id: str, member: dict[str, bool], after: int, upto: int, limit: int) -> Page:
    """One read of the partition after `after`, narrowed to the user's events; updates `member` as it walks,
    so the next page goes on from where this one stopped."""
    docs = await events.stored_after(events.home_partition(user_id), after, upto, limit)
    mine = []
    carrying: list[tuple[dict[str, Any], bool]] = []  # frames with a message, and whether it is a group's
    for doc in docs:
        group_id = doc.get("group")
        if doc["type"] in MESSAGE_FRAMES and (user_id in doc.get("to", ()) or member.get(group_id or "")):
            carrying.append((events.frame(doc, user_id), group_id is not None))
            mine.append(carrying[-1][0])
            continue
        if group_id is not None:
            if member.get(group_id):
                mine.append(events.frame(doc, user_id))
                if doc["type"] == "group_deleted":
                    member[group_id] = False
            continue
        if user_id not in doc.get("to", ()):
            continue
        mine.append(events.frame(doc, user_id))
        if doc["type"] == "group_joined":
            member[doc["data"]["group_id"]] = True
        elif doc["type"] == "group_left":
            member[doc["data"]["group_id"]] = False
    await show_as_now(user_id, carrying)
    return Page(mine, docs[-1]["seq"] if docs else upto, len(docs) == limit)


async def show_as_now(viewer: str, frames: list[tuple[dict[str, Any], bool]]) -> None:
    """Replace the message each frame carries by the message as it is now, for `viewer`: one read by `_id` per
    collection that the frames name, and one more for the originals of replies when there are any. A message
    that is gone (its group purged) keeps the frame's copy. The `seq` inside stays the frame's (null in a
    `message` event, as live)."""
    wanted: dict[bool, set[ObjectId]] = {False: set(), True: set()}
    for shown, grouped in frames:
        message_id = shown["message"].get("id")
        if isinstance(message_id, str) and ObjectId.is_valid(message_id):
            wanted[grouped].add(ObjectId(message_id))
    stores: dict[bool, tuple[MessageStore, Render]] = {
        False: (direct_messages, render_direct),
        True: (groups.group_messages, message_public),
    }
    found = await asyncio.gather(
        *(stores[grouped][0].by_ids(sorted(ids), RENDER_PROJECTION) for grouped, ids in wanted.items())
    )
    docs = dict(zip(wanted, found, strict=True))
    found_previews = await asyncio.gather(*(previews_for(stores[grouped][0], docs[grouped]) for grouped in wanted))
    previews = dict(zip(wanted, found_previews, strict=True))
    by_key = {grouped: {doc["key"]: doc for doc in docs[grouped]} for grouped in wanted}
    for shown, grouped in frames:
        doc = by_key[grouped].get(shown["message"].get("id"))
        if doc is None:
            continue
        render = stores[grouped][1]
        current = render(doc, viewer, previews[grouped]).model_dump(mode="json")
        current["seq"] = shown["message"].get("seq")
        shown["message"] = current


async def backlog(
    user_id: str, groups_now: Iterable[str], after: int, upto: int, page_size: int
) -> AsyncIterator[Page]:
    """The user's events after `after` up to `upto`, page by page, membership followed from one page to the next:
    what a resume sends and `GET /api/events` lists."""
    member = await membership_at(user_id, groups_now, after, upto)
    while after < upto:
        found = await page(user_id, member, after, upto, page_size)
        yield found
        after = found.read_upto
        if not found.more:
            return
