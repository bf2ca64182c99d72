"""The queries of a message collection: `user_messages` here, and `group_messages` through groups.repository.

Both collections store the same shape (messages.models.new_message_doc) under the same indexes,
the unique (<conversation>, n) and the unique client_key, so one implementation serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from beanie import Document
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from chat_api.common.pagination import COUNT_BATCH
from chat_api.messages.models import ERASED, DirectMessage


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

    async def by_ids(self, message_ids: list[ObjectId]) -> list[dict[str, Any]]:
        """The messages with these ids, in one `$in` query on `_id` (indexed on both stores), without the
        delivery bookkeeping."""
        if not message_ids:
            return []
        projection = {"client_key": 0, "deliver_by_ms": 0}
        return await self.collection().find({"_id": {"$in": message_ids}}, projection).to_list()

    async def set_seq(self, message_id: ObjectId, seq: int) -> None:
        """Mark a message delivered by the event `seq`."""
        await self.collection().update_one({"_id": message_id}, {"$set": {"seq": seq}})

    async def erase_from(self, sender: str) -> None:
        """Blank the text of every message `sender` sent, through `from_id_1`; the messages keep their place."""
        await self.collection().update_many({"from_id": {"$eq": sender}}, {"$set": ERASED})

    async def conversations_from(self, sender: str) -> set[str]:
        """The conversations `sender` has sent messages to (`from_id_1`, the documents' conversation field)."""
        cursor = self.collection().find({"from_id": {"$eq": sender}}, {"_id": 0, self.conversation: 1})
        return {doc[self.conversation] async for doc in cursor}

    def page_filter(self, conversation_id: str, before_n: int | None) -> dict[str, Any]:
        """The filter of a history page, served by the (<conversation>, n) index: `$eq` spelled out
        so that nx-27017 uses it too."""
        query: dict[str, Any] = {self.conversation: {"$eq": conversation_id}}
        if before_n is not None:
            query["n"] = {"$lt": before_n}
        return query

    async def number_of(self, conversation_id: str, message_id: str) -> int | None:
        """The number of a message of this conversation (by its id); None if it is not one of them."""
        query = {"_id": ObjectId(message_id), self.conversation: {"$eq": conversation_id}}
        doc = await self.collection().find_one(query, {"n": 1})
        return None if doc is None else int(doc["n"])

    async def page(self, conversation_id: str, before_n: int | None, limit: int) -> list[dict[str, Any]]:
        """A page of a conversation, newest (highest number) first, numbered below `before_n` when given."""
        cursor = self.collection().find(self.page_filter(conversation_id, before_n))
        return await cursor.sort("n", DESCENDING).limit(limit).to_list()

    def unread_filter(self, conversation_id: str, read_n: int, me: str) -> dict[str, Any]:
        """Messages numbered after `read_n` from others: a range of the (<conversation>, n) index."""
        return {self.conversation: {"$eq": conversation_id}, "n": {"$gt": read_n}, "from_id": {"$ne": me}}

    async def unread_count(self, conversation_id: str, read_n: int, me: str) -> int:
        """How many messages of the conversation are after `read_n` and not mine: exact, counting the
        messages that exist (a number taken by a request that died before storing it is no message).

        A find of the numbers rather than count_documents: nx-27017 counts in Python over the whole
        collection, while this reads only the index range after `read_n`, whatever the history's length.
        """
        cursor = self.collection().find(self.unread_filter(conversation_id, read_n, me), {"_id": 0, "n": 1})
        return len(await cursor.batch_size(COUNT_BATCH).to_list())

    async def batch_after(self, conversation_id: str, after_n: int, limit: int) -> list[dict[str, Any]]:
        """The next `limit` messages of a conversation numbered after `after_n`, oldest first (the export
        walks a whole conversation this way), without the delivery bookkeeping.

        One range read of the (<conversation>, n) index per batch rather than one cursor over the
        whole conversation: nx-27017 materialises a sorted cursor's every match before its first
        batch (6 s and 300 MB for 100,000 messages, past STORE_TIMEOUT), while this answers in
        milliseconds on both stores.
        """
        query = {self.conversation: {"$eq": conversation_id}, "n": {"$gt": after_n}}
        projection = {"client_key": 0, "deliver_by_ms": 0, "seq": 0}
        cursor = self.collection().find(query, projection).sort("n", ASCENDING).limit(limit).batch_size(limit)
        return await cursor.to_list()


direct_messages = MessageStore(DirectMessage, "pair")
