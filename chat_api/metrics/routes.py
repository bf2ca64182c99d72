"""`GET /metrics`: every worker's figures in Prometheus's text format, for a scraper holding METRICS_TOKEN.

Without METRICS_TOKEN the route answers as an unknown one (404) and nothing of this package runs on any request:
`setup_metrics` adds its middleware, listeners and store command listener only when the token is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from time import perf_counter

from sanic import Blueprint, Request
from sanic.exceptions import NotFound
from sanic.response import BaseHTTPResponse, HTTPResponse, raw
from sanic_ext.extensions.openapi import openapi

from chat_api.config import Settings
from chat_api.http.errors import Unauthorized
from chat_api.http.middleware import ResponseHook
from chat_api.http.types import ChatApp
from chat_api.metrics.registry import CONTENT_TYPE, FLUSH_INTERVAL, Metrics, StoreCommands, enable

bp = Blueprint("metrics")
BEARER = "Bearer "


@bp.get("/metrics")
@openapi.exclude()  # the operator's scraper's, not the API's clients': docs/operations.md, "Metrics", describes it
async def metrics(request: Request) -> HTTPResponse:
    """The figures of every worker of this instance; 401 without the metrics token, 404 when metrics are off."""
    token = request.app.ctx.settings.metrics_token
    if token is None:
        # Exactly what an unknown path answers: an instance without metrics does not say it could have them.
        raise NotFound(f"Requested URL {request.path} not found")
    if not authorized(request.headers.get("Authorization"), token):
        raise Unauthorized()
    recorder: Metrics = request.app.ctx.metrics
    return raw(recorder.expose(), content_type=CONTENT_TYPE)


def authorized(header: str | None, token: str) -> bool:
    """`Bearer <token>`, compared in constant time: how long a refusal takes tells nothing of the token."""
    given = header[len(BEARER) :] if header is not None and header.startswith(BEARER) else ""
    return hmac.compare_digest(given.encode(), token.encode())


def count_response(request: Request, response: BaseHTTPResponse) -> None:
    """Every answer, errors included: its route's template (never the path: ids), method and status, and its time
    since Sanic read the request's first byte (`perft0`, which Sanic keeps for its access log). Called by the app's
    one response middleware (chat_api.http.middleware), last."""
    route = request.route
    started = getattr(request.stream, "perft0", None)
    request.app.ctx.metrics.request(
        None if route is None else route.path,
        request.method,
        response.status,
        None if started is None else perf_counter() - started,
    )


def setup_metrics(app: ChatApp, settings: Settings) -> ResponseHook | None:
    """Register before the store's listeners (its client takes the command listener); returns the response
    middleware's hook. Nothing at all when metrics are off."""
    app.ctx.command_listeners = []
    if settings.metrics_token is None:
        return None
    app.before_server_start(start_metrics)
    app.after_server_stop(stop_metrics)
    return count_response


async def start_metrics(app: ChatApp) -> None:
    settings: Settings = app.ctx.settings
    recorder = enable(settings.metrics_dir)
    app.ctx.metrics = recorder
    app.ctx.command_listeners.append(StoreCommands(recorder))
    recorder.sample_process()
    app.ctx.metrics_sampler = asyncio.create_task(_sample(recorder), name="metrics-sampler")


async def stop_metrics(app: ChatApp) -> None:
    sampler: asyncio.Task[None] | None = getattr(app.ctx, "metrics_sampler", None)
    if sampler is not None:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    recorder: Metrics | None = getattr(app.ctx, "metrics", None)  # None: the worker stopped before it started
    if recorder is not None:
        recorder.stopped()


async def _sample(recorder: Metrics) -> None:
    """What the worker counted, and its CPU time and memory, to the shared files every FLUSH_INTERVAL: a timer,
    not every request."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        recorder.flush()
        recorder.sample_process()
