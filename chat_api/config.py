"""The one typed settings object, read from the environment and `.env`."""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

DEFAULT_JWT_TTL = 7 * 24 * 3600
DEFAULT_STORE_TIMEOUT = 2.5  # per store operation: a store that is down or hung gives 503 within about 3 s
DEFAULT_PRESENCE_GRACE = 5.0  # a reload or a flaky network reconnects well within this
DEFAULT_WS_SEND_BUFFER = 1024 * 1024  # bytes a socket may have waiting (past the kernel's) before it is dropped
DEFAULT_EVENT_POLL = 0.015  # how long an idle delivery loop sleeps between looks at the event log
DEFAULT_EVENT_GAP_WAIT = 10.0  # how long a reader waits for a missing event number to fill before passing it
DEFAULT_STORE_POOL_SIZE = 20  # connections per process to each store server (PyMongo's maxPoolSize)
EMBEDDED_PARTITIONS = 1  # event-log partitions when EVENT_PARTITIONS is unset: one process group, one store
MONGODB_PARTITIONS = 8
REDIS_SCHEMES = ("redis://", "rediss://")
DEFAULT_SHUTDOWN_TIMEOUT = 25.0  # Heroku sends SIGKILL 30 s after SIGTERM; this leaves time to stop the store
DEFAULT_RECALL_WINDOW = 120  # seconds a sender may recall a message (docs/decisions.md)
DEFAULT_EDIT_WINDOW = 24 * 3600  # seconds a sender may edit a text message
# How long a process trusts the token version it last read for a caller: the bound on a revocation whose `logout`
# event never reached it (docs/reliability.md, "Token revocation"). 0 reads it for every request.
DEFAULT_TOKEN_CACHE_SECONDS = 5.0
MIN_SECRET_BYTES = 32  # PyJWT warns below this for HS256, and so do we
# A scraper's bearer token: long enough that guessing it over HTTP is hopeless (`secrets.token_urlsafe(32)` gives 43).
MIN_METRICS_TOKEN = 16
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
_SWITCH = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}
MAX_WINDOW = 86400
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Quota:
    """At most `limit` units in each window of `window` seconds."""

    limit: int
    window: int

    def __str__(self) -> str:
        return f"{self.limit}/{self.window}s"


