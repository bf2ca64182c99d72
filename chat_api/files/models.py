"""GridFS's two collections, declared so that their indexes are managed with the others."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from beanie import Document, PydanticObjectId
from pymongo import ASCENDING, IndexModel


class StoredFile(Document):
    """A GridFS file's metadata (written by PyMongo's GridFS bucket, read here)."""

    length: int
    chunkSize: int
    uploadDate: datetime | str
    filename: str
    metadata: dict[str, Any] | None = None

    class Settings:
        name = "fs.files"
        indexes: ClassVar[list[IndexModel]] = [
            IndexModel([("filename", ASCENDING), ("uploadDate", ASCENDING)], name="filename_1_uploadDate_1"),
        ]


class FileChunk(Document):
    files_id: PydanticObjectId
    n: int
    data: bytes

    class Settings:
        name = "fs.chunks"
        indexes: ClassVar[list[IndexModel]] = [
            IndexModel([("files_id", ASCENDING), ("n", ASCENDING)], name="files_id_1_n_1", unique=True),
        ]
