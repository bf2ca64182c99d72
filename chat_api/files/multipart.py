"""The `file` part of a multipart/form-data upload body (RFC 7578), found without copying the body."""

from __future__ import annotations

from sanic.headers import parse_content_header

FILE_FIELD = "file"
MAX_PART_HEADERS = 8 * 1024


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
