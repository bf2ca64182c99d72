"""Liveness with a store check, for platforms and load balancers."""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel
from pymongo.errors import PyMongoError
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json

from chat_api.http.endpoint import endpoint

bp = Blueprint("health")
log = logging.getLogger("chat_api.health")
PING_TIMEOUT = 2.0


class Health(BaseModel):
    status: str
    store: str


@bp.get("/healthz")
@endpoint(tag="health", responses={200: (Health, "Up, and the store answers")}, errors=(503,), auth=False)
async def health(request: Request) -> HTTPResponse:
    """200 when the store answers a ping, else 503."""
    store = request.app.ctx.settings.store_kind
    try:
        await asyncio.wait_for(request.app.ctx.database.command("ping"), PING_TIMEOUT)
    except (PyMongoError, TimeoutError) as error:
        log.warning("health check: store did not answer ping: %s", error)
        return json({"message": "The data store is not answering", "status": "unavailable", "store": store}, status=503)
    return json({"status": "ok", "store": store})
