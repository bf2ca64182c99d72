"""Files stored in GridFS, and the multipart body of an upload; no HTTP here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from sanic.headers import parse_content_header

from chat_api.files.models import FileChunk, StoredFile
from chat_api.files.schemas import FileKind
from chat_api.messages.schemas import FILE_URL

FILE_FIELD = "file"
MAX_PART_HEADERS = 8 * 1024


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


class MalformedForm(ValueError):
    """The body is not the multipart/form-data it claims to be, or has no `file` part."""


def file_part(body: bytes | bytearray, boundary: bytes, field: str = FILE_FIELD) -> memoryview:
    """The content of the form field `field` (RFC 7578), as a view into `body`, not a copy."""
    delimiter = b"--" + boundary
    view = memoryview(body)
    position = body.find(delimiter)
    if position < 0:
        raise MalformedForm("No multipart boundary in the body")
    while True:
        position += len(delimiter)
        if body[position : position + 2] == b"--":
            raise MalformedForm(f"No `{field}` field in the form")
        line_end = body.find(b"\r\n", position)
        headers_end = body.find(b"\r\n\r\n", line_end) if line_end >= 0 else -1
        if headers_end < 0 or headers_end - line_end > MAX_PART_HEADERS:
            raise MalformedForm("A form part without headers")
        content_start = headers_end + 4
        next_delimiter = body.find(b"\r\n" + delimiter, content_start)
        if next_delimiter < 0:
            raise MalformedForm("The form is not terminated")
        if _field_name(bytes(view[line_end + 2 : headers_end])) == field:
            return view[content_start:next_delimiter]
        position = next_delimiter + 2


def _field_name(headers: bytes) -> str | None:
    for line in headers.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "content-disposition":
            disposition, parameters = parse_content_header(value.strip())
            if disposition.lower() == "form-data":
                found = parameters.get("name")
                return str(found) if found is not None else None
    return None


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
