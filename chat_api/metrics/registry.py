"""The process's metrics (prometheus-client) and the hooks the other packages call; no Sanic here.

Off unless METRICS_TOKEN is set. Then each worker builds the metric objects once (`enable`) and `active` holds
them; every hook elsewhere is `if registry.active is not None`, so with metrics off the hot paths pay one
attribute test and prometheus_client is never even imported.

Multiprocess mode: `python -m chat_api` exports PROMETHEUS_MULTIPROC_DIR before its worker processes start
(`prepare_directory`). prometheus_client picks its value class when first imported, which is why it is imported
only inside the functions here, in the workers. Each worker writes its figures to files of its own in that folder
(every FLUSH_INTERVAL), and a scrape, whichever worker serves it, adds every worker's up. The app run in-process
(the tests) has no such folder: the same objects then live on a registry of their own.
"""

from __future__ import annotations

import glob
import math
import os
import re
import tempfile
import time
from bisect import bisect_left
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pymongo import monitoring

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# How often each worker writes what it counted to the shared files (and records its CPU time and memory): a scrape
# shows the other workers' figures at most this late (the serving worker's are written as it answers).
FLUSH_INTERVAL = 1.0
# 0.0.4, the classic text format, which every Prometheus reads (prometheus_client's CONTENT_TYPE_LATEST says 1.0.0
# since 0.23); the names here are all plain, so the body is the same either way.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"  # the route label of a request no route matched: never its path (ids, junk)
OTHER = "other"  # a method outside HTTP's: clients choose it, the label's values must stay few
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Few buckets: every bucket is a series per label set, and an observation walks them.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Count:
    """A counter's increments since the last flush, as a plain number: the hot paths add to it (no lock, no file,
    no label lookup), `flush` hands the sum to prometheus_client."""

    __slots__ = ("count", "counter")

    def __init__(self, counter: Counter):
        self.counter = counter
        self.count = 0

    def flush(self) -> None:
        if self.count:
            self.counter.inc(self.count)
            self.count = 0


class Observations:
    """A histogram's observations since the last flush, as a sum and a count per bucket."""

    __slots__ = ("bounds", "buckets", "histogram", "total")

    def __init__(self, histogram: Histogram, bounds: tuple[float, ...]):
        self.histogram = histogram
        self.bounds = (*bounds, math.inf)  # prometheus_client adds +Inf to the buckets given: the same list
        self.buckets = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.total += seconds
        self.buckets[bisect_left(self.bounds, seconds)] += 1  # the first bucket whose bound is >= seconds: `le`

    def flush(self) -> None:
        if not any(self.buckets):
            return
        # prometheus_client has no call that adds many observations at once: its histogram keeps one value for the
        # sum and one per bucket, which `observe` adds to (tests/test_metrics.py reads them back from a scrape).
        self.histogram._sum.inc(self.total)
        for value, count in zip(self.histogram._buckets, self.buckets, strict=True):
            if count:
                value.inc(count)
        self.buckets = [0] * len(self.bounds)
        self.total = 0.0


