"""Rate limits at the HTTP edge: the client's address, the 429 answer and the RateLimit headers.

Header syntax: draft-ietf-httpapi-ratelimit-headers-11 (structured-field lists), e.g.
`RateLimit-Policy: "login";q=100;w=900` and `RateLimit: "login";r=42;t=517`.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from sanic import Request
from sanic.response import BaseHTTPResponse

from chat_api.config import RateLimits, Settings
from chat_api.http.errors import TooManyRequests
from chat_api.http.types import ChatApp
from chat_api.metrics import registry as metrics
from chat_api.ratelimit.service import Limiter, Policy, Usage

log = logging.getLogger("chat_api.ratelimit")
MAX_SUBJECT = 320  # "email:" and the longest email fit; a forwarded address is still text: keep keys bounded


@dataclass(frozen=True)
class Policies:
    """The app's budgets, named as the headers name them."""

    login: Policy
    login_account: Policy
    register: Policy
    checks: Policy

    @classmethod
    def of(cls, limits: RateLimits) -> Policies:
        return cls(
            login=Policy("login", limits.login),
            login_account=Policy("login-account", limits.login_account),
            register=Policy("register", limits.register),
            checks=Policy("checks", limits.checks),
        )


def client_address(request: Request) -> str:
    """Who is asking, for per-address budgets.

    `client_ip` is the socket's peer unless Sanic's proxy settings (PROXIES_COUNT, REAL_IP_HEADER,
    FORWARDED_SECRET) say which forwarded address to believe, so a client cannot pick its own key
    by sending X-Forwarded-For. An IPv6 address counts by its /64: one subscriber usually holds a
    whole /64 and could otherwise take a fresh address for every request.
    """
    raw = request.client_ip
    try:
        address = ipaddress.ip_address(raw.strip("[]"))
    except ValueError:
        return raw[:MAX_SUBJECT]  # a unix socket, or an obfuscated `Forwarded: for=_x`
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Gate:
    """The budgets one request spends; kept on `request.ctx.rate_limit` for the response headers."""

    def __init__(self, request: Request, *policies: Policy):
        settings: Settings = request.app.ctx.settings
        self.enabled = settings.rate_limits.enabled
        self.limiter: Limiter = request.app.ctx.limiter
        self.policies = policies
        self.usages: list[Usage] = []
        self._private: set[str] = set()
        if self.enabled:
            request.ctx.rate_limit = self

    async def spend(self, policy: Policy, subject: str, *, private: bool = False) -> None:
        """Count one unit on `subject`'s budget; 429 if it was already used up.

        A `private` budget is not shown in `RateLimit` while it lets requests through: the budget
        of an account is shared by whoever names it, and its level would tell one caller about the
        others' failed logins (draft section 8.2).
        """
        if not self.enabled:
            return
        usage = await self.limiter.count(policy, subject[:MAX_SUBJECT])
        self.usages.append(usage)
        if private:
            self._private.add(usage.key)
        if usage.refused:
            log.info("rate limit %s used up (%s units in %s)", policy.name, usage.used - 1, policy.quota)
            if (recorder := metrics.active) is not None:
                recorder.refused(policy.name)
            raise TooManyRequests(usage.retry_after_ms())

    async def failed(self, cost: int) -> None:
        """The request failed and costs `cost` units in all, on every budget it spent."""
        if self.enabled:
            self.usages = await self.limiter.charge(self.usages, cost - 1)

    def headers(self) -> dict[str, str]:
        policies = ", ".join(f"{_quoted(p.name)};q={p.quota.limit};w={p.quota.window}" for p in self.policies)
        shown = [u for u in self.usages if u.refused or u.key not in self._private]
        headers = {"RateLimit-Policy": policies}
        if shown:
            headers["RateLimit"] = ", ".join(
                f"{_quoted(u.policy.name)};r={u.remaining};t={u.reset_seconds()}" for u in shown
            )
        return headers


def add_rate_limit_headers(request: Request, response: BaseHTTPResponse) -> None:
    """`RateLimit` and `RateLimit-Policy` for a request that reached the limiter (called by the
    app's response middleware, chat_api/middleware.py)."""
    gate: Gate | None = getattr(request.ctx, "rate_limit", None)
    if gate is not None:
        for name, value in gate.headers().items():
            response.headers[name] = value


def setup_rate_limits(app: ChatApp, settings: Settings) -> None:
    app.ctx.rate_policies = Policies.of(settings.rate_limits)
    # The app's own: what it reserved of each budget is nobody else's (tests run several apps in one process).
    app.ctx.limiter = Limiter()
