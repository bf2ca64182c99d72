"""Password hashing and JWT handling: pure functions, no HTTP and no store."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import bcrypt
import jwt

ALGORITHM = "HS256"
MAX_PASSWORD_BYTES = 72  # bcrypt's limit; bcrypt 5 raises beyond it instead of truncating
REQUIRED_CLAIMS = ["sub", "iat", "exp", "ver"]


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired or lacks a claim."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    version: int
    issued_at: int
    expires_at: int


def hash_password(password: str, rounds: int) -> str:
    # gensalt() draws a fresh random salt for every password; the hash carries it.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode())
    except ValueError:  # not a bcrypt hash
        return False


# Niceness of the hashing threads, added to the process's own. A login waits for its hash either way; a read that
# waits behind a hash for a core is what the nice value prevents: CFS then gives the event loop (and an embedded
# store) about nine tenths of a contended core, while hashes still use every idle cycle.
HASHING_NICENESS = 10


def _lower_thread_priority() -> None:
    try:
        # On Linux, PRIO_PROCESS with a thread id sets that thread alone. Raising one's own niceness needs no
        # privilege; where it is not allowed, the threads keep the process's priority.
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, current + HASHING_NICENESS))
    except (AttributeError, OSError):
        pass


def hashing_executor(workers: int) -> ThreadPoolExecutor:
    """Threads for bcrypt, one per core, at a lower scheduling priority than the event loop."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bcrypt", initializer=_lower_thread_priority)


@dataclass(frozen=True)
class PasswordHasher:
    """Runs bcrypt in an executor: it is slow on purpose, and off the event loop a burst of
    logins cannot stall other requests (bcrypt releases the GIL while it works)."""

    rounds: int
    executor: Executor

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(hash_password, password, self.rounds))

    async def verify(self, password: str, password_hash: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(verify_password, password, password_hash))


def create_token(user_id: str, version: int, secret: str, ttl_seconds: int, now: float | None = None) -> str:
    issued_at = int(time.time() if now is None else now)
    claims = {"sub": user_id, "iat": issued_at, "exp": issued_at + ttl_seconds, "ver": version}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


# Tokens whose signature and claims were checked, by (secret, token): a caller sends the same token with every
# request, and checking it again costs more CPU than the rest of a simple read's own work (docs/performance.md,
# "CPU per answer"). Only the expiry can change, and it is compared again on each use. At most this many are
# kept; the oldest goes first.
VERIFIED_TOKENS = 10_000
_verified: dict[tuple[str, str], TokenClaims] = {}


def decode_token(token: str, secret: str, now: float | None = None) -> TokenClaims:
    """The claims of a token signed with `secret` (HS256), which must carry sub, iat, exp and ver; else InvalidToken."""
    key = (secret, token)
    claims = _verified.get(key)
    if claims is not None:
        if claims.expires_at > (time.time() if now is None else now):
            return claims
        del _verified[key]
        raise InvalidToken("Signature has expired")
    claims = _check_token(token, secret)
    if len(_verified) >= VERIFIED_TOKENS:
        del _verified[next(iter(_verified))]
    _verified[key] = claims
    return claims


def _check_token(token: str, secret: str) -> TokenClaims:
    try:
        # algorithms is a fixed list: the token's own `alg` header (say "none") is never trusted.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS})
    except (jwt.PyJWTError, ValueError) as error:  # ValueError: a header that is not UTF-8
        raise InvalidToken(str(error)) from None
    version = claims["ver"]
    if not isinstance(claims["sub"], str) or not isinstance(version, int) or isinstance(version, bool):
        raise InvalidToken("malformed claims")
    return TokenClaims(claims["sub"], version, int(claims["iat"]), int(claims["exp"]))


def token_from_header(value: str) -> str:
    """Accept `Bearer <jwt>` (what login hands out) and a bare `<jwt>`."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if rest and scheme.lower() == "bearer":
        return rest.strip()
    return value
