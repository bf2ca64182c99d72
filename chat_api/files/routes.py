"""Routes of the files package (filled in by issue 3)."""

from __future__ import annotations

from pydantic import BaseModel
from sanic import Blueprint

bp = Blueprint("files", url_prefix="/api", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = []
