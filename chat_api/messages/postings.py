"""Every query of `message_terms`, the search index of messages (docs/store.md#message-search).

Written where messages are stored (one `insert_many` per send), kept true on recall (`unindex`), edit
(`reindex`), account erasure (`forget_sender`, `forget_owner`) and group purge (`forget_owner`); read by
`chat_api.search`, one index range per reader scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from chat_api.messages.models import MessageTerm, new_term_docs

DUPLICATE_KEY = 11000


def collection() -> AsyncCollection[dict[str, Any]]:
    return MessageTerm.get_pymongo_collection()


async def index(doc: Mapping[str, Any]) -> list[str]:
    """Write a stored message's postings in one command; the ids written. Postings already there (a retried
    send, an edit that kept words) are duplicate keys, which is the wanted outcome, not an error."""
    postings = new_term_docs(doc)
    if postings:
        try:
            await collection().insert_many(postings, ordered=False)
        except BulkWriteError as error:
            if any(write.get("code") != DUPLICATE_KEY for write in error.details.get("writeErrors", [])):
                raise
    return [posting["_id"] for posting in postings]


async def unindex(message_key: str) -> None:
    """Remove a message's postings (recalled, or undone): it is found by search no more."""
    await collection().delete_many({"key": {"$eq": message_key}})


async def reindex(doc: Mapping[str, Any]) -> None:
    """Index a message's current text (edited): the new postings first, then those of words it no longer has,
    so a crash between the two leaves only extra postings, which the search's check against the text ignores."""
    kept = await index(doc)
    await collection().delete_many({"key": {"$eq": doc["key"]}, "_id": {"$nin": kept}})


async def forget_sender(sender: str) -> None:
    """Remove the postings of every message `sender` sent (account erasure), through `from_id_1`."""
    await collection().delete_many({"from_id": {"$eq": sender}})


async def forget_owner(owner: str) -> None:
    """Remove every posting of one reader scope: a purged group's (`g:<id>`), a deleted account's own copies."""
    await collection().delete_many({"owner": {"$eq": owner}})


def walk_filter(owner: str, term: str, since: str, before: str | None) -> dict[str, Any]:
    """The postings of `term` readable through `owner`, positioned at or after `since` and before `before`: one
    range of `owner_1_term_1_pos_1`, `$eq` spelled out so that nx-27017 uses it too."""
    span: dict[str, Any] = {"$gte": since}
    if before is not None:
        span["$lt"] = before
    return {"owner": {"$eq": owner}, "term": {"$eq": term}, "pos": span}


async def walk(owner: str, term: str, since: str, before: str | None, limit: int) -> list[dict[str, Any]]:
    """The next `limit` postings of `walk_filter`, newest first, read in the index's order: the cost is the
    page's, not the number of postings (a range on `term` would make the store sort every match)."""
    query = walk_filter(owner, term, since, before)
    cursor = collection().find(query, {"_id": 0, "key": 1, "pos": 1}).sort("pos", DESCENDING).limit(limit)
    return await cursor.batch_size(limit).to_list()
