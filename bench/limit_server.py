"""The limit: bare Sanic handlers doing the app's store round trips with raw PyMongo, and nothing else.

Scenarios 1-3 hold the app against these. Each handler answers exactly the JSON the app
answers (the suite compares them before measuring), with the same round trips as the app with
its caches warm (issue 14): the token checked without the store (the app's token versions and
verified tokens are cached per process), then the data; for the email check, the rate limiter
counted in the process (the app reserves its budgets from the store in blocks), then the lookup.
What the app spends beyond this is the cost of its own layers (validation, the auth decorator,
request ids, security headers, serialisation). Run it as `python -m bench.limit_server --port N` with the app's
settings (DATA_DIR, JWT_SECRET, RATE_LIMIT_CHECKS...): it joins the app's embedded store.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import unquote

import jwt
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from sanic import Request, Sanic
from sanic.response import HTTPResponse, json
from sanic.worker.loader import AppLoader

from chat_api.config import Settings, settings_or_exit
from chat_api.store.client import EMBEDDED_WRITE_CONCERN, client_options
from chat_api.store.embedded import EmbeddedStore

PUBLIC = ("chat_id", "email", "username", "personality", "avatar", "register_at", "sex", "birthday", "phone", "flag")
PROJECTION = dict.fromkeys(PUBLIC, 1)
CHECKS_WINDOW = 300


def iso(value: datetime) -> str:
    # The app's format: pydantic's JSON for an aware UTC datetime.
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    return value.isoformat().replace("+00:00", "Z")


def public(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(doc["_id"]),
        "chat_id": doc["chat_id"],
        "email": doc["email"],
        "username": doc["username"],
        "personality": doc.get("personality"),
        "avatar": doc.get("avatar"),
        "register_at": iso(doc["register_at"]),
        "sex": doc.get("sex", "unknown"),
        "birthday": iso(doc["birthday"]),
        "phone": doc.get("phone"),
        "flag": doc.get("flag", "offline"),
    }


def users(request: Request) -> AsyncCollection[dict[str, Any]]:
    collection: AsyncCollection[dict[str, Any]] = request.app.ctx.users
    return collection


def token_user(request: Request) -> ObjectId | None:
    """The token's user, its signature checked; no store command, as the app's with its caches warm."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    try:
        claims = jwt.decode(token, request.app.ctx.secret, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    return ObjectId(claims["sub"])


def create_limit_app(settings: Settings) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = Sanic("bench_limit")
    used: dict[tuple[int, str], int] = {}

    @app.before_server_start
    async def connect(app: Sanic[Any, Any]) -> None:
        store = None
        uri = settings.mongodb_uri
        if uri is None:
            store = EmbeddedStore(settings.data_dir).start()  # joins the app's store
            uri = store.uri
        app.ctx.store = store
        # The app's driver settings: each operation bounded by STORE_TIMEOUT, journaled writes.
        write_concern = EMBEDDED_WRITE_CONCERN if store is not None else None
        app.ctx.client = AsyncMongoClient(uri, **client_options(settings.store_timeout, write_concern))
        app.ctx.users = app.ctx.client[settings.mongodb_db]["users"]
        app.ctx.secret = settings.jwt_secret

    @app.after_server_stop
    async def disconnect(app: Sanic[Any, Any]) -> None:
        await app.ctx.client.close()
        if app.ctx.store is not None:
            app.ctx.store.stop()

    @app.get("/api/users/<user_id:str>")
    async def get_user(request: Request, user_id: str) -> HTTPResponse:
        if token_user(request) is None:
            return json({"message": "Unauthorized"}, status=401)
        user = await users(request).find_one({"_id": ObjectId(user_id)}, PROJECTION)
        if user is None:
            return json({"message": "User not found"}, status=404)
        return json(public(user))

    @app.get("/api/users")
    async def list_users(request: Request) -> HTTPResponse:
        if token_user(request) is None:
            return json({"message": "Unauthorized"}, status=401)
        limit = int(request.args.get("limit", 50))
        offset = int(request.args.get("offset", 0))
        page, total = await asyncio.gather(
            users(request).find({}, PROJECTION).sort("_id", 1).skip(offset).limit(limit).to_list(),
            users(request).estimated_document_count(),
        )
        return json([public(user) for user in page], headers={"X-Total-Count": str(total)})

    @app.get("/api/users/checkEmail/<email:str>")
    async def check_email(request: Request, email: str) -> HTTPResponse:
        # The address's budget of checks, counted in the process (the app's comes from its reserved block).
        key = (int(time.time()) // CHECKS_WINDOW, request.ip)
        used[key] = used.get(key, 0) + 1
        if used[key] > settings.rate_limits.checks.limit:
            return json({"message": "Too many requests, try again later"}, status=429)
        found = await users(request).find_one({"email": {"$eq": unquote(email).strip().lower()}}, {"_id": 1})
        if found is not None:
            return json({"message": "This email is already taken"}, status=422)
        return json({"message": "This email is available"})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.limit_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    settings = settings_or_exit("bench.limit_server")
    loader = AppLoader(factory=partial(create_limit_app, settings))
    app = loader.load()
    # Served as `python -m chat_api` serves the app: one worker, access log on.
    app.prepare(host="127.0.0.1", port=args.port, workers=1, access_log=True, motd=False)
    Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
