"""A block as stored (`blocks`), and its one builder; user ids are hex strings (docs/store.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from beanie import Document
from bson import ObjectId
from pymongo import IndexModel

from chat_api.store.keys import ascending


class Block(Document):
    """`owner_id` blocks `blocked_id`: one document per direction (a block is one person's choice)."""

    owner_id: str
    blocked_id: str
    created_at: datetime

    class Settings:
        name = "blocks"
        indexes: ClassVar[list[IndexModel]] = [
            # One block per direction (a second PUT meets it: idempotent), the check "does B block A"
            # (both fields), and my blocks as a page (the prefix).
            ascending("owner_id", "blocked_id", unique=True),
            # Who blocks a user: presence is not sent to them, and an account deletion removes them.
            ascending("blocked_id"),
        ]


def new_block_doc(owner_id: str, blocked_id: str, now: datetime) -> dict[str, Any]:
    """`owner_id` blocks `blocked_id` from `now`, as stored."""
    return {"_id": ObjectId(), "owner_id": owner_id, "blocked_id": blocked_id, "created_at": now}
