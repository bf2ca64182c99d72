"""Routes of the realtime package (filled in by issue 3)."""

from __future__ import annotations

from pydantic import BaseModel
from sanic import Blueprint

bp = Blueprint("realtime", strict_slashes=False)
SCHEMA_MODELS: list[type[BaseModel]] = []
