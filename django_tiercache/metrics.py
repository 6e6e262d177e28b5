"""Metrics of each cache alias: counted per request, merged once, summed over processes.

The backend records into `metrics_for(alias)`. While the middleware serves a request
(it opened a `RequestScope`), the counts go to that scope; at the end of the request
the middleware commits the scope into each alias's process counters in one step,
attributed to the view. Outside a request the counts go straight to the process
counters. At most every `METRICS_PUSH_INTERVAL` seconds (checked lazily at the end of
requests and whenever the stats are read) a process adds the counters it gathered
since its last push into Redis (`aggregation`), so the site's figures are the Redis
sums plus this process's not-yet-pushed deltas.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from returns.result import Failure, Success

from django_tiercache import counters
from django_tiercache.aggregation import RedisCounterSink
from django_tiercache.conf import app_settings
from django_tiercache.options import cache_options
from tiercache import NamespaceStats

__all__ = [
    "AliasMetrics",
    "RequestScope",
    "SiteCounts",
    "all_metrics",
    "metrics_for",
    "metrics_of",
    "request_scope",
    "reset_metrics_registry",
]

logger = logging.getLogger(__name__)

#: Name under which requests that resolved to no view are counted.
UNRESOLVED_VIEW = "(unresolved)"

# A recorded event: (counter, namespace) or (errors, namespace, kind).
_Event = tuple[str, ...]


class RequestScope:
    """The cache use of one request, per alias, until the middleware commits it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a view may hand cache calls to threads
        self._events: dict[AliasMetrics, Counter[_Event]] = {}
        self.cache_seconds = 0.0

    def add(self, metrics: AliasMetrics, event: _Event) -> None:
        """Count one event of `metrics`' alias."""
        with self._lock:
            events = self._events.get(metrics)
            if events is None:
                events = self._events[metrics] = Counter()
            events[event] += 1

    def add_time(self, seconds: float) -> None:
        """Add time spent waiting for the cache."""
        with self._lock:
            self.cache_seconds += seconds

    def totals(self) -> NamespaceStats:
        """Return this request's hits, misses and errors over every alias and namespace."""
        row: Counter[str] = Counter()
        with self._lock:
            for events in self._events.values():
                for event, count in events.items():
                    row[event[0]] += count
        return counters.stats_of(row)

    def commit(self, view: str | None) -> list[AliasMetrics]:
        """Merge the counts into each alias's process counters; return those aliases."""
        with self._lock:
            events = {metrics: Counter(counted) for metrics, counted in self._events.items()}
        for metrics, counted in events.items():
            metrics.merge_request(counted, view or UNRESOLVED_VIEW)
        return list(events)


_current_scope: ContextVar[RequestScope | None] = ContextVar(
    "django_tiercache_request_scope", default=None
)


@contextlib.contextmanager
def request_scope() -> Iterator[RequestScope]:
    """Collect the cache use of the code run inside, for one commit at the end."""
    scope = RequestScope()
    token = _current_scope.set(scope)
    try:
        yield scope
    finally:
        _current_scope.reset(token)


@dataclass(frozen=True)
class SiteCounts:
    """Counters summed over every process, or only this one's when Redis is out of reach."""

    counts: Counter[str]
    #: True: Redis sums plus this process's pending deltas. False: this process only.
    site_wide: bool
    #: Why the figures are this process's only, if they are.
    problem: str | None = None
    #: Process id → seconds since its last push (site-wide figures only).
    processes: dict[str, float] = field(default_factory=dict)