@dataclass(frozen=True)
class RateLimits:
    """Budgets of the public routes (docs/operations.md, "Rate limits"); every attempt costs 1 unit."""

    enabled: bool = True
    login: Quota = Quota(100, 900)  # per client address
    login_account: Quota = Quota(300, 900)  # per account, from every address together
    login_failure_cost: int = 10  # units a failed login costs in all, on both budgets
    register: Quota = Quota(20, 3600)  # per client address, POST /api/users included
    checks: Quota = Quota(60, 300)  # per client address, both availability checks together


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    mongodb_uri: str | None = None
    mongodb_db: str = "chat"
    jwt_secret: str = ""
    jwt_ttl: int = DEFAULT_JWT_TTL
    bcrypt_rounds: int = 12
    cors_origins: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 7001
    web_concurrency: int = 1
    data_dir: Path = field(default_factory=lambda: Path("data"))
    log_level: str = "INFO"
    log_format: str = "text"
    rate_limits: RateLimits = field(default_factory=RateLimits)
    # Sanic's proxy settings: whom to believe about the client's address (docs/operations.md, "Rate limits").
    proxies_count: int = 0
    real_ip_header: str | None = None
    forwarded_secret: str | None = None
    store_timeout: float = DEFAULT_STORE_TIMEOUT
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    # Real time (docs/api.md, "Real time").
    presence_grace: float = DEFAULT_PRESENCE_GRACE
    ws_send_buffer: int = DEFAULT_WS_SEND_BUFFER
    event_poll_interval: float = DEFAULT_EVENT_POLL
    # Fan-out across instances (docs/operations.md, "Configuration"): None runs without Redis.
    redis_url: str | None = None
    event_partitions: int | None = None  # None: EMBEDDED_PARTITIONS or MONGODB_PARTITIONS, see `partitions`
    event_gap_wait: float = DEFAULT_EVENT_GAP_WAIT
    store_pool_size: int = DEFAULT_STORE_POOL_SIZE
    # How long after sending its sender may recall a message, and edit a text one (seconds).
    recall_window: int = DEFAULT_RECALL_WINDOW
    edit_window: int = DEFAULT_EDIT_WINDOW
    token_cache_seconds: float = DEFAULT_TOKEN_CACHE_SECONDS
    # `GET /metrics` (docs/operations.md, "Metrics"): off while None; the folder the worker processes share their
    # figures through (None: a fresh temporary one per start, made by `python -m chat_api`).
    metrics_token: str | None = None
    metrics_dir: Path | None = None

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def store_kind(self) -> str:
        """`mongodb` when a URI is configured, else `embedded` (the app starts nx-27017 itself)."""
        return "mongodb" if self.mongodb_uri else "embedded"

    @property
    def partitions(self) -> int:
        """Partitions of the event log: EVENT_PARTITIONS, else 1 on the embedded store and 8 on a MongoDB URI."""
        if self.event_partitions is not None:
            return self.event_partitions
        return MONGODB_PARTITIONS if self.store_kind == "mongodb" else EMBEDDED_PARTITIONS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
        """Read settings from `environ` (default: the process environment) over `env_file`.

        Real environment variables win over `.env`, as python-dotenv does by default, so a
        platform's config vars (Heroku) override a committed or local file.
        """
        values: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = values.get(name)
            return value.strip() if value is not None and value.strip() != "" else None

        env = (get("ENV") or "development").lower()
        data_dir = Path(get("DATA_DIR") or "data")
        if env == "production" and get("MONGODB_URI") is None:
            raise ConfigError(
                "MONGODB_URI is not set. In production the data must live in MongoDB: the embedded "
                "store keeps it on local disk, which platforms such as Heroku wipe on every restart."
            )
        settings = cls(
            env=env,
            mongodb_uri=get("MONGODB_URI"),
            mongodb_db=get("MONGODB_DB") or "chat",
            jwt_secret=_jwt_secret(get("JWT_SECRET"), env, data_dir),
            jwt_ttl=_duration("JWT_TTL", get("JWT_TTL"), DEFAULT_JWT_TTL),
            bcrypt_rounds=_int("BCRYPT_ROUNDS", get("BCRYPT_ROUNDS"), 12, low=4, high=31),
            cors_origins=_origins(get("CORS_ORIGINS")),
            host=get("HOST") or "127.0.0.1",
            port=_int("PORT", get("PORT"), 7001, low=1, high=65535),
            web_concurrency=_int("WEB_CONCURRENCY", get("WEB_CONCURRENCY"), 1, low=1, high=64),
            data_dir=data_dir,
            log_level=_choice("LOG_LEVEL", (get("LOG_LEVEL") or "INFO").upper(), LOG_LEVELS),
            log_format=_choice("LOG_FORMAT", (get("LOG_FORMAT") or "text").lower(), LOG_FORMATS),
            rate_limits=_rate_limits(get),
            proxies_count=_int("PROXIES_COUNT", get("PROXIES_COUNT"), 0, low=0, high=10),
            real_ip_header=_header_name("REAL_IP_HEADER", get("REAL_IP_HEADER")),
            forwarded_secret=get("FORWARDED_SECRET"),
            store_timeout=_seconds("STORE_TIMEOUT", get("STORE_TIMEOUT"), DEFAULT_STORE_TIMEOUT, low=0.1, high=60),
            shutdown_timeout=_seconds(
                "SHUTDOWN_TIMEOUT", get("SHUTDOWN_TIMEOUT"), DEFAULT_SHUTDOWN_TIMEOUT, low=0, high=3600
            ),
            presence_grace=_seconds("PRESENCE_GRACE", get("PRESENCE_GRACE"), DEFAULT_PRESENCE_GRACE, low=0, high=300),
            ws_send_buffer=_int(
                "WS_SEND_BUFFER", get("WS_SEND_BUFFER"), DEFAULT_WS_SEND_BUFFER, low=1024, high=1024**3
            ),
            event_poll_interval=_seconds(
                "EVENT_POLL_INTERVAL", get("EVENT_POLL_INTERVAL"), DEFAULT_EVENT_POLL, low=0.001, high=5
            ),
            redis_url=_redis_url(get("REDIS_URL")),
            event_partitions=_optional_int("EVENT_PARTITIONS", get("EVENT_PARTITIONS"), low=1, high=1024),
            event_gap_wait=_seconds(
                "EVENT_GAP_WAIT", get("EVENT_GAP_WAIT"), DEFAULT_EVENT_GAP_WAIT, low=0.05, high=120
            ),
            store_pool_size=_int("STORE_POOL_SIZE", get("STORE_POOL_SIZE"), DEFAULT_STORE_POOL_SIZE, low=1, high=500),
            recall_window=_duration("RECALL_WINDOW", get("RECALL_WINDOW"), DEFAULT_RECALL_WINDOW),
            edit_window=_duration("EDIT_WINDOW", get("EDIT_WINDOW"), DEFAULT_EDIT_WINDOW),
            token_cache_seconds=_seconds(
                "TOKEN_CACHE_SECONDS", get("TOKEN_CACHE_SECONDS"), DEFAULT_TOKEN_CACHE_SECONDS, low=0, high=60
            ),
            metrics_token=_metrics_token(get("METRICS_TOKEN")),
            metrics_dir=_optional_path(get("METRICS_DIR")),
        )
        return settings


