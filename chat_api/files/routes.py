"""Uploads into GridFS (`POST /api/upload/image|voice`) and the public `GET /api/files/<id>` that serves them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import cast

from sanic import Blueprint, Request
from sanic.headers import parse_content_header
from sanic.http.http1 import Http
from sanic.response import HTTPResponse, json
from sanic_ext.extensions.openapi import openapi

from chat_api.common.errors import Invalid, NotFound
from chat_api.files import multipart, service
from chat_api.files.schemas import ACCEPTED, MAX_FILE_SIZE, SERVED_TYPES, FileKind, Uploaded, sniff
from chat_api.http.auth import current_user_id, protected
from chat_api.http.errors import PayloadTooLarge, UnsupportedMediaType
from chat_api.http.openapi import document

bp = Blueprint("files", url_prefix="/api", strict_slashes=False)
log = logging.getLogger("chat_api.files")
Handler = Callable[[Request], Awaitable[HTTPResponse]]

# The file plus what the form wraps it in (boundaries, part headers, a field or two).
BODY_LIMIT = MAX_FILE_SIZE + 64 * 1024
# Past BODY_LIMIT the rest of the body is still read (and dropped) so that the client, which is
# still sending, gets to read the 413; past this much the connection is cut instead.
DISCARD_LIMIT = 64 * 1024 * 1024
TOO_LARGE = f"The file is over {MAX_FILE_SIZE // (1024 * 1024)} MiB"
# Files never change (a new upload is a new id), so any cache may keep them for good.
CACHE_FOREVER = "public, max-age=31536000, immutable"
FILE_ID_PATH = {"file_id": {"type": "string", "pattern": "^[0-9a-f]{24}$"}}  # lower case only: one URL per file
MULTIPART_BODY = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        }
    }
}
BINARY_CONTENT = {content_type: {"schema": {"type": "string", "format": "binary"}} for content_type in SERVED_TYPES}
FILE_HEADERS = {
    "ETag": "The file's id, quoted; it never changes",
    "Cache-Control": CACHE_FOREVER,
}
DOCUMENTED_FILE_HEADERS = {
    name: {"description": text, "schema": {"type": "string"}}
    for name, text in {**FILE_HEADERS, "Content-Length": "The file's size in bytes"}.items()
}


def body_stream(request: Request) -> Http | None:
    """The request's body stream, or None if the declared length is past DISCARD_LIMIT: Sanic then
    closes the connection after the answer instead of reading that much."""
    declared = request.headers.get("content-length", "")
    # ASCII digits only: `"²".isdigit()` is true and `int("²")` raises.
    if declared.isascii() and declared.isdigit() and int(declared) > DISCARD_LIMIT:
        return None
    return cast(Http | None, request.stream)  # HTTP/1.1: the app serves no HTTP/3


async def read_limited_body(request: Request) -> bytearray:
    """The body, or 413 once it is past BODY_LIMIT (after reading the rest, up to DISCARD_LIMIT)."""
    stream = body_stream(request)
    if stream is None:
        raise PayloadTooLarge(TOO_LARGE)
    body = bytearray()
    received = 0
    while (chunk := await stream.read()) is not None:
        received += len(chunk)
        if received > DISCARD_LIMIT:
            request.ctx.body_abandoned = True
            raise PayloadTooLarge(TOO_LARGE)  # Sanic then closes the connection
        if received <= BODY_LIMIT:
            body += chunk
    if received > BODY_LIMIT:
        raise PayloadTooLarge(TOO_LARGE)
    return body


async def discard_body(request: Request) -> None:
    """Read what is left of the body (up to DISCARD_LIMIT) and drop it."""
    stream = None if getattr(request.ctx, "body_abandoned", False) else body_stream(request)
    received = 0
    while stream is not None and received <= DISCARD_LIMIT and (chunk := await stream.read()) is not None:
        received += len(chunk)


def answered_after_the_body(handler: Handler) -> Handler:
    """An error raised before the body was read (a 401 from `@protected`) is answered once the body
    has been read, as every other answer of the route: Sanic itself would read at most 1 MiB of it
    and then close the connection, and a client still sending would see a reset, not the answer."""

    @wraps(handler)
    async def wrapper(request: Request) -> HTTPResponse:
        try:
            return await handler(request)
        except Exception:
            await discard_body(request)
            raise

    return wrapper


async def upload(request: Request, kind: FileKind) -> HTTPResponse:
    # The whole body is read before anything is judged: a client still sending would otherwise
    # see its connection reset instead of the answer.
    body = await read_limited_body(request)
    media_type, parameters = parse_content_header(request.headers.get("content-type", ""))
    boundary = str(parameters.get("boundary") or "")
    if media_type != "multipart/form-data" or not 1 <= len(boundary) <= 70:
        raise Invalid("Send the file as multipart/form-data, in the field `file`")
    try:
        content = multipart.file_part(body, boundary.encode("latin-1"))
    except (multipart.MalformedForm, UnicodeEncodeError) as error:
        raise Invalid(str(error) if isinstance(error, multipart.MalformedForm) else "Bad multipart boundary")
    if len(content) == 0:
        raise Invalid("The file is empty")
    if len(content) > MAX_FILE_SIZE:
        raise PayloadTooLarge(TOO_LARGE)
    content_type = sniff(kind, bytes(content[:64]))
    if content_type is None:
        raise UnsupportedMediaType(f"Not {'an image' if kind == 'image' else 'a voice file'}: {ACCEPTED[kind]} only")
    owner = current_user_id(request)
    file_id = await service.store_file(request.app.ctx.database, content.tobytes(), kind, content_type, owner)
    url = f"/api/files/{file_id}"
    return json(Uploaded(url=url).model_dump(), status=201, headers={"Location": url})


def upload_route(kind: FileKind) -> Callable[[Handler], Handler]:
    """`@protected` and the OpenAPI document as on the other routes, on a streamed route."""

    def decorate(handler: Handler) -> Handler:
        handler = openapi.body(MULTIPART_BODY, required=True)(answered_after_the_body(protected(handler)))
        # Declared again: `@protected` declares it on its own wrapper, which is one layer further in.
        openapi.secured("bearerAuth")(handler)
        handler = document(
            tag="files",
            responses={201: (Uploaded, "Stored")},
            headers={201: {"Location": "The file's URL, as in the body"}},
            errors=(400, 401, 413, 415),
        )(handler)
        # stream=True: the body is not read (and refused past 1 MiB) before the handler runs.
        return cast(Handler, bp.post(f"/upload/{kind}", stream=True)(handler))

    return decorate


@upload_route("image")
async def upload_image(request: Request) -> HTTPResponse:
    """Upload an image (PNG, JPEG, GIF or WebP, up to 5 MiB) as the multipart field `file`."""
    return await upload(request, "image")


@upload_route("voice")
async def upload_voice(request: Request) -> HTTPResponse:
    """Upload a voice message (MP3, Ogg, WebM or WAV, up to 5 MiB) as the multipart field `file`."""
    return await upload(request, "voice")


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison, as If-None-Match asks for."""
    candidates = (candidate.strip() for candidate in if_none_match.split(","))
    return any(candidate == "*" or candidate.removeprefix("W/") == etag for candidate in candidates)


