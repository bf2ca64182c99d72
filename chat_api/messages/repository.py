"""The queries of a message collection: `user_messages` here, and `group_messages` through groups.repository.

Both collections store the same shape (messages.models.new_message_doc) under the same indexes,
(<conversation>, key) and the unique client_key, so one implementation serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beanie import Document
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from chat_api.messages.models import DirectMessage


class MessageStore:
    """The queries of one message collection; `conversation` is the field that names a message's
    conversation (`pair` or `group_id`), the first key of its history index."""

    def __init__(self, document: type[Document], conversation: str):
        self.document = document
        self.conversation = conversation

    def collection(self) -> AsyncCollection[dict[str, Any]]:
        return self.document.get_pymongo_collection()

    async def insert(self, doc: dict[str, Any]) -> None:
        """Raises DuplicateKeyError when the client_key was used before (a retry)."""
        await self.collection().insert_one(doc)

    async def find_by_client_key(self, client_key: str) -> dict[str, Any] | None:
        return await self.collection().find_one({"client_key": {"$eq": client_key}})

    async def claim_delivery(self, original: Mapping[str, Any], lease: int | None, until_ms: int) -> bool:
        """Take over the delivery of a stored, undelivered message whose lease was `lease`: True for
        the one claimant whose conditional write matched."""
        claim = {"_id": original["_id"], "seq": None, "deliver_by_ms": lease}
        result = await self.collection().update_one(claim, {"$set": {"deliver_by_ms": until_ms}})
        return result.modified_count == 1

    async def set_seq(self, message_id: ObjectId, seq: int) -> None:
        """Mark a message delivered by the event `seq`."""
        await self.collection().update_one({"_id": message_id}, {"$set": {"seq": seq}})

    def page_filter(self, conversation_id: str, before: str | None) -> dict[str, Any]:
        """The filter of a history page, served by the (<conversation>, key) index: `$eq` spelled out
        so that nx-27017 uses it too."""
        query: dict[str, Any] = {self.conversation: {"$eq": conversation_id}}
        if before is not None:
            query["key"] = {"$lt": before.lower()}
        return query

    async def batch_after(self, conversation_id: str, after_key: str, limit: int) -> list[dict[str, Any]]:
        """The next `limit` messages of a conversation after `after_key`, oldest first (the export walks
        a whole conversation this way), without the delivery bookkeeping.

        One range read of the (<conversation>, key) index per batch rather than one cursor over the
        whole conversation: nx-27017 materialises a sorted cursor's every match before its first
        batch (6 s and 300 MB for 100,000 messages, past STORE_TIMEOUT), while this answers in
        milliseconds on both stores.
        """
        query = {self.conversation: {"$eq": conversation_id}, "key": {"$gt": after_key}}
        projection = {"client_key": 0, "deliver_by_ms": 0, "seq": 0}
        cursor = self.collection().find(query, projection).sort("key", ASCENDING).limit(limit).batch_size(limit)
        return await cursor.to_list()

    async def page(self, conversation_id: str, before: str | None, limit: int) -> list[dict[str, Any]]:
        """A page of a conversation, newest first, older than the message `before` when given."""
        cursor = self.collection().find(self.page_filter(conversation_id, before))
        return await cursor.sort("key", DESCENDING).limit(limit).to_list()


direct_messages = MessageStore(DirectMessage, "pair")
