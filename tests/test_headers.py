"""Security headers on every response, the docs page's CSP, CORS from allowed and refused origins, request ids."""

from __future__ import annotations

import base64
import hashlib
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import FRONTEND_ORIGIN, OtherApp
from tests.factories import auth_headers, create_user, user_payload
from tests.helpers import Api

API_CSP = "default-src 'none'; frame-ancestors 'none'"
UUID4_HEX = re.compile(r"[0-9a-f]{32}")


RESPONSES: dict[str, Callable[[Api], httpx.Response]] = {
    "200 health": lambda api: api.get("/healthz"),
    "200 user": lambda api: api.get("/api/getUser", headers=create_user(api).headers),
    "201 register": lambda api: api.post("/api/register", json=user_payload(api)),
    "204 logout": lambda api: api.get("/api/logout", headers=create_user(api).headers),
    "204 preflight": lambda api: api.preflight("/api/getUser", FRONTEND_ORIGIN),
    "200 openapi document": lambda api: api.get("/docs/openapi.json"),
    "400 malformed json": lambda api: api.post(
        "/api/login", content=b"{", headers={"content-type": "application/json"}
    ),
    "401 no token": lambda api: api.get("/api/getUser"),
    "401 bad token": lambda api: api.get("/api/getUser", headers=auth_headers("Bearer x.y.z")),
    "404 unknown route": lambda api: api.get("/api/nothing-here"),
    "404 unknown user": lambda api: api.get("/api/users/0123456789abcdef01234567", headers=create_user(api).headers),
    "405 wrong method": lambda api: api.delete("/api/login"),
    "413 body too large": lambda api: api.post(
        "/api/register", content=b"x" * (1024 * 1024 + 1), headers={"content-type": "application/json"}
    ),
    "422 wrong password": lambda api: api.post(
        "/api/login", json={"chat_id": create_user(api).chat_id, "password": "no"}
    ),
}


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_every_response_carries_the_security_headers_and_a_request_id(api: Api, kind: str) -> None:
    response = RESPONSES[kind](api)
    assert str(response.status_code) == kind.split()[0], response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == API_CSP
    assert UUID4_HEX.fullmatch(response.headers["x-request-id"])


def _raw_exchange(api: Api, raw: bytes) -> dict[str, str]:
    """Send bytes that no HTTP client would, and return the answer's status and headers."""

    def exchange() -> bytes:
        with socket.create_connection((api.client.host, api.client.port), timeout=10) as sock:
            sock.sendall(raw)
            data = b""
            while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
                data += chunk
            return data

    loop = api.client._loop  # the server runs on this loop: it must run while we wait
    data: bytes = loop.run_until_complete(loop.run_in_executor(None, exchange))
    status_line, *lines = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    headers[":status"] = status_line.split()[1]
    return headers


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", "400"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", "413"),
        (
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400",
        ),
    ],
    ids=["not http", "huge header", "chunked and content-length"],
)
def test_malformed_http_is_refused_with_the_same_headers(api: Api, raw: bytes, status: str) -> None:
    headers = _raw_exchange(api, raw)
    assert headers[":status"] == status
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"] == API_CSP
    assert UUID4_HEX.fullmatch(headers["x-request-id"])


