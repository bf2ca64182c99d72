"""`python -m bench.counting_server --port N`: the app exactly as `python -m chat_api` serves it, with every store
command its processes send recorded (scenarios 9 and 10).

Each worker builds the app through `counting_app`, which puts a PyMongo CommandListener on the process's one
client before `create_app`, so every command is seen: requests', the real-time hub's and the upkeep tasks'.
The listener appends one line per command to `<BENCH_COMMAND_LOG>.<pid>` (tab-separated: wall-clock time,
`started` or `duplicate`, command name, collection, documents inserted, background flag), written at once so
the benchmark can read any time window while the server runs. `duplicate` lines are the commands the store
refused with a duplicate key (code 11000), whether the whole command failed or one of its writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from functools import partial
from typing import IO, Any

from pymongo.monitoring import CommandFailedEvent, CommandListener, CommandStartedEvent, CommandSucceededEvent
from sanic import Sanic
from sanic.worker.loader import AppLoader

from chat_api.app import create_app
from chat_api.config import Settings, settings_or_exit
from chat_api.http.types import ChatApp
from chat_api.shutdown import shield_sanic_manager
from chat_api.store import client as store
from chat_api.store.client import BACKGROUND

COMMAND_LOG = "BENCH_COMMAND_LOG"
DUPLICATE_KEY = 11000


class CommandRecorder(CommandListener):
    """One line per command started and per duplicate-key refusal, in this process's own file."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.names: dict[int, tuple[str, str]] = {}  # request id -> (command, collection), for the outcome

    def started(self, event: CommandStartedEvent) -> None:
        target = event.command.get("collection", event.command.get(event.command_name))
        collection = target if isinstance(target, str) else ""
        documents = event.command.get("documents")
        inserted = len(documents) if isinstance(documents, list) else 0
        self.names[event.request_id] = (event.command_name, collection)
        self._line("started", event.command_name, collection, inserted)

    def succeeded(self, event: CommandSucceededEvent) -> None:
        name, collection = self.names.pop(event.request_id, (event.command_name, ""))
        errors = event.reply.get("writeErrors") or []
        duplicates = sum(1 for error in errors if error.get("code") == DUPLICATE_KEY)
        if duplicates:
            self._line("duplicate", name, collection, duplicates)

    def failed(self, event: CommandFailedEvent) -> None:
        name, collection = self.names.pop(event.request_id, (event.command_name, ""))
        failure: Any = event.failure
        if isinstance(failure, dict) and failure.get("code") == DUPLICATE_KEY:
            self._line("duplicate", name, collection, 1)
        else:
            self._line("failed", name, collection, 0)

    def _line(self, kind: str, name: str, collection: str, count: int) -> None:
        self.out.write(f"{time.time():.6f}\t{kind}\t{name}\t{collection}\t{count}\t{int(BACKGROUND.get())}\n")
        self.out.flush()


def counting_app(settings: Settings) -> ChatApp:
    """The app of one worker, its store commands recorded (runs in each worker process)."""
    out = open(f"{os.environ[COMMAND_LOG]}.{os.getpid()}", "a", encoding="utf-8")  # noqa: SIM115 - open for life
    store.CLIENT_OPTIONS["event_listeners"] = [CommandRecorder(out)]
    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    """As `python -m chat_api` (chat_api/__main__.py), through `counting_app`."""
    parser = argparse.ArgumentParser(prog="python -m bench.counting_server", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if COMMAND_LOG not in os.environ:
        parser.error(f"{COMMAND_LOG} must name the file the commands are recorded in")
    settings = dataclasses.replace(settings_or_exit("bench.counting_server"), port=args.port)
    loader = AppLoader(factory=partial(counting_app, settings))
    app = loader.load()
    app.prepare(host=settings.host, port=settings.port, workers=settings.web_concurrency, access_log=True, motd=False)
    shield_sanic_manager()
    Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
