"""Ids in paths and bodies: 24 hex digits, stored and compared in their lower-case form."""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId

_OBJECT_ID = re.compile(r"[0-9a-fA-F]{24}")
OBJECT_ID_PATTERN = "^[0-9a-fA-F]{24}$"
# The path parameter of every route that names a user, group, request or message by id: any
# other string names nothing, which is a 404 like an unknown id.
OBJECT_ID_PATH: dict[str, Any] = {"type": "string", "pattern": OBJECT_ID_PATTERN}


def parse_object_id(value: str) -> ObjectId | None:
    """The ObjectId for a 24-hex-digit string (either case), else None.

    Always query `_id` with an ObjectId: nx-27017 also matches the hex string, MongoDB does not.
    """
    return ObjectId(value) if _OBJECT_ID.fullmatch(value) else None


def canonical_id(value: str) -> str | None:
    """The lower-case hex form of a 24-hex-digit id, else None: references to users, groups and
    requests are stored and compared in this form (nx-27017 matches ObjectIds outside `_id` only
    with `$in`, so they are kept as strings; see docs/store.md)."""
    oid = parse_object_id(value)
    return None if oid is None else str(oid)
