"""The application factory: settings, Sanic's configuration, the route modules, error handling, and the store."""

from __future__ import annotations

import logging
from types import ModuleType

from sanic import Sanic
from sanic_ext import Extend
from sanic_ext.extensions.http.extension import HTTPExtension
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from chat_api.accounts import routes as accounts_routes
from chat_api.accounts.sweeper import setup_sweeper
from chat_api.auth import routes as auth_routes
from chat_api.blocks import routes as blocks_routes
from chat_api.config import Settings
from chat_api.conversations import routes as conversations_routes
from chat_api.export import routes as export_routes
from chat_api.files import routes as files_routes
from chat_api.friends import routes as friends_routes
from chat_api.groups import routes as groups_routes
from chat_api.health import routes as health_routes
from chat_api.http.errors import PathOnlyErrorHandler, register_error_handler
from chat_api.http.middleware import register_middleware
from chat_api.http.openapi import OPENAPI_CONFIG, setup_openapi
from chat_api.http.ratelimit import setup_rate_limits
from chat_api.http.types import ChatApp
from chat_api.logs import configure_logging
from chat_api.messages import routes as messages_routes
from chat_api.metrics import routes as metrics_routes
from chat_api.realtime import routes as realtime_routes
from chat_api.search import routes as search_routes
from chat_api.shutdown import setup_graceful_shutdown
from chat_api.store.lifecycle import setup_store
from chat_api.users import routes as users_routes

log = logging.getLogger("chat_api")
APP_NAME = "chat_api"
REQUEST_MAX_SIZE = 1024 * 1024
# The one list of route modules, each with its blueprint `bp`.
ROUTE_MODULES: tuple[ModuleType, ...] = (
    health_routes,
    auth_routes,
    users_routes,
    accounts_routes,
    friends_routes,
    blocks_routes,
    messages_routes,
    search_routes,
    conversations_routes,
    groups_routes,
    files_routes,
    export_routes,
    realtime_routes,
    metrics_routes,
)


def create_app(settings: Settings | None = None) -> ChatApp:
    """Build the app. Without `settings`, they are read from the environment and `.env`."""
    settings = settings or Settings.from_env()
    configure_logging(settings)
    # env_prefix=None: Sanic would otherwise also read SANIC_* variables into its config, behind
    # the settings' back (a stray SANIC_PROXIES_COUNT would make forged addresses trusted).
    # configure_logging=False: Sanic's own logging set-up would replace ours with its defaults.
    # error_handler: Sanic's own would log the whole URL, `?token=` included, when a WebSocket handler raises.
    app: ChatApp = Sanic(APP_NAME, env_prefix=None, configure_logging=False, error_handler=PathOnlyErrorHandler())
    app.ctx.settings = settings
    app.config.REQUEST_MAX_SIZE = REQUEST_MAX_SIZE
    app.config.FALLBACK_ERROR_FORMAT = "json"
    _configure_proxies(app, settings)
    _configure_cors(app, settings)
    app.config.update(OPENAPI_CONFIG)
    # Only the extensions the app uses: the OpenAPI document and CORS (with automatic OPTIONS). The others
    # cost every request a signal dispatch (dependency injection, which no route uses) for nothing
    # (docs/performance.md, "CPU per answer").
    Extend(app, built_in_extensions=False, extensions=[OpenAPIExtension, HTTPExtension])
    setup_openapi(app)
    for routes in ROUTE_MODULES:
        app.blueprint(routes.bp)
    register_error_handler(app)
    setup_rate_limits(app, settings)
    # Before the store's listeners: with metrics on, the store's client is built with their command listener.
    register_middleware(app, metrics_routes.setup_metrics(app, settings))
    setup_graceful_shutdown(app, settings.shutdown_timeout)
    # The store's listeners before the real-time hub's: the hub reads the event log as it starts.
    setup_store(app)
    realtime_routes.setup_realtime(app)
    # After the store's listeners too: the first sweep of unfinished account deletions reads the store.
    setup_sweeper(app)
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
