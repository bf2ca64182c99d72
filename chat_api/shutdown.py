"""Graceful shutdown on SIGTERM (what Heroku sends) or SIGINT: requests in flight finish, new ones are refused."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from chat_api.http.types import ChatApp

log = logging.getLogger("chat_api")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# How long a shutdown signal waits for Sanic's manager to see every worker start (it gives them 30 s itself).
ACK_WAIT_LIMIT = 30.0


def setup_graceful_shutdown(app: ChatApp, timeout: float) -> None:
    # How long a stopping worker lets requests in flight finish before it closes their connections.
    app.config.GRACEFUL_SHUTDOWN_TIMEOUT = timeout
    app.main_process_start(restore_sigterm)  # the first main-process listener: see shield_sanic_manager
    app.main_process_ready(refuse_connections_on_signal)
    app.after_server_start(stop_worker_once_on_signal)


def shield_sanic_manager() -> None:
    """Call before `Sanic.serve`: SIGTERM to every process must not kill Sanic's state manager.

    Heroku sends SIGTERM to every process of the dyno. Sanic's first child, a
    multiprocessing manager that holds the workers' states, ignores SIGINT but not SIGTERM;
    when it dies, the main process fails on its next look at the workers and stops the
    embedded store under requests still in flight. An ignored signal is inherited by a
    child, so SIGTERM is ignored while Sanic starts that manager, and restored by the first
    main-process listener; Sanic then installs its own handler.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


async def restore_sigterm(app: ChatApp) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


async def refuse_connections_on_signal(app: ChatApp) -> None:
    """Main process: on the first SIGTERM or SIGINT, close its copy of the listening sockets.

    The main process binds the sockets and hands them to the workers, and keeps them open
    until everything has exited, so the kernel would go on accepting connections that no
    worker serves any more. With its copy closed, the sockets go away as soon as the
    stopping workers close theirs, and new connections are refused at once. Sanic's own
    handler (stop the workers gracefully; a second signal kills them) then runs as before.
    """
    listening = [sock for info in app.state.server_info if isinstance(sock := info.settings.get("sock"), socket.socket)]
    for signum in SIGNALS:
        sanic_handler = signal.getsignal(signum)

        def close_then_stop(signum: int, frame: FrameType | None, sanic_handler: object = sanic_handler) -> None:
            for sock in listening:
                sock.close()
            if callable(sanic_handler):
                # In a thread of its own: see run_sanic_handler.
                thread = threading.Thread(
                    target=run_sanic_handler, args=(sanic_handler, signum), name="shutdown-signal", daemon=True
                )
                thread.start()

        signal.signal(signum, close_then_stop)


def run_sanic_handler(sanic_handler: Callable[[int, FrameType | None], object], signum: int) -> None:
    """Sanic's shutdown handler, away from the main thread, and once the manager has seen every worker start.

    The handler talks to Sanic's state manager through multiprocessing proxies, whose connection is per thread.
    Run in the main thread, a signal lands in the middle of one of the main thread's own proxy calls (the
    manager's loop makes them every 0.1 s), and the handler's calls then take that call's answer: the
    main process waits forever (seen: a SIGTERM within 0.1 s of the workers starting hung it until SIGKILL).
    While the manager still waits for the workers' start-up acknowledgements, it would also take the
    terminated workers for workers that failed to start: the handler waits for that wait to end (bounded).
    """
    main = threading.main_thread().ident
    deadline = time.monotonic() + ACK_WAIT_LIMIT
    while main is not None and time.monotonic() < deadline and _running(main, "wait_for_ack"):
        time.sleep(0.05)
    sanic_handler(signum, None)


def _running(thread_id: int, function: str) -> bool:
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


async def stop_worker_once_on_signal(app: ChatApp) -> None:
    """Worker process: the first SIGTERM or SIGINT stops it gracefully; later ones are ignored.

    Heroku sends SIGTERM to every process of the dyno, so a worker gets it twice: from the
    platform and from the main process passing it on. Sanic's handler would stop the event
    loop again in the middle of the graceful shutdown (dropping the requests in flight),
    and once it has removed its handler a further SIGTERM would kill the worker outright.
    The main process still ends a worker that does not finish in time (on a second signal
    to it, and the platform after its own grace period, 30 s on Heroku).
    """
    if not os.environ.get("SANIC_WORKER_PROCESS"):
        return  # an app served in-process (tests): the signals belong to the host
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        for each in SIGNALS:
            # remove_signal_handler restores the default action (termination); ignore instead
            loop.remove_signal_handler(each)
            signal.signal(each, signal.SIG_IGN)
        log.info("%s received: finishing the requests in flight", signal.Signals(signum).name)
        app.stop(terminate=False)

    for signum in SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
