"""JSON answers from bodies pydantic has already serialised (in Rust, in one pass)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter
from sanic.response import HTTPResponse

JSON = "application/json"


def json_bytes(body: bytes | str, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return HTTPResponse(body, status=status, headers=headers, content_type=JSON)


def json_model(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> HTTPResponse:
    return json_bytes(model.model_dump_json().encode(), status, headers)


def json_page(adapter: TypeAdapter[list[Any]], items: list[Any], total: int) -> HTTPResponse:
    """A page of a list route, with the list's size in all in `X-Total-Count`."""
    return json_bytes(adapter.dump_json(items), headers={"X-Total-Count": str(total)})