def test_405_names_the_allowed_methods_even_on_paths_with_parameters(api: Api) -> None:
    plain = api.delete("/api/login")
    with_parameter = api.post("/api/users/checkChatId/12")
    assert plain.status == with_parameter.status == 405
    assert set(plain.headers["allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
    assert "GET" in with_parameter.headers["allow"].replace(" ", "").split(",")


def _directives(csp: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in csp.split(";") if part.strip())}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _sha256(blocks: list[str]) -> set[str]:
    return {"'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'" for block in blocks}


def test_docs_page_csp_allows_exactly_its_cdn_and_its_own_inline_blocks(api: Api) -> None:
    response = api.get("/docs")
    assert response.status == 200
    page = response.text
    csp = _directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    scripts = re.findall(r'<script src="([^"]+)"', page)
    styles = re.findall(r'<link rel="stylesheet" type="text/css" href="([^"]+)"', page)
    inline_scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    inline_styles = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    assert scripts
    assert styles
    assert inline_scripts
    assert inline_styles
    cdn = {_origin(url) for url in scripts + styles}
    assert cdn == {"https://cdnjs.cloudflare.com"}
    # The CDN and the page's own inline blocks by hash; no 'unsafe-inline', no 'unsafe-eval'.
    assert set(csp["script-src"]) == cdn | _sha256(inline_scripts)
    assert set(csp["style-src"]) == cdn | _sha256(inline_styles)


def test_swagger_ui_sends_the_document_to_no_validator(api: Api) -> None:
    assert api.get("/docs/swagger-config").json["validatorUrl"] is None


def test_swagger_oauth2_redirect_page_is_not_served(api: Api) -> None:
    # sanic-ext would fetch it from a CDN on each request, blocking the event loop meanwhile.
    response = api.get("/docs/oauth2-redirect.html")
    assert response.status == 404


def header_names(response: httpx.Response, name: str) -> set[str]:
    """The lower-case names a comma-separated CORS header lists."""
    return set(response.headers[name].lower().split(","))


def test_cors_simple_request_from_refused_origin_gets_no_allow_origin(api: Api) -> None:
    me = create_user(api)
    response = api.get("/api/getUser", headers={**me.headers, "Origin": "http://evil.example"})
    # The server still answers (CORS is the browser's check); it just does not let the page read it.
    assert response.status == 200
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("asked", ["authorization", None])
def test_cors_preflight_from_refused_origin_allows_nothing(api: Api, asked: str | None) -> None:
    response = api.preflight("/api/getUser", "http://evil.example", asked)
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-headers" not in response.headers


@pytest.mark.parametrize(
    ("path", "exposed"), [("/api/getUser", {"x-request-id"}), ("/api/users", {"location", "x-total-count"})]
)
def test_cors_simple_request_from_allowed_origin_is_readable_with_its_headers(
    api: Api, path: str, exposed: set[str]
) -> None:
    me = create_user(api)
    response = api.get(path, headers={**me.headers, "Origin": FRONTEND_ORIGIN})
    assert response.status == 200
    assert response.headers["access-control-allow-origin"] == FRONTEND_ORIGIN
    assert "origin" in response.headers["vary"].lower()
    assert exposed <= header_names(response, "access-control-expose-headers")


@pytest.mark.parametrize("asked", ["authorization,content-type", "authorization,x-request-id"])
def test_cors_preflight_from_allowed_origin_lets_the_page_send_authorization_and_its_own_headers(
    api: Api, asked: str
) -> None:
    response = api.preflight("/api/getUser", FRONTEND_ORIGIN, asked)
    assert response.status == 204
    assert response.headers["access-control-allow-origin"] == FRONTEND_ORIGIN
    assert set(asked.split(",")) <= header_names(response, "access-control-allow-headers")


def test_no_cors_by_default(other_app: OtherApp) -> None:
    with other_app(cors_origins=()) as client:
        _, response = client.get("/healthz", headers={"Origin": FRONTEND_ORIGIN})
    assert response.status == 200
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "incoming",
    ["abc-123", "6b9d2c1e-1f0a-4c3e-9a57-0d1c2b3a4f5e", "Zm9vYmFy+/=", "a" * 200],
)
def test_a_sane_incoming_request_id_is_echoed(api: Api, incoming: str) -> None:
    assert api.get("/healthz", headers={"X-Request-ID": incoming}).headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["", "a" * 201, "has space", 'quote"', "semi;colon", "<script>", "caf\u00e9", "tab\tin"],
)
def test_an_insane_incoming_request_id_is_replaced_by_a_new_one(api: Api, incoming: str) -> None:
    response = api.get("/healthz", headers={"X-Request-ID": incoming.encode()})
    assert UUID4_HEX.fullmatch(response.headers["x-request-id"])


def test_each_request_gets_its_own_id(api: Api) -> None:
    ids = {api.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_error_responses_echo_the_incoming_request_id(api: Api) -> None:
    response = api.get("/api/getUser", headers={"X-Request-ID": "trace-401"})
    assert response.status == 401
    assert response.headers["x-request-id"] == "trace-401"
