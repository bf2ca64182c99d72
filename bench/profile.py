"""`python -m bench.profile`: the app's own CPU per answer on the two simplest reads, and where it goes (py-spy).

Seeds a store of 1,000 users in a temporary folder, serves the app as `python -m chat_api` (one worker), and for
each route (`--route` picks one) runs wrk (`-t1 -c16`) for `--seconds`: CPU time of the app's processes (from
/proc, as `make bench` counts it) per answer, and with `--profile DIR`, a py-spy profile of the worker meanwhile
(`DIR/<server>-<route>.txt`: the functions holding the most samples, own and with callees). `--limit` measures
the limit (bench/limit_server.py) the same way after the app. This is how the cuts in docs/performance.md ("CPU per
answer") were found. Settings may be added as `--env NAME=VALUE` (METRICS_TOKEN, TOKEN_CACHE_SECONDS...).
"""

from __future__ import annotations

import argparse
import collections
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import BASE_USERS, BCRYPT_ROUNDS, check_email_load, get_user_load, sample_users
from bench.servers import PIDS, Site, cpu_seconds
from bench.wrk import Load, run_wrk

PY_SPY = Path(sys.executable).parent / "py-spy"
TOP = 40


def worker_pid(main_pid: int) -> int:
    """The Sanic worker serving the requests: the busiest descendant of `python -m chat_api`."""
    pending, found = [main_pid], []
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = [int(c) for c in (task / "children").read_text().split()]
            found += children
            pending += children
    return max(found or [main_pid], key=lambda pid: cpu_seconds(pid))


def summarise(collapsed: Path, out: Path) -> None:
    """py-spy's collapsed stacks as two tables: samples in each function itself, and in it or what it called."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "own:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(TOP)]
    lines += ["", "with callees:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(TOP)]
    out.write_text("\n".join(lines) + "\n")


def measure(name: str, load: Load, seconds: float, folder: Path, profile: Path | None) -> None:
    server, _ = PIDS[load.base_url]
    run_wrk(load, 2, 16, folder)  # warm-up
    spy = None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        raw = profile / f"{name}.collapsed"
        spy = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(worker_pid(server)), "--format", "raw", "--rate", "250",
             "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1)
    before = cpu_seconds(server)
    run = run_wrk(load, seconds, 16, folder)
    used = cpu_seconds(server) - before
    if spy is not None and profile is not None:
        spy.send_signal(2)
        spy.wait(timeout=30)
        summarise(profile / f"{name}.collapsed", profile / f"{name}.txt")
    print(
        f"{name}: {run.per_second:.0f} req/s, app CPU {used * 1000 / max(run.requests, 1):.3f} ms/answer"
        f"{' (profiled: py-spy costs some)' if profile else ''}, {run.bad} unexpected answers",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--profile", type=Path, help="folder for py-spy's profiles (none: CPU figures only)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the app")
    parser.add_argument(
        "--limit", action="store_true", help="the same for the limit (bench/limit_server.py) after the app"
    )
    parser.add_argument(
        "--route", choices=("get_user", "check_email"), action="append", help="only these (default: both)"
    )
    args = parser.parse_args(argv)
    if args.profile is not None and not PY_SPY.exists() and shutil.which("py-spy") is None:
        parser.error("py-spy is not installed: `make bench` installs requirements-bench.txt")
    extra = dict(item.split("=", 1) for item in args.env)
    import random

    with tempfile.TemporaryDirectory(prefix="chat-profile-") as tmp:
        root = Path(tmp)
        with Site.open(root / "site", secrets.token_urlsafe(48), BCRYPT_ROUNDS) as site:
            site.seed(BASE_USERS)
            with ExitStack() as stack:
                app = stack.enter_context(site.serve("app", "chat_api", "/healthz", **extra))
                users = sample_users(site, app, random.Random(4))  # noqa: S311 - not a secret
                bases = [("app", app)]
                if args.limit:
                    limit = site.serve("limit", "bench.limit_server", "/api/users/checkEmail/x@example.com", **extra)
                    bases.append(("limit", stack.enter_context(limit)))
                for name, base in bases:
                    for route, load in (("get_user", get_user_load), ("check_email", check_email_load)):
                        if args.route is None or route in args.route:
                            measure(f"{name}-{route}", load(base, users), args.seconds, root, args.profile)
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
