"""`python -m chat_api`: serve the app through the factory, with workers from WEB_CONCURRENCY."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from chat_api.app import create_app
from chat_api.config import settings_or_exit
from chat_api.metrics.registry import prepare_directory
from chat_api.shutdown import shield_sanic_manager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat_api", description="Run the chat API.")
    parser.add_argument("--host", help="address to listen on (default: HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT, else 7001)")
    parser.add_argument("--workers", type=int, help="worker processes (default: WEB_CONCURRENCY, else 1)")
    parser.add_argument("--dev", action="store_true", help="reload on code changes, debug pages")
    args = parser.parse_args(argv)
    settings = settings_or_exit("chat_api")
    settings = dataclasses.replace(
        settings,
        host=args.host or settings.host,
        port=args.port or settings.port,
        web_concurrency=args.workers or settings.web_concurrency,
    )
    temporary = None
    if settings.metrics_token is not None:
        # Before any worker starts (and imports prometheus_client): every worker writes its figures there, and
        # the scrape adds them up (chat_api.metrics). Without METRICS_DIR, a folder of this run's own.
        directory = prepare_directory(settings.metrics_dir)
        temporary = directory if settings.metrics_dir is None else None
        settings = dataclasses.replace(settings, metrics_dir=directory)
    # Each worker process builds its own app from the same settings through the factory.
    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        dev=args.dev,
        access_log=True,
        motd=False,
    )
    shield_sanic_manager()
    try:
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
