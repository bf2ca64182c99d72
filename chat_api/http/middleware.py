"""Per-request middleware: request ids, and the security headers every response carries."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from sanic import Request
from sanic.response import BaseHTTPResponse

from chat_api.common.errors import NotFound
from chat_api.http.ratelimit import add_rate_limit_headers
from chat_api.http.types import ChatApp
from chat_api.logs import REQUEST_ID

# Called by the response middleware after its own work (the metrics' count, when on: chat_api.metrics.routes).
ResponseHook = Callable[[Request, BaseHTTPResponse], None]
REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy or client may hand us: Heroku's router sends 20-200 characters of base64 and "-".
# Anything else (too long, spaces, quotes, line breaks) could forge log lines: a new id replaces it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9+/=._:-]{1,200}")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
_INLINE_STYLE = re.compile(rb"<style>(.*?)</style>", re.DOTALL)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Responses are per user and change with every write; no browser or proxy should keep them.
    "Cache-Control": "no-store",
}
# JSON answers load nothing, and nothing may frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


# A new id: 16 random hex digits drawn once per process, then its count of requests (16 more). As unique as a
# uuid4 across processes and restarts, without drawing random bytes for every request (docs/performance.md).
_ID_PREFIX = os.urandom(8).hex()
_request_numbers = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_request_numbers):016x}"


def request_id_for(request: Request) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    return incoming if incoming and _SANE_REQUEST_ID.fullmatch(incoming) else new_request_id()


async def begin_request(request: Request) -> None:
    """First of all request middleware: the request id, so every log line of the request carries
    it; then the one page the API refuses.

    sanic-ext serves Swagger UI's OAuth2 redirect page by downloading it from a CDN on each
    request, with a blocking call on the event loop. The API has no OAuth2, so the page is simply
    not there. (One middleware, not two: each costs a dispatch on every request.)
    """
    request.ctx.request_id = request_id_for(request)
    REQUEST_ID.set(request.ctx.request_id)
    config = request.app.config
    if request.path == f"{config.OAS_URL_PREFIX}{config.OAS_UI_SWAGGER_OAUTH2_REDIRECT}":
        raise NotFound()


async def finish_response(request: Request, response: BaseHTTPResponse) -> None:
    """The one response middleware: request id, security headers and the rate-limit fields."""
    request_id = getattr(request.ctx, "request_id", None)
    if request_id is None:  # the request middleware did not run (it raised)
        request_id = request_id_for(request)
        REQUEST_ID.set(request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Content-Security-Policy"] = (
        docs_csp(request.app, response.body or b"") if is_docs_page(request, response) else API_CSP
    )
    add_rate_limit_headers(request, response)


def is_docs_page(request: Request, response: BaseHTTPResponse) -> bool:
    content_type = response.headers.get("content-type", response.content_type or "")
    return request.path.startswith(request.app.config.OAS_URL_PREFIX) and content_type.startswith("text/html")


def docs_csp(app: ChatApp, page: bytes) -> str:
    """Swagger UI's page: scripts and styles from the CDN it names and its own inline ones by
    hash, and requests (the document, "Try it out") to this origin only."""
    parts = urlsplit(app.config.OAS_UI_SWAGGER_CDN_URL)
    cdn = f"{parts.scheme}://{parts.netloc}"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {cdn} {_hashes(_INLINE_SCRIPT, page)}".strip(),
            f"style-src {cdn} {_hashes(_INLINE_STYLE, page)}".strip(),
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ]
    )


def _hashes(inline: re.Pattern[bytes], page: bytes) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode() + "'" for block in inline.findall(page)
    )


def register_middleware(app: ChatApp, hook: ResponseHook | None = None) -> None:
    """`hook`, if any, runs inside the one response middleware: a middleware of its own would cost every request
    one more dispatch, and with no hook the response middleware is exactly `finish_response`."""
    app.on_request(begin_request, priority=1000)
    if hook is None:
        app.register_middleware(finish_response, "response")
        return

    async def finish_and_hook(request: Request, response: BaseHTTPResponse) -> None:
        await finish_response(request, response)
        hook(request, response)

    app.register_middleware(finish_and_hook, "response")
