"""A user's stream of stored events: the backlog a resume replays and `GET /api/events` lists.

A user's events are those of their home partition addressed to them, and the group events of that
partition for groups they were a member of at the time. Membership is known from the memberships of
now and the user's `group_joined` / `group_left` events in the range: for each group, the first change
after `after` says whether the user was in it before (a `group_left`) or not (a `group_joined`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from chat_api.events import service as events
from chat_api.groups import repository as groups


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
    for doc in docs:
        group_id = doc.get("group")
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
    return Page(mine, docs[-1]["seq"] if docs else upto, len(docs) == limit)


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
