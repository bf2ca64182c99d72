"""Index management from the indexes declared on the documents: create, drop, and drift status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from beanie import Document
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from chat_api.documents import DOCUMENT_MODELS

# Options that change what an index guarantees: a partial or sparse "unique" index does not
# make every document unique.
OPTIONS = ("unique", "sparse", "partialFilterExpression", "collation", "expireAfterSeconds")


@dataclass(frozen=True)
class IndexSpec:
    collection: str
    name: str
    keys: tuple[tuple[str, Any], ...]
    options: str  # the OPTIONS present, as canonical JSON, so that specs compare and hash

    @classmethod
    def of(cls, collection: str, name: str, keys: Any, spec: dict[str, Any]) -> IndexSpec:
        # `is not`, not `in (None, False)`: a TTL of 0 (expire at the stored date) equals False.
        options = {key: spec[key] for key in OPTIONS if spec.get(key) is not None and spec.get(key) is not False}
        return cls(collection, name, tuple((k, v) for k, v in keys), json.dumps(options, sort_keys=True, default=str))

    def same_index(self, other: IndexSpec) -> bool:
        # Compared by keys and options, never by name: nx-27017 lists `email_1` as
        # `idx_users_email`, and on MongoDB a name says nothing about the options.
        return (self.collection, self.keys, self.options) == (other.collection, other.keys, other.options)

    def __str__(self) -> str:
        keys = ", ".join(f"{k}: {v}" for k, v in self.keys)
        options = " ".join(f"{k}={v}" for k, v in json.loads(self.options).items())
        return f"{self.collection}.{self.name} {{{keys}}}{' ' + options if options else ''}"


@dataclass
class IndexStatus:
    present: list[IndexSpec] = field(default_factory=list)
    missing: list[IndexSpec] = field(default_factory=list)
    extra: list[IndexSpec] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.extra)


def _declared_models(models: Sequence[type[Document]]) -> list[tuple[str, IndexModel]]:
    pairs = []
    for model in models:
        settings = model.Settings
        for index in getattr(settings, "indexes", []):
            pairs.append((settings.name, index))
    return pairs


def declared_indexes(models: Sequence[type[Document]] = DOCUMENT_MODELS) -> list[IndexSpec]:
    specs = []
    for collection, index in _declared_models(models):
        document = index.document
        specs.append(IndexSpec.of(collection, document["name"], document["key"].items(), document))
    return specs


async def existing_indexes(database: AsyncDatabase[Any], collection: str) -> list[IndexSpec]:
    info = await database[collection].index_information()
    return [IndexSpec.of(collection, name, spec["key"], spec) for name, spec in info.items() if name != "_id_"]


async def index_status(database: AsyncDatabase[Any], models: Sequence[type[Document]] = DOCUMENT_MODELS) -> IndexStatus:
    status = IndexStatus()
    declared = declared_indexes(models)
    for collection in sorted({spec.collection for spec in declared}):
        existing = await existing_indexes(database, collection)
        for spec in (s for s in declared if s.collection == collection):
            found = any(spec.same_index(e) for e in existing)
            (status.present if found else status.missing).append(spec)
        status.extra.extend(e for e in existing if not any(e.same_index(s) for s in declared))
    return status


async def create_indexes(
    database: AsyncDatabase[Any], models: Sequence[type[Document]] = DOCUMENT_MODELS
) -> list[IndexSpec]:
    """Create the declared indexes that are missing; return those created. Idempotent."""
    status = await index_status(database, models)
    for collection, index in _declared_models(models):
        if any(m.collection == collection and m.name == index.document["name"] for m in status.missing):
            await database[collection].create_indexes([index])
    return status.missing


async def drop_indexes(
    database: AsyncDatabase[Any], models: Sequence[type[Document]] = DOCUMENT_MODELS
) -> list[IndexSpec]:
    """Drop every index but `_id` on the documents' collections; return those dropped."""
    dropped = []
    for collection in sorted({spec.collection for spec in declared_indexes(models)}):
        # By the name the store lists: on MongoDB an equivalent index may carry another
        # name than the declared one, and nx-27017 accepts the names it lists.
        for spec in await existing_indexes(database, collection):
            await database[collection].drop_index(spec.name)
            dropped.append(spec)
    return dropped