class AliasMetrics:
    """The process-wide metrics of one cache alias; implements `CacheMetricsProtocol`.

    `get_stats` and friends answer for this process since its last reset; `site_counts`
    answers for the whole site.
    """

    def __init__(
        self,
        alias: str,
        sink: RedisCounterSink | None,
        *,
        push_interval: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.alias = alias
        self.push_interval = push_interval
        self._sink = sink
        self._timer = timer
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()  # this process, since its last reset
        self._pending: Counter[str] = Counter()  # not yet added into Redis
        # Counts made outside requests land in a per-thread shard that only its thread
        # writes (no lock on the hot path); readers fold what is new in each shard.
        self._local = threading.local()
        self._shards: list[tuple[dict[_Event, int], dict[_Event, int]]] = []
        self._push_lock = threading.Lock()
        self._next_push = timer() + push_interval
        self._epoch = ""  # the Redis reset epoch our pending deltas belong to
        self._warned_at: float | None = None

    def __repr__(self) -> str:
        return f"<AliasMetrics {self.alias!r}>"

    # --- recording (the backend calls these) -----------------------------------------

    def record_hit(self, namespace: str, tier: str = "l1") -> None:
        """Count a hit served by `tier` ("l1" or "l2")."""
        self._record((counters.L1_HITS if tier == "l1" else counters.L2_HITS, namespace))

    def record_miss(self, namespace: str) -> None:
        """Count a miss."""
        self._record((counters.MISSES, namespace))

    def record_error(self, namespace: str, kind: str = "CacheError") -> None:
        """Count an error of `kind` (the `CacheError` subclass name)."""
        self._record((counters.ERRORS, namespace, kind))

    def record_time(self, seconds: float) -> None:
        """Add time spent in one cache call to the current request's Server-Timing."""
        scope = _current_scope.get()
        if scope is not None:
            scope.add_time(seconds)

    def _record(self, event: _Event) -> None:
        scope = _current_scope.get()
        if scope is not None:
            scope.add(self, event)
            return
        try:
            shard: dict[_Event, int] = self._local.shard
        except AttributeError:
            shard = self._local.shard = {}
            with self._lock:
                self._shards.append((shard, {}))
        shard[event] = shard.get(event, 0) + 1

    def _fold(self) -> None:
        """Move what the per-thread shards counted since the last fold into the totals."""
        news: Counter[_Event] = Counter()
        with self._lock:
            for shard, seen in self._shards:
                for event, count in shard.copy().items():  # dict.copy is atomic
                    if count != seen.get(event, 0):
                        news[event] += count - seen.get(event, 0)
                        seen[event] = count
        if news:
            self._add(_fields(news, view=None))

    def merge_request(self, events: Mapping[_Event, int], view: str) -> None:
        """Add one request's counts, attributed to `view`, in one step."""
        self._add(_fields(events, view))

    def _add(self, deltas: Counter[str]) -> None:
        with self._lock:
            self._totals.update(deltas)
            if self._sink is not None:
                self._pending.update(deltas)

    # --- this process (CacheMetricsProtocol) ------------------------------------------

    def get_stats(self, namespace: str) -> NamespaceStats:
        """Return this process's stats of one namespace (all zero if never seen)."""
        return self.get_all_stats().get(namespace) or counters.stats_of({})

    def get_all_stats(self) -> dict[str, NamespaceStats]:
        """Return this process's stats of every namespace."""
        return counters.namespace_stats(self.snapshot())

    def get_error_kinds(self) -> dict[str, dict[str, int]]:
        """Return this process's error counts by namespace and kind."""
        return counters.error_kinds(self.snapshot())

    def snapshot(self) -> Counter[str]:
        """Return a copy of this process's counters."""
        self._fold()
        with self._lock:
            return Counter(self._totals)

    def reset(self, namespace: str | None = None) -> None:
        """Zero this process's counters of one namespace, or all (Redis is untouched)."""
        self._fold()
        with self._lock:
            if namespace is None:
                self._totals.clear()
                self._pending.clear()
                return
            for table in (self._totals, self._pending):
                for name in [name for name in table if _namespace_of(name) == namespace]:
                    del table[name]

    # --- the whole site ----------------------------------------------------------------

    @property
    def shares_counts(self) -> bool:
        """Return whether this alias adds its counters into Redis."""
        return self._sink is not None

    @property
    def push_due(self) -> bool:
        """Return whether the push interval has passed (cheap)."""
        return self._sink is not None and self._timer() >= self._next_push

    def push_if_due(self) -> None:
        """Push the pending deltas if the interval has passed (cheap when not)."""
        if self.push_due:
            self.push()

    def push(self) -> bool:
        """Add the pending deltas into Redis now; keep them if Redis is out of reach."""
        if self._sink is None:
            return False
        if not self._push_lock.acquire(blocking=False):
            return False  # another thread is pushing right now
        try:
            return self._push_locked(self._sink)
        finally:
            self._push_lock.release()

    def _push_locked(self, sink: RedisCounterSink) -> bool:
        self._fold()
        with self._lock:
            deltas, self._pending = self._pending, Counter()
        self._next_push = self._timer() + self.push_interval
        if not deltas:
            return True  # an idle process need not report
        match sink.add(deltas, epoch=self._epoch, process=_process_id()):
            case Success(epoch):
                if self._epoch and epoch != self._epoch:
                    # Reset elsewhere since our last push: these deltas are (mostly) older.
                    self.reset()
                self._epoch = epoch
                self._warned_at = None
                return True
            case Failure(error):
                with self._lock:
                    self._pending.update(deltas)
                self._warn(f"cannot add metrics of cache {self.alias!r} into Redis: {error}")
        return False

    def site_counts(self) -> SiteCounts:
        """Return the counters of every process: pushes ours first, then reads Redis."""
        if self._sink is None:
            return SiteCounts(self.snapshot(), False, "this cache has no Redis LOCATION")
        with self._push_lock:
            self._push_locked(self._sink)
            match self._sink.read():
                case Success(snapshot):
                    with self._lock:
                        pending = Counter(self._pending)
                    if snapshot.epoch != self._epoch:
                        pending.clear()  # reset since our push; the next push drops them
                    return SiteCounts(snapshot.counts + pending, True, None, snapshot.processes)
                case Failure(error):
                    return SiteCounts(self.snapshot(), False, str(error))
        raise AssertionError("unreachable")  # pragma: no cover

    def reset_site(self) -> str | None:
        """Zero the counters of every process; return a problem, or None if all went well."""
        self.reset()
        if self._sink is None:
            return None
        with self._push_lock:
            match self._sink.clear():
                case Success(epoch):
                    self._epoch = epoch
                    self.reset()
                    return None
                case Failure(error):
                    return str(error)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Release the Redis connections."""
        if self._sink is not None:
            self._sink.close()

    def _warn(self, message: str) -> None:
        now = self._timer()
        if self._warned_at is None or now - self._warned_at >= self.push_interval:
            self._warned_at = now
            logger.warning(message)


def _fields(events: Mapping[_Event, int], view: str | None) -> Counter[str]:
    deltas: Counter[str] = Counter()
    for event, count in events.items():
        counter, namespace = event[0], event[1]
        deltas[counters.join("ns", namespace, counter)] += count
        if counter == counters.ERRORS:
            deltas[counters.join("err", namespace, event[2])] += count
        if view is not None:
            deltas[counters.join("view", view, namespace, counter)] += count
    if view is not None:
        deltas[counters.join("req", view)] += 1
    return deltas


def _namespace_of(name: str) -> str | None:
    parts = counters.split(name)
    if parts[0] in ("ns", "err"):
        return parts[1]
    if parts[0] == "view" and len(parts) == 4:
        return parts[2]
    return None


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- one AliasMetrics per alias, per process ---------------------------------------------

_registry_lock = threading.Lock()
_registry: dict[str, AliasMetrics] = {}


def metrics_for(alias: str) -> AliasMetrics:
    """Return the process-wide metrics of the cache `alias`, creating them once."""
    with _registry_lock:
        metrics = _registry.get(alias)
        if metrics is None:
            metrics = _registry[alias] = _build(alias)
        return metrics


def metrics_of(cache: object, alias: str) -> AliasMetrics:
    """Return the metrics `cache` records into (ours, unless it was given others)."""
    metrics = getattr(cache, "metrics", None)
    return metrics if isinstance(metrics, AliasMetrics) else metrics_for(alias)


def all_metrics() -> list[AliasMetrics]:
    """Return the metrics created so far in this process."""
    with _registry_lock:
        return list(_registry.values())


def reset_metrics_registry() -> None:
    """Forget every alias's metrics, closing their connections (tests, settings changes)."""
    with _registry_lock:
        dropped = list(_registry.values())
        _registry.clear()
    for metrics in dropped:
        metrics.close()


def _build(alias: str) -> AliasMetrics:
    try:
        options = cache_options(alias)
    except ImproperlyConfigured:  # the system checks report it; count in this process only
        return AliasMetrics(alias, None)
    core = options.core
    sink = None
    if core.url is not None:
        sink = RedisCounterSink(
            core.url,
            f"{app_settings().METRICS_KEY_PREFIX}{core.key_prefix}{alias}",
            connect_timeout=core.connect_timeout,
            socket_timeout=core.socket_timeout,
        )
    return AliasMetrics(alias, sink, push_interval=options.METRICS_PUSH_INTERVAL)


@receiver(setting_changed)
def _forget_on_settings_change(*, setting: str, **kwargs: object) -> None:
    if setting in ("CACHES", "TIERCACHE"):
        reset_metrics_registry()


def _forget_after_fork() -> None:
    # The parent's counters and sockets are the parent's: the child starts afresh.
    global _registry_lock  # noqa: PLW0603 - a lock held at fork time is never released
    _registry_lock = threading.Lock()
    _registry.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _push_at_exit() -> None:
    for metrics in all_metrics():
        with contextlib.suppress(Exception):  # the process is going away regardless
            metrics.push()