@bp.get("/files/<file_id:str>")
@openapi.response(200, BINARY_CONTENT, "The file's bytes", headers=DOCUMENTED_FILE_HEADERS)
@document(
    tag="files",
    path=FILE_ID_PATH,
    responses={304: (None, "The client's copy (If-None-Match) is current")},
    headers={304: FILE_HEADERS},
    errors=(404,),
)
async def get_file(request: Request, file_id: str) -> HTTPResponse | None:
    """Download an uploaded file (public, so that `<img src>` works); streamed chunk by chunk."""
    oid = service.parse_file_id(file_id)
    info = await service.file_info(oid) if oid is not None else None
    if info is None:
        raise NotFound("File not found")
    # Set here, they win over the middleware's `no-store` (which it only adds when absent).
    headers = {"ETag": f'"{file_id}"', "Cache-Control": CACHE_FOREVER}
    if etag_matches(request.headers.get("if-none-match", ""), headers["ETag"]):
        return HTTPResponse(status=304, headers=headers)
    response = await request.respond(
        headers={**headers, "Content-Length": str(info.length)}, content_type=info.content_type
    )
    try:
        async for chunk in service.read_chunks(info):
            await response.send(chunk)
    except service.MissingChunk:
        # The status line is gone already: cutting the connection short is how the client learns.
        log.error("file %s cannot be served whole: a chunk is missing", file_id)
        raise
    await response.eof()
    return None