def settings_or_exit(program: str) -> Settings:
    """For command-line entry points: the settings, or a one-line reason and exit code 2."""
    try:
        return Settings.from_env()
    except ConfigError as error:
        print(f"{program}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _int(name: str, raw: str | None, default: int, *, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _optional_int(name: str, raw: str | None, *, low: int, high: int) -> int | None:
    return None if raw is None else _int(name, raw, 0, low=low, high=high)


def _redis_url(raw: str | None) -> str | None:
    """A Redis URL as Heroku's key-value add-on sets it; an error shows only its scheme and host (it may hold a
    password)."""
    if raw is None:
        return None
    if not raw.startswith(REDIS_SCHEMES) or describe_redis_url(raw).endswith("://"):
        raise ConfigError(
            f"REDIS_URL must be a Redis URL such as redis://:password@host:6379 or rediss://…, got "
            f"{describe_redis_url(raw)!r}"
        )
    return raw


def describe_redis_url(url: str) -> str:
    """The scheme, host and port of a Redis URL, without user name or password, for logs and errors."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "redis (unparsable URL)"
    return f"{scheme}://{rest.split('/', 1)[0].split('?', 1)[0].rsplit('@', 1)[-1]}"


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _seconds(name: str, raw: str | None, default: float, *, low: float, high: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, such as 2.5, got {raw!r}") from None
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"{name} must be between {low:g} and {high:g} seconds, got {raw!r}")
    return value


def _duration(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    match = _DURATION.match(raw)
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{name} must be a positive duration like 3600, 90m, 12h or 7d; got {raw!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _quota(name: str, raw: str | None, default: Quota) -> Quota:
    """`<limit>/<window>`, e.g. `100/15m`: at most 100 units in 15 minutes."""
    if raw is None:
        return default
    limit, slash, window = raw.partition("/")
    problem = f"{name} must look like 100/15m (a limit, then a window of 1s to 1d); got {raw!r}"
    if not slash:
        raise ConfigError(problem)
    try:
        quota = Quota(_int(name, limit.strip(), 0, low=1, high=1_000_000_000), _duration(name, window, 0))
    except ConfigError:
        raise ConfigError(problem) from None
    if quota.window > MAX_WINDOW:
        raise ConfigError(problem)
    return quota


def _switch(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    try:
        return _SWITCH[raw.lower()]
    except KeyError:
        raise ConfigError(f"{name} must be on or off, got {raw!r}") from None


def _rate_limits(get: Callable[[str], str | None]) -> RateLimits:
    default = RateLimits()
    return RateLimits(
        enabled=_switch("RATE_LIMITS", get("RATE_LIMITS"), default.enabled),
        login=_quota("RATE_LIMIT_LOGIN", get("RATE_LIMIT_LOGIN"), default.login),
        login_account=_quota("RATE_LIMIT_LOGIN_ACCOUNT", get("RATE_LIMIT_LOGIN_ACCOUNT"), default.login_account),
        login_failure_cost=_int(
            "RATE_LIMIT_LOGIN_FAILURE_COST",
            get("RATE_LIMIT_LOGIN_FAILURE_COST"),
            default.login_failure_cost,
            low=1,
            high=1000,
        ),
        register=_quota("RATE_LIMIT_REGISTER", get("RATE_LIMIT_REGISTER"), default.register),
        checks=_quota("RATE_LIMIT_CHECKS", get("RATE_LIMIT_CHECKS"), default.checks),
    )


def _header_name(name: str, raw: str | None) -> str | None:
    if raw is not None and not _HEADER_NAME.fullmatch(raw):
        raise ConfigError(f"{name} must be a header name such as X-Real-IP, got {raw!r}")
    return raw


def _origins(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    return tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())


def _optional_path(raw: str | None) -> Path | None:
    return None if raw is None else Path(raw)


def _metrics_token(raw: str | None) -> str | None:
    if raw is not None and len(raw) < MIN_METRICS_TOKEN:
        raise ConfigError(
            f"METRICS_TOKEN must be at least {MIN_METRICS_TOKEN} characters (or unset, which turns /metrics off); "
            'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    return raw


def _jwt_secret(raw: str | None, env: str, data_dir: Path) -> str:
    if raw is not None:
        if len(raw.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes; "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        return raw
    if env == "production":
        raise ConfigError(
            "JWT_SECRET is not set. In production every worker and every instance must sign "
            "tokens with the same secret: set JWT_SECRET (at least 32 bytes), e.g. "
            'heroku config:set JWT_SECRET=$(python -c "import secrets; print(secrets.token_urlsafe(48))")'
        )
    return _local_dev_secret(data_dir / ".jwt_secret")


def _local_dev_secret(path: Path) -> str:
    """A development secret generated once and kept on disk.

    A secret made per process would make each worker reject the others' tokens and log
    everyone out on every restart. The file is created atomically (write a temporary
    file, then hard-link it into place, which fails if it already exists), so workers
    that start together all end up reading the same secret.
    """
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    tmp.write_text(secrets.token_urlsafe(48) + "\n")
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()
