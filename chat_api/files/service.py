"""Files stored in GridFS: storing, finding and streaming them; no HTTP here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase

from chat_api.files.models import FileChunk, StoredFile
from chat_api.files.schemas import FILE_URL, FileKind


def files_collection() -> AsyncCollection[dict[str, Any]]:
    return StoredFile.get_pymongo_collection()


def chunks_collection() -> AsyncCollection[dict[str, Any]]:
    return FileChunk.get_pymongo_collection()


def parse_file_id(file_id: str) -> ObjectId | None:
    """Only the lowercase form that upload URLs carry, so that one file has one URL (and one cache entry)."""
    return ObjectId(file_id) if FILE_URL.fullmatch(f"/api/files/{file_id}") else None


async def file_exists(file_id: str) -> bool:
    """Whether GridFS holds a file with this id (24 hex digits)."""
    if not ObjectId.is_valid(file_id):
        return False
    return await files_collection().find_one({"_id": ObjectId(file_id)}, {"_id": 1}) is not None


async def file_url_exists(url: str) -> bool:
    """Whether `url` is a `/api/files/<id>` URL of this API naming a stored file."""
    match = FILE_URL.fullmatch(url)
    return match is not None and await file_exists(match["file_id"])


async def store_file(
    database: AsyncDatabase[dict[str, Any]], content: bytes, kind: FileKind, content_type: str, owner_id: str
) -> ObjectId:
    """Write `content` to GridFS; the content type (what GET answers with) and owner go in its metadata."""
    metadata = {"content_type": content_type, "owner_id": owner_id, "kind": kind}
    file_id: ObjectId = await AsyncGridFSBucket(database).upload_from_stream(kind, content, metadata=metadata)
    return file_id


@dataclass(frozen=True)
class FileInfo:
    id: ObjectId
    length: int
    chunk_size: int
    content_type: str


async def file_info(file_id: ObjectId) -> FileInfo | None:
    found = await files_collection().find_one(
        {"_id": file_id}, {"length": 1, "chunkSize": 1, "metadata.content_type": 1}
    )
    if found is None:
        return None
    content_type = (found.get("metadata") or {}).get("content_type") or "application/octet-stream"
    return FileInfo(file_id, int(found["length"]), int(found["chunkSize"]), str(content_type))


def files_of(owner_id: str, batch: int) -> AsyncCursor[dict[str, Any]]:
    """The files a user uploaded (their metadata, not their bytes), `batch` at a time (the export).

    No index on `metadata.owner_id`: an export is rare, and fs.files holds one small document per
    upload; on nx-27017 the GridFS tables take no index of ours anyway (docs/store.md).
    """
    projection = {"length": 1, "uploadDate": 1, "metadata": 1}
    return files_collection().find({"metadata.owner_id": {"$eq": owner_id}}, projection).batch_size(batch)


class MissingChunk(RuntimeError):
    """A stored file lacks one of its chunks: it cannot be served whole."""


async def read_chunks(info: FileInfo) -> AsyncIterator[bytes]:
    """The file's bytes, one chunk per store round trip: a cursor over the chunks would get them
    all in one batch on nx-27017, whatever its batch size, and the whole file would be in memory."""
    count = -(-info.length // info.chunk_size) if info.length else 0
    for n in range(count):
        chunk = await chunks_collection().find_one({"files_id": info.id, "n": n}, {"data": 1, "_id": 0})
        if chunk is None:
            raise MissingChunk(f"file {info.id} has no chunk {n}")
        yield bytes(chunk["data"])


async def delete_files_of(owner_id: str) -> None:
    """Delete every file an account uploaded: their URLs answer 404 from then on.

    Found by `metadata.owner_id`, which no index serves (nx-27017 keeps fixed indexes on its GridFS tables): a
    scan of the files' metadata, paid only by an erasure. Each file's record goes first, then its chunks, as
    PyMongo's GridFS does; a crash in between leaves chunks no route reaches. `delete_many` on `fs.*` deletes
    nothing on nx-27017 (docs/store.md), so each record is deleted by its `_id`.
    """
    cursor = files_collection().find({"metadata.owner_id": {"$eq": owner_id}}, {"_id": 1})
    for file_id in [doc["_id"] async for doc in cursor]:
        await files_collection().delete_one({"_id": file_id})
        await chunks_collection().delete_many({"files_id": file_id})
