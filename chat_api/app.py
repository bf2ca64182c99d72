"""The application factory: configuration, blueprints, error handling and store lifecycle."""

from __future__ import annotations

import logging
import multiprocessing
import os

import pymongo
from pydantic import BaseModel
from pymongo.errors import ConnectionFailure
from sanic import Sanic
from sanic_ext import Extend

from chat_api.auth.routes import bp as auth_bp
from chat_api.auth.schemas import LoginRequest, TokenResponse
from chat_api.config import Settings
from chat_api.conversations import routes as conversations_routes
from chat_api.events import routes as events_routes
from chat_api.exceptions import register_error_handler
from chat_api.files import routes as files_routes
from chat_api.friends import routes as friends_routes
from chat_api.groups import routes as groups_routes
from chat_api.health.routes import Health
from chat_api.health.routes import bp as health_bp
from chat_api.indexes import create_indexes
from chat_api.logs import configure_logging
from chat_api.messages import routes as messages_routes
from chat_api.middleware import register_middleware
from chat_api.openapi import OPENAPI_CONFIG, RateLimited, setup_openapi
from chat_api.ratelimit.gate import setup_rate_limits
from chat_api.realtime import routes as realtime_routes
from chat_api.security import PasswordHasher, hashing_executor
from chat_api.shutdown import setup_graceful_shutdown
from chat_api.store import EMBEDDED_WRITE_CONCERN, EmbeddedStore, open_database, store_label
from chat_api.types import ChatApp
from chat_api.users.routes import bp as users_bp
from chat_api.users.schemas import Availability, UserCreate, UserCreated, UserPublic, UserUpdate

log = logging.getLogger("chat_api")
APP_NAME = "chat_api"
REQUEST_MAX_SIZE = 1024 * 1024
# Creating a missing index on a large collection at start-up may take far longer than one
# request's store operation may.
INDEX_BUILD_TIMEOUT = 600.0
SCHEMA_MODELS: list[type[BaseModel]] = [
    UserCreate,
    UserUpdate,
    UserPublic,
    UserCreated,
    Availability,
    LoginRequest,
    TokenResponse,
    Health,
    RateLimited,
]
# The chat packages of issue 3: each routes module has its blueprint `bp` and its SCHEMA_MODELS.
CHAT_ROUTES = (
    friends_routes,
    messages_routes,
    conversations_routes,
    groups_routes,
    files_routes,
    events_routes,
    realtime_routes,
)


