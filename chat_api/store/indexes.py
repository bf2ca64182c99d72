"""Index management from the indexes declared on the documents: create, drop, and drift status."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from beanie import Document
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from chat_api.store.documents import DOCUMENT_MODELS

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
    # Indexes neither `create` nor `drop` can change, because the store fixes them itself (GridFS
    # on nx-27017), whether declared and missing there or built in and not declared: never drift.
    fixed: list[IndexSpec] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.extra)


# GridFS on nx-27017 is no pair of collections but two SQL tables of its own (`fs_files`,
# `fs_chunks`) with fixed indexes: `createIndexes` on `fs.*` only makes sure the tables exist, and
# `listIndexes` names the indexes with keys guessed from the name (`files_id_n: 1`). Worse, listing
# (or dropping) the indexes of `fs.chunks` before those tables exist creates an ordinary document
# table under their name, after which every GridFS upload fails ("no such column: files_id").
GRIDFS_COLLECTIONS = ("fs.files", "fs.chunks")
GRIDFS_TABLES = {"fs.files": "fs_files", "fs.chunks": "fs_chunks"}
# What the listed names really are (neosqlite's GridFSBucket._create_collections).
EMBEDDED_GRIDFS_INDEXES: dict[str, tuple[tuple[tuple[str, Any], ...], dict[str, Any]]] = {
    "idx_fs_chunks_files_id_n": ((("files_id", 1), ("n", 1)), {"unique": True}),
    "idx_fs_chunks_files_id": ((("files_id", 1),), {}),
    "idx_fs_files_filename": ((("filename", 1),), {}),
}


async def is_embedded_store(database: AsyncDatabase[Any]) -> bool:
    """nx-27017 names itself in `buildInfo`; a MongoDB server has no `process` there."""
    info = await database.command("buildInfo")
    return info.get("process") == "nx_27017"


def _store_fixes(embedded: bool, collection: str) -> bool:
    return embedded and collection in GRIDFS_COLLECTIONS


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


async def embedded_gridfs_indexes(database: AsyncDatabase[Any], collection: str) -> list[IndexSpec]:
    """The fixed indexes of an nx-27017 GridFS table, with their real keys; none before it exists."""
    if GRIDFS_TABLES[collection] not in await database.list_collection_names():
        return []  # listing now would create the wrong table (see GRIDFS_COLLECTIONS)
    specs = []
    for spec in await existing_indexes(database, collection):
        keys, options = EMBEDDED_GRIDFS_INDEXES.get(spec.name, (spec.keys, json.loads(spec.options)))
        specs.append(IndexSpec.of(collection, spec.name, keys, options))
    return specs


async def index_status(database: AsyncDatabase[Any], models: Sequence[type[Document]] = DOCUMENT_MODELS) -> IndexStatus:
    status = IndexStatus()
    declared = declared_indexes(models)
    embedded = await is_embedded_store(database)
    for collection in sorted({spec.collection for spec in declared}):
        fixed = _store_fixes(embedded, collection)
        if fixed:
            existing = await embedded_gridfs_indexes(database, collection)
            if not existing:  # the tables are made by `create`: until then, a real drift
                status.missing.extend(s for s in declared if s.collection == collection)
                continue
        else:
            existing = await existing_indexes(database, collection)
        for spec in (s for s in declared if s.collection == collection):
            found = any(spec.same_index(e) for e in existing)
            (status.present if found else status.fixed if fixed else status.missing).append(spec)
        undeclared = [e for e in existing if not any(e.same_index(s) for s in declared)]
        (status.fixed if fixed else status.extra).extend(undeclared)
    return status


async def create_indexes(
    database: AsyncDatabase[Any], models: Sequence[type[Document]] = DOCUMENT_MODELS
) -> list[IndexSpec]:
    """Create the declared indexes that are missing; return those created. Idempotent.

    On nx-27017 this is also what creates the GridFS tables (with their fixed indexes), before
    anything lists their indexes.
    """
    status = await index_status(database, models)
    for collection, index in _declared_models(models):
        if any(m.collection == collection and m.name == index.document["name"] for m in status.missing):
            await database[collection].create_indexes([index])
    if not status.missing:
        return []
    # What the store now has of them: on nx-27017 a GridFS index it does not build stays absent.
    after = await index_status(database, models)
    return [spec for spec in status.missing if spec in after.present]


async def drop_indexes(
    database: AsyncDatabase[Any], models: Sequence[type[Document]] = DOCUMENT_MODELS
) -> list[IndexSpec]:
    """Drop every index but `_id` on the documents' collections; return those dropped.

    Not the GridFS tables' fixed indexes on nx-27017, which cannot be dropped.
    """
    dropped = []
    embedded = await is_embedded_store(database)
    for collection in sorted({spec.collection for spec in declared_indexes(models)}):
        if _store_fixes(embedded, collection):
            continue
        # By the name the store lists: on MongoDB an equivalent index may carry another
        # name than the declared one, and nx-27017 accepts the names it lists.
        for spec in await existing_indexes(database, collection):
            await database[collection].drop_index(spec.name)
            dropped.append(spec)
    return dropped
