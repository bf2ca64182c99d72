"""Message search: the messages a user may read that a query finds, newest first (docs/decisions.md#message-search).

What a user may read: their direct conversations (every message of a pair they are in, as the history shows it)
and their current groups from the time they joined. Each of those reader scopes is one range of the index
(`chat_api.messages.postings`: the user's own direct postings, one range per group starting at the joining
time), walked newest first by the query's most selective term; the ranges are merged in position order, and
each candidate is checked against the message as it is now (its text, recalled, erased, its group still
there), so no stale posting is ever shown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from chat_api.common.clock import epoch_ms, stored_datetime
from chat_api.common.errors import Invalid
from chat_api.groups import repository as groups
from chat_api.groups.repository import group_messages
from chat_api.groups.service import message_public
from chat_api.messages import postings
from chat_api.messages.models import group_owner, message_position, searchable
from chat_api.messages.repository import direct_messages
from chat_api.messages.schemas import MessagePublic, Previews
from chat_api.messages.service import previews_for
from chat_api.messages.terms import Query, QueryError
from chat_api.search.schemas import ConversationRef, SearchHit

# The most postings one range is read for at once: the first read asks for a page's worth, each further one
# for twice as many (a query whose other words rule many candidates out), up to this.
MAX_BATCH = 1000
BEFORE_UNREADABLE = "`before` must be the id of a message you can read"


@dataclass
class Scope:
    """One reader scope's range of postings, read newest first: from `since`, below `upper` (None: the top)."""

    owner: str
    since: str
    upper: str | None
    done: bool = False


@dataclass(frozen=True)
class Reader:
    """What `user_id` may read: every direct conversation they are in, and each group since they joined it."""

    user_id: str
    joined: dict[str, str]  # group id -> the position of the joining time (the start of what is readable)

    def scopes(self, before: str | None) -> list[Scope]:
        return [Scope(self.user_id, "", before)] + [
            Scope(group_owner(group_id), since, before) for group_id, since in self.joined.items()
        ]

    def may_read(self, doc: dict[str, Any], group_alive: bool = True) -> bool:
        if "group_id" in doc:
            since = self.joined.get(doc["group_id"])
            return group_alive and since is not None and message_position(doc) >= since
        return self.user_id in (doc["from_id"], doc["to_id"])


def joining_position(joined_at: Any) -> str:
    """The position of the first message a member may read: anything at or after the joining millisecond."""
    return f"{epoch_ms(stored_datetime(joined_at)):013d}"


async def search(user_id: str, q: str, before: str | None, limit: int) -> list[SearchHit]:
    """The messages `user_id` may read that `q` finds, newest first, older than the message `before` when given."""
    try:
        query = Query.parse(q)
    except QueryError as error:
        raise Invalid(str(error)) from None
    memberships, anchor = await asyncio.gather(groups.joined_groups(user_id), _message(before))
    reader = Reader(user_id, {m["group_id"]: joining_position(m["joined_at"]) for m in memberships})
    if before is not None and (anchor is None or not reader.may_read(anchor)):
        raise Invalid(BEFORE_UNREADABLE)
    upper = None if anchor is None else message_position(anchor)
    return await _walk(reader, query, reader.scopes(upper), limit)


async def _message(message_id: str | None) -> dict[str, Any] | None:
    """The direct or group message with this id (both collections asked at once), None if neither has it."""
    if message_id is None:
        return None
    oid = ObjectId(message_id)
    found = await asyncio.gather(direct_messages.by_ids([oid]), group_messages.by_ids([oid]))
    return next((doc for docs in found for doc in docs), None)


async def _walk(reader: Reader, query: Query, scopes: list[Scope], limit: int) -> list[SearchHit]:
    """Merge the scopes' ranges newest first and keep the candidates that the messages as stored confirm.

    A candidate is taken only once no scope can still hold a newer posting: each scope not yet exhausted has
    been read down to its `upper`, so a candidate at or above the highest of those is in its final place. With a
    one-word query the first reads (a page from each scope) give the whole page.
    """
    hits: list[SearchHit] = []
    buffer: list[tuple[str, str, str]] = []  # (pos, key, owner) not yet checked, newest first
    batch = limit
    while True:
        live = [scope for scope in scopes if not scope.done]
        pages = await asyncio.gather(
            *(postings.walk(scope.owner, query.term, scope.since, scope.upper, batch) for scope in live)
        )
        for scope, rows in zip(live, pages, strict=True):
            buffer.extend((row["pos"], row["key"], scope.owner) for row in rows)
            if len(rows) < batch:
                scope.done = True
            else:
                scope.upper = rows[-1]["pos"]
        buffer.sort(reverse=True)
        pending = [scope.upper for scope in scopes if not scope.done and scope.upper is not None]
        threshold = max(pending) if pending else ""
        ready = sum(1 for pos, _, _ in buffer if pos >= threshold)
        while ready and len(hits) < limit:
            chunk, buffer = buffer[: min(ready, limit - len(hits))], buffer[min(ready, limit - len(hits)) :]
            ready -= len(chunk)
            hits.extend(await _confirmed(reader, query, chunk))
        if len(hits) >= limit or not pending:
            return hits[:limit]
        batch = min(batch * 2, MAX_BATCH)


async def _confirmed(reader: Reader, query: Query, candidates: list[tuple[str, str, str]]) -> list[SearchHit]:
    """The candidates (in their order) whose message, as stored now, may be read by `reader` and matches."""
    direct = [ObjectId(key) for _, key, owner in candidates if not owner.startswith("g:")]
    grouped = [ObjectId(key) for _, key, owner in candidates if owner.startswith("g:")]
    group_ids = sorted({owner[2:] for _, _, owner in candidates if owner.startswith("g:")})
    direct_docs, group_docs, alive = await asyncio.gather(
        direct_messages.by_ids(direct), group_messages.by_ids(grouped), _alive_groups(group_ids)
    )
    found = {doc["key"]: doc for doc in [*direct_docs, *group_docs]}
    shown = []
    for _, key, _ in candidates:
        doc = found.get(key)
        if doc is None or not searchable(doc) or not query.matches(doc["msg"]):
            continue
        if not reader.may_read(doc, doc.get("group_id") in alive):
            continue
        shown.append(doc)
    # Shown as the histories show them: the originals of replies (one read per collection, only with replies).
    direct_previews, group_previews = await asyncio.gather(
        previews_for(direct_messages, [doc for doc in shown if "group_id" not in doc]),
        previews_for(group_messages, [doc for doc in shown if "group_id" in doc]),
    )
    return [hit(reader.user_id, doc, {**direct_previews, **group_previews}) for doc in shown]


async def _alive_groups(group_ids: list[str]) -> set[str]:
    """Which of these groups still exist: a deleted group's tombstone opens nothing while its purge is under way."""
    if not group_ids:
        return set()
    return {str(doc["_id"]) for doc in await groups.groups_by_ids(group_ids, {"_id": 1})}


def hit(viewer: str, doc: dict[str, Any], previews: Previews) -> SearchHit:
    """A message found, as `viewer` sees it, with its conversation named as in their conversation list."""
    if "group_id" in doc:
        group = ConversationRef(type="group", id=doc["group_id"])
        return SearchHit(conversation=group, message=message_public(doc, viewer, previews))
    other = doc["to_id"] if doc["from_id"] == viewer else doc["from_id"]
    direct = ConversationRef(type="user", id=other)
    return SearchHit(conversation=direct, message=MessagePublic.from_stored(doc, viewer, previews))