def create_app(settings: Settings | None = None) -> ChatApp:
    """Build the app. Without `settings`, they are read from the environment and `.env`."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    # env_prefix=None: Sanic would otherwise also read SANIC_* variables into its config, behind
    # the settings' back (a stray SANIC_PROXIES_COUNT would make forged addresses trusted).
    # configure_logging=False: Sanic's own logging set-up would replace ours with its defaults.
    app: ChatApp = Sanic(APP_NAME, env_prefix=None, configure_logging=False)
    app.ctx.settings = settings
    app.config.REQUEST_MAX_SIZE = REQUEST_MAX_SIZE
    app.config.FALLBACK_ERROR_FORMAT = "json"
    _configure_proxies(app, settings)
    _configure_cors(app, settings)
    app.config.update(OPENAPI_CONFIG)
    Extend(app)
    setup_openapi(app, [*SCHEMA_MODELS, *(m for routes in CHAT_ROUTES for m in routes.SCHEMA_MODELS)])

    app.blueprint(health_bp)
    app.blueprint(auth_bp)
    app.blueprint(users_bp)
    for routes in CHAT_ROUTES:
        app.blueprint(routes.bp)
    register_error_handler(app)
    setup_rate_limits(app, settings)
    register_middleware(app)

    setup_graceful_shutdown(app, settings.shutdown_timeout)
    app.main_process_start(start_shared_store)
    app.main_process_stop(stop_shared_store)
    app.before_server_start(connect_store)
    app.after_server_stop(disconnect_store)
    realtime_routes.setup_realtime(app)
    return app


def _configure_proxies(app: ChatApp, settings: Settings) -> None:
    # Which forwarded client address Sanic believes (request.client_ip); none unless configured.
    app.config.PROXIES_COUNT = settings.proxies_count
    app.config.REAL_IP_HEADER = settings.real_ip_header
    app.config.FORWARDED_SECRET = settings.forwarded_secret


def _configure_cors(app: ChatApp, settings: Settings) -> None:
    # No origin is allowed unless listed: sanic-ext treats an empty list as "*".
    app.config.CORS = bool(settings.cors_origins)
    app.config.CORS_ORIGINS = ",".join(settings.cors_origins)
    # A "*" wildcard does not cover Authorization in browsers, so the headers are named. A page
    # may send its own X-Request-ID, and read the one each answer carries (for a bug report).
    app.config.CORS_ALLOW_HEADERS = "authorization,content-type,x-request-id"
    app.config.CORS_EXPOSE_HEADERS = (
        "location,x-total-count,retry-after,ratelimit,ratelimit-policy,x-request-id,x-has-more,x-newest-seq"
    )
    app.config.CORS_METHODS = "GET,POST,PUT,DELETE,OPTIONS"
    app.config.CORS_MAX_AGE = 600


async def start_shared_store(app: ChatApp) -> None:
    """In the main process, so that several workers share one embedded store."""
    settings: Settings = app.ctx.settings
    if settings.store_kind != "embedded":
        log.info("store: %s", store_label(settings, settings.mongodb_uri or ""))
        return
    try:
        store = EmbeddedStore(settings.data_dir).start()
    except Exception:
        # Sanic reports a failing main-process listener only as an OS error; say what failed.
        log.exception("could not start the embedded store")
        raise
    store.supervise()
    app.ctx.embedded_store = store
    app.shared_ctx.store_port = multiprocessing.Value("i", store.port)
    log.info("store: %s", store_label(settings, store.uri))


async def stop_shared_store(app: ChatApp) -> None:
    store: EmbeddedStore | None = getattr(app.ctx, "embedded_store", None)
    if store is not None:
        store.stop()
        log.info("embedded store stopped")


async def connect_store(app: ChatApp) -> None:
    settings: Settings = app.ctx.settings
    uri = settings.mongodb_uri
    if uri is None:
        shared_port = getattr(app.shared_ctx, "store_port", None)
        if shared_port is not None:
            uri = f"mongodb://127.0.0.1:{shared_port.value}/"
        else:
            # Run without a main process (single-process mode): own the store here.
            store = EmbeddedStore(settings.data_dir).start()
            store.supervise()
            app.ctx.worker_store = store
            uri = store.uri
            log.info("store: %s", store_label(settings, uri))
    write_concern = EMBEDDED_WRITE_CONCERN if settings.store_kind == "embedded" else None
    try:
        database = await open_database(
            uri, settings.mongodb_db, operation_timeout=settings.store_timeout, write_concern=write_concern
        )
        # Idempotent, and the unique indexes are what make registration race-free, so a
        # database that has never seen `scripts.indexes create` still gets them.
        with pymongo.timeout(INDEX_BUILD_TIMEOUT):
            created = await create_indexes(database)
        for index in created:
            log.info("created index %s", index)
    except ConnectionFailure as error:
        log.error("cannot reach the store at %s: %s", store_label(settings, uri), error)
        raise
    app.ctx.database = database
    app.ctx.store_uri = uri  # the real-time hub opens a client of its own on it
    app.ctx.hasher = PasswordHasher(settings.bcrypt_rounds, hashing_executor(os.cpu_count() or 1))


async def disconnect_store(app: ChatApp) -> None:
    database = getattr(app.ctx, "database", None)
    if database is not None:
        await database.client.close()
        app.ctx.hasher.executor.shutdown(wait=False)
    store: EmbeddedStore | None = getattr(app.ctx, "worker_store", None)
    if store is not None:
        store.stop()
