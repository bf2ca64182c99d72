"""Paging: the `limit`/`offset` query of every list route, and totals counted from an index."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from pymongo.asynchronous.collection import AsyncCollection

from chat_api.common.fields import DIGITS_ONLY, StrictModel

# Documents counted per batch by `count_matching`: tens of thousands of tiny projected documents are one round trip.
COUNT_BATCH = 100_000


class Pagination(StrictModel):
    limit: Annotated[int, Field(ge=1, le=200, description="How many users, 1 to 200 (default 50)"), DIGITS_ONLY] = 50
    offset: Annotated[int, Field(ge=0, description="How many users to skip (default 0)"), DIGITS_ONLY] = 0


async def count_matching(collection: AsyncCollection[dict[str, Any]], query: dict[str, Any]) -> int:
    """How many documents match `query`, an equality prefix of one of the collection's indexes.

    Not `count_documents`: nx-27017 runs its `$match` in Python over the whole collection (seconds
    at 100,000 documents, docs/store.md), where this find uses the index. Projected to the queried
    fields alone, MongoDB answers it from the index without reading a document.
    """
    projection = {"_id": 0, **{field: 1 for field in query}}
    return len(await collection.find(query, projection).batch_size(COUNT_BATCH).to_list())
