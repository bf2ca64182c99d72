"""GridFS's two collections, declared so that their indexes are managed with the others."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from beanie import Document, PydanticObjectId
from pymongo import IndexModel

from chat_api.store.keys import ascending


class StoredFile(Document):
    """A GridFS file's metadata (written by PyMongo's GridFS bucket, read here)."""

    length: int
    chunkSize: int
    uploadDate: datetime | str
    filename: str
    metadata: dict[str, Any] | None = None

    class Settings:
        name = "fs.files"
        indexes: ClassVar[list[IndexModel]] = [ascending("filename", "uploadDate")]


class FileChunk(Document):
    files_id: PydanticObjectId
    n: int
    data: bytes

    class Settings:
        name = "fs.chunks"
        indexes: ClassVar[list[IndexModel]] = [ascending("files_id", "n", unique=True)]