class Metrics:
    """Every metric of the process. The hot paths (a request, a store command, an event) add to plain numbers kept
    per label set (`Count`, `Observations`): prometheus_client's own increments take a lock and, in multiprocess
    mode, write to a file each time; deferred, metrics cost a request about 1 % of its CPU instead of 9 %
    (docs/performance.md, "Metrics cost")."""

    def __init__(self, directory: Path | None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
        from prometheus_client.values import ValueClass

        if directory is not None and not getattr(ValueClass, "_multiprocess", False):
            raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_ENV} was set")
        # No `_created` series: a scrape is smaller, and its text the same in both modes.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.directory = directory
        # In multiprocess mode the objects' values go to files, and a scrape reads those; this registry is then
        # unused (a metric must be registered somewhere: not on prometheus_client's global one, which other apps
        # of the same process, the tests', would share).
        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)

        def counter(name: str, text: str, *labels: str) -> Counter:
            return Counter(name, text, labels, registry=self.registry)

        def histogram(name: str, text: str, buckets: tuple[float, ...], *labels: str) -> Histogram:
            return Histogram(name, text, labels, buckets=buckets, registry=self.registry)

        def gauge(name: str, text: str, mode: Literal["livesum", "liveall"]) -> Gauge:
            return Gauge(name, text, multiprocess_mode=mode, registry=self.registry)

        self.requests = counter(
            "chat_api_requests", "HTTP requests answered, by route template", "route", "method", "status"
        )
        self.request_seconds = histogram(
            "chat_api_request_duration_seconds",
            "From the request's first byte to its response's start, by route template",
            REQUEST_BUCKETS,
            "route",
            "method",
        )
        self.store_commands = counter("chat_api_store_commands", "Store commands sent, by name", "command")
        self.store_failures = counter("chat_api_store_command_failures", "Store commands that failed", "command")
        self.store_seconds = histogram(
            "chat_api_store_command_duration_seconds", "Store commands' round trips, by name", STORE_BUCKETS, "command"
        )
        self.websockets = gauge("chat_api_websockets_open", "Open, authenticated WebSockets", "livesum")
        self.published = counter("chat_api_events_published", "Events published here, by type", "type")
        self.delivered = counter("chat_api_events_delivered", "Event frames written to sockets, by type", "type")
        self.lag = histogram(
            "chat_api_event_delivery_lag_seconds", "From an event's creation to its frames' writing", LAG_BUCKETS
        )
        self.refusals = counter("chat_api_rate_limit_refusals", "Requests refused with 429, by budget", "policy")
        # Per process: summing CPU seconds or memory across workers would hide the one that runs hot. "liveall"
        # adds the `pid` label, and forgets a process once it is marked dead.
        self.cpu = gauge("chat_api_process_cpu_seconds", "CPU time (user and system) used by the process", "liveall")
        self.memory = gauge("chat_api_process_resident_memory_bytes", "Resident memory of the process", "liveall")
        self._requests: dict[tuple[str | None, str, int], tuple[Count, Observations]] = {}
        self._commands: dict[str, tuple[Count, Observations]] = {}
        self._published: dict[str, Count] = {}
        self._delivered: dict[str, Count] = {}
        self._lag = Observations(self.lag, LAG_BUCKETS)
        self._tallies: list[Count | Observations] = [self._lag]

    def request(self, route: str | None, method: str, status: int, seconds: float | None) -> None:
        """`route`: the route's path as Sanic keeps it (`api/users/<user_id:str>`), None when no route matched."""
        key = (route, method, status)
        tallies = self._requests.get(key)
        if tallies is None:
            template = UNMATCHED if route is None else f"/{route}"
            shown = method if method in METHODS else OTHER
            tallies = self._requests[key] = self._pair(
                self.requests.labels(template, shown, str(status)),
                self.request_seconds.labels(template, shown),
                REQUEST_BUCKETS,
            )
        tallies[0].count += 1
        if seconds is not None:
            tallies[1].observe(seconds)

    def command(self, name: str, seconds: float, failed: bool) -> None:
        tallies = self._commands.get(name)
        if tallies is None:
            tallies = self._commands[name] = self._pair(
                self.store_commands.labels(name), self.store_seconds.labels(name), STORE_BUCKETS
            )
        tallies[0].count += 1
        tallies[1].observe(seconds)
        if failed:
            self.store_failures.labels(name).inc()

    def event_published(self, kind: str) -> None:
        tally = self._published.get(kind)
        if tally is None:
            tally = self._published[kind] = self._count(self.published.labels(kind))
        tally.count += 1

    def event_delivered(self, kind: str, frames: int, created: datetime | str | None) -> None:
        """`frames` frames of one event written to this process's sockets; its lag observed once (a group's
        thousand frames go out in one pass: a thousand equal observations would only cost)."""
        tally = self._delivered.get(kind)
        if tally is None:
            tally = self._delivered[kind] = self._count(self.delivered.labels(kind))
        tally.count += frames
        if created is not None:
            # A datetime from this process or the store, ISO 8601 text through Redis.
            when = datetime.fromisoformat(created) if isinstance(created, str) else created
            # Another instance's clock may run ahead of this one's: never a negative lag.
            self._lag.observe(max(0.0, time.time() - when.timestamp()))

    def _count(self, counter: Counter) -> Count:
        count = Count(counter)
        self._tallies.append(count)
        return count

    def _pair(self, counter: Counter, histogram: Histogram, bounds: tuple[float, ...]) -> tuple[Count, Observations]:
        observations = Observations(histogram, bounds)
        self._tallies.append(observations)
        return self._count(counter), observations

    def flush(self) -> None:
        """Write what was counted since the last flush to prometheus_client's values (the shared files, in
        multiprocess mode): every FLUSH_INTERVAL in each worker, before a scrape, and as the worker stops."""
        for tally in self._tallies:
            tally.flush()

    def refused(self, policy: str) -> None:
        self.refusals.labels(policy).inc()

    def sample_process(self) -> None:
        """The process's CPU time and resident memory now: on a timer in every worker, and at each scrape."""
        self.cpu.set(time.process_time())
        self.memory.set(resident_bytes())

    def expose(self) -> bytes:
        """The text a scrape answers: every worker's figures in multiprocess mode, else this process's."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        self.flush()
        self.sample_process()
        if self.directory is None:
            return generate_latest(self.registry)
        forget_dead_processes(self.directory)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.directory))  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def stopped(self) -> None:
        """This worker stops: its live gauges (open sockets, CPU, memory) leave the sums; its counters stay."""
        self.flush()
        if self.directory is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), str(self.directory))  # type: ignore[no-untyped-call]


class StoreCommands(monitoring.CommandListener):
    """Every command of the process's store client, counted by name with its round trip (PyMongo command
    monitoring; the client is built with it only when metrics are on)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.metrics.command(event.command_name, event.duration_micros / 1e6, failed=False)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.metrics.command(event.command_name, event.duration_micros / 1e6, failed=True)


# The process's metrics once a worker enabled them; None: off.
active: Metrics | None = None


def enable(directory: Path | None) -> Metrics:
    """Build the process's metrics, once (several apps may run in one process: the tests')."""
    global active
    if active is None:
        active = Metrics(directory)
    return active


def resident_bytes() -> int:
    """The resident set size: /proc on Linux (Heroku's dynos); elsewhere the peak, which is what is known."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def forget_dead_processes(directory: Path) -> None:
    """Mark dead the processes whose live gauges are still in the folder: a worker killed without stopping (Sanic's
    manager tells the others nothing) would otherwise keep its sockets counted as open."""
    from prometheus_client import multiprocess

    pids = {int(m.group(1)) for path in glob.glob(str(directory / "gauge_live*.db")) if (m := _LIVE_FILE.search(path))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's: not ours, but not dead either


def prepare_directory(configured: Path | None) -> Path:
    """In the main process, before the workers start: METRICS_DIR emptied of earlier runs' files (their counters
    would be added to this run's), or a new temporary folder; exported for the workers' prometheus_client."""
    if configured is None:
        directory = Path(tempfile.mkdtemp(prefix="chat_api-metrics-"))
    else:
        directory = configured
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory
