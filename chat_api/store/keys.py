"""Index declarations for the documents' `Settings.indexes`, named as MongoDB names them by default."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel


def ascending(*fields: str, **options: Any) -> IndexModel:
    """An index on `fields` in ascending order, named `<field>_1_<field>_1…` unless `name` is given."""
    options.setdefault("name", "_".join(f"{field}_1" for field in fields))
    return IndexModel([(field, ASCENDING) for field in fields], **options)
