"""What the upload routes answer, and the file types they accept, recognised by their leading bytes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

FileKind = Literal["image", "voice"]
MAX_FILE_SIZE = 5 * 1024 * 1024
# What POST /api/upload/* answers; an img/voice message must carry one of these.
FILE_URL = re.compile(r"/api/files/(?P<file_id>[0-9a-f]{24})")


class Uploaded(BaseModel):
    url: str = Field(description="Where the file is served: `/api/files/<id>`", pattern=r"^/api/files/[0-9a-f]{24}$")


def _mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    # A bare MPEG audio frame header: 11 sync bits, then a version and a layer that are not
    # the reserved values (which also keeps JPEG's FF D8 out).
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer, bitrate = (head[1] >> 3) & 3, (head[1] >> 1) & 3, head[2] >> 4
    return version != 1 and layer != 0 and bitrate != 0xF


def _riff(form: bytes) -> Callable[[bytes], bool]:
    return lambda head: head[:4] == b"RIFF" and head[8:12] == form


def _webm(head: bytes) -> bool:
    # An EBML header whose DocType is "webm" (Matroska's other files say "matroska").
    return head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64]


# Per kind: (content type, test on the first bytes), in the order they are tried.
SIGNATURES: dict[FileKind, list[tuple[str, Callable[[bytes], bool]]]] = {
    "image": [
        ("image/png", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
        ("image/jpeg", lambda head: head.startswith(b"\xff\xd8\xff")),
        ("image/gif", lambda head: head[:6] in (b"GIF87a", b"GIF89a")),
        ("image/webp", _riff(b"WEBP")),
    ],
    "voice": [
        ("audio/mpeg", _mp3),
        ("audio/ogg", lambda head: head.startswith(b"OggS")),
        ("audio/webm", _webm),
        ("audio/wav", _riff(b"WAVE")),
    ],
}
ACCEPTED = {"image": "PNG, JPEG, GIF or WebP", "voice": "MP3, Ogg, WebM or WAV"}
SERVED_TYPES = [content_type for kind in SIGNATURES.values() for content_type, _ in kind]


def sniff(kind: FileKind, head: bytes) -> str | None:
    """The content type of a file of `kind` judged by its first bytes, or None if not one of them."""
    return next((content_type for content_type, test in SIGNATURES[kind] if test(head)), None)
