"""Files stored in GridFS; no HTTP here."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection

from chat_api.files.models import StoredFile
from chat_api.messages.schemas import FILE_URL


def files_collection() -> AsyncCollection[dict[str, Any]]:
    return StoredFile.get_pymongo_collection()


async def file_exists(file_id: str) -> bool:
    """Whether GridFS holds a file with this id (24 hex digits)."""
    if not ObjectId.is_valid(file_id):
        return False
    return await files_collection().find_one({"_id": ObjectId(file_id)}, {"_id": 1}) is not None


async def file_url_exists(url: str) -> bool:
    """Whether `url` is a `/api/files/<id>` URL of this API naming a stored file."""
    match = FILE_URL.fullmatch(url)
    return match is not None and await file_exists(match["file_id"])
