"""Metrics of each cache alias: counted per request, merged once, summed over processes.

The backend records into its alias's `AliasMetrics` (one per backbone, so it lives in
tiercache's process registry, keyed like the backbone by alias, location and options).
While the middleware serves a request (it opened a `RequestScope`), the counts go to
that scope; at the end of the request the middleware commits the scope into each
alias's process counters in one step, attributed to the view. Outside a request the
counts go straight to the process counters.

Nothing here talks to Redis on a request's path: a daemon thread per process
(`django_tiercache.pusher`) adds what was counted since the last push into the
`CounterStore` every `METRICS_PUSH_INTERVAL` seconds, through the cache's own Redis
tier (its timeouts and circuit breaker). The site's figures are the store's sums plus
this process's not-yet-pushed deltas.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from returns.result import Failure, Success

from django_tiercache import counters
from django_tiercache.aggregation import CounterStore, Push
from django_tiercache.scope import (
    Event,
    RequestScope,
    captured,
    current_scope,
    request_scope,
)
from tiercache import NamespaceStats

__all__ = [
    "AliasMetrics",
    "Probe",
    "RequestScope",
    "SiteView",
    "captured",
    "metrics_for",
    "metrics_of",
    "request_scope",
    "reset_metrics_registry",
]

logger = logging.getLogger(__name__)

#: What a worker reports besides its counters: (gauges for the per-worker table,
#: running totals of `counters.PROCESS_EVENTS` since the process started).
Probe = Callable[[], tuple[dict[str, object], dict[str, int]]]


@dataclass(frozen=True)
class SiteView:
    """Counters summed over every process, or only this one's when the store is out of reach."""

    counts: Counter[str]
    #: True: the store's sums plus this process's pending deltas. False: this process only.
    site_wide: bool
    #: Why the figures are this process's only, if they are.
    problem: str | None = None
    #: Process id → its last report (with ``age`` in seconds).
    workers: dict[str, dict[str, object]] = field(default_factory=dict)
    #: (minute, counters) of the last hour, oldest first.
    minutes: list[tuple[int, Counter[str]]] = field(default_factory=list)
    #: Unix time of the last reset of the site's figures.
    reset_at: float | None = None


class _Shard(NamedTuple):
    """The counts one thread made outside requests, and how much of them is folded."""

    counts: dict[Event, int]
    seen: dict[Event, int]
    thread: threading.Thread


class AliasMetrics:
    """The process-wide metrics of one cache alias; implements `CacheMetricsProtocol`.

    `get_stats` and friends answer for this process since its last reset; `site_view`
    answers for the whole site.
    """

    def __init__(
        self,
        alias: str,
        *,
        push_interval: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alias = alias
        self.push_interval = push_interval
        self._store: CounterStore | None = None
        self._probe: Probe | None = None
        self._timer = timer
        self._clock = clock
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()  # this process, since its last reset
        self._pending: Counter[str] = Counter()  # not yet added into the store
        self._events_seen: dict[str, int] = {}  # the probe's totals at the last push
        # Counts made outside requests land in a per-thread shard that only its thread
        # writes (no lock on the hot path); readers fold what is new in each shard, and
        # drop the shards of threads that have ended once their counts are folded.
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._push_lock = threading.Lock()
        self._next_push = timer() + push_interval
        self._epoch = ""  # the store's reset epoch our pending deltas belong to
        self._warned_at: float | None = None
        self._pid = os.getpid()
        #: The last error this process counted: "Kind at <unix time>".
        self.last_error: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"<AliasMetrics {self.alias!r}>"

    def connect(self, store: CounterStore, probe: Probe | None = None) -> None:
        """Share the counters through `store`, pushed by this process's pusher thread."""
        from django_tiercache.pusher import pusher  # the pusher knows AliasMetrics

        self._store, self._probe = store, probe
        pusher().watch(self)

    # --- recording (the backend calls these) -----------------------------------------

    def record_hit(self, namespace: str, tier: str = "l1") -> None:
        """Count a hit served by `tier` ("l1" or "l2")."""
        scope = current_scope.get()
        if scope is not None and tier == "l1":
            # Most lookups of a request end here: one append (see `RequestScope.l1_hits`).
            hits = scope.l1_hits.get(self)
            if hits is None:
                hits = scope.l1_hits.setdefault(self, [])
            hits.append(namespace)
            if len(hits) >= RequestScope.FOLD_AT:
                scope.fold()
            return
        self._record((counters.L1_HITS if tier == "l1" else counters.L2_HITS, namespace))

    def record_miss(self, namespace: str) -> None:
        """Count a miss."""
        self._record((counters.MISSES, namespace))

    def record_error(self, namespace: str, kind: str = "CacheError") -> None:
        """Count an error of `kind` (the `CacheError` subclass name)."""
        self.last_error = (kind, self._clock())
        self._record((counters.ERRORS, namespace, kind))

    def record_latency(self, tier: str, operation: str, seconds: float) -> None:
        """Count one call to `tier` in the latency histogram, and in the request's time."""
        scope = current_scope.get()
        if scope is not None:
            scope.add_time(seconds)
        self._record(("op", tier, operation, str(counters.bucket_of(seconds))))
        self._record(("op", tier, operation, counters.LATENCY_SUM), round(seconds * 1e6))

    def _record(self, event: Event, amount: int = 1) -> None:
        scope = current_scope.get()
        if scope is not None:
            scope.add(self, event, amount)
            return
        try:
            shard: dict[Event, int] = self._local.shard
        except AttributeError:
            shard = self._local.shard = {}
            with self._lock:
                self._shards.append(_Shard(shard, {}, threading.current_thread()))
            self._fold()  # a new thread: a good time to drop the shards of ended ones
        shard[event] = shard.get(event, 0) + amount

    def _fold(self) -> None:
        """Move what the per-thread shards counted since the last fold into the totals."""
        news: Counter[Event] = Counter()
        with self._lock:
            live: list[_Shard] = []
            for shard in self._shards:
                ended = not shard.thread.is_alive()  # before reading: no count comes later
                for event, count in shard.counts.copy().items():  # dict.copy is atomic
                    if count != shard.seen.get(event, 0):
                        news[event] += count - shard.seen.get(event, 0)
                        shard.seen[event] = count
                if not ended:
                    live.append(shard)
            self._shards = live
        if news:
            self._add(_fields(news, view=None))

    def merge_request(self, events: Mapping[Event, int], view: str | None) -> None:
        """Add one request's counts, attributed to `view` (if any), in one step."""
        if self._pid != os.getpid():
            self._after_fork()  # before adding: the reset must not drop this request
        self._add(_fields(events, view))

    def _add(self, deltas: Mapping[str, int]) -> None:
        with self._lock:
            tables = (self._totals, self._pending) if self._store is not None else (self._totals,)
            for table in tables:
                for name, count in deltas.items():
                    table[name] = table.get(name, 0) + count

    def _after_fork(self) -> None:
        # Built before a fork (gunicorn --preload): the counts are the parent's, and
        # this process needs its own pusher thread.
        self._pid = os.getpid()
        self.reset()
        self._events_seen.clear()
        if self._store is not None:
            self.connect(self._store, self._probe)

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
        """Zero this process's counters of one namespace, or all (the store is untouched)."""
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
        """Return whether this alias adds its counters into a store."""
        return self._store is not None

    @property
    def push_due(self) -> bool:
        """Return whether the push interval has passed (cheap)."""
        return self._store is not None and self._timer() >= self._next_push

    def push(self) -> bool:
        """Add the pending deltas and this worker's report into the store now.

        The pusher thread calls this; it blocks for as long as the store's Redis call
        takes (bounded by the cache's timeouts, skipped while its breaker is open).
        """
        if self._store is None:
            return False
        if not self._push_lock.acquire(blocking=False):
            return False  # another thread is pushing right now
        try:
            return self._push_locked(self._store)
        finally:
            self._push_lock.release()

    def _push_locked(self, store: CounterStore) -> bool:
        self._fold()
        report, totals = self._probe() if self._probe is not None else ({}, {})
        events = self._event_deltas(totals)
        with self._lock:
            self._pending.update(events)
            deltas, self._pending = self._pending, Counter()
        self._next_push = self._timer() + self.push_interval
        if self.last_error is not None:
            report["last_error"] = {"kind": self.last_error[0], "at": self.last_error[1]}
        match store.add(Push(deltas, _minute_fields(deltas), self._epoch, _process_id(), report)):
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

    def _event_deltas(self, totals: Mapping[str, int]) -> Counter[str]:
        deltas: Counter[str] = Counter()
        for event, total in totals.items():
            seen = self._events_seen.get(event, 0)
            # A total that went down was restarted (a new bus, a registry reset).
            deltas[counters.join("proc", event)] = total - seen if total >= seen else total
            self._events_seen[event] = total
        return +deltas

    def site_view(self) -> SiteView:
        """Return the figures of every process: the store's sums plus our pending deltas."""
        if self._store is None:
            return SiteView(self.snapshot(), False, "this cache has no Redis LOCATION")
        self._fold()
        match self._store.read():
            case Success(snapshot):
                with self._lock:
                    pending = Counter(self._pending)
                if self._epoch and snapshot.epoch != self._epoch:
                    pending.clear()  # reset since our push; the next push drops them
                return SiteView(
                    snapshot.counts + pending,
                    True,
                    None,
                    snapshot.workers,
                    snapshot.minutes,
                    snapshot.reset_at,
                )
            case Failure(error):
                return SiteView(self.snapshot(), False, str(error))
        raise AssertionError("unreachable")  # pragma: no cover

    def reset_site(self) -> str | None:
        """Zero the counters of every process; return a problem, or None if all went well."""
        self.reset()
        if self._store is None:
            return None
        with self._push_lock:
            match self._store.clear():
                case Success(epoch):
                    self._epoch = epoch
                    self.reset()
                    return None
                case Failure(error):
                    return str(error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _warn(self, message: str) -> None:
        now = self._timer()
        if self._warned_at is None or now - self._warned_at >= self.push_interval:
            self._warned_at = now
            logger.warning(message)


def _fields(events: Mapping[Event, int], view: str | None) -> dict[str, int]:
    deltas: dict[str, int] = {}
    looked_up = False  # did the request look anything up (not only time a round trip)?
    for event, count in events.items():
        looked_up = looked_up or event[0] != "op"
        for name in _names_of(event, view):
            deltas[name] = deltas.get(name, 0) + count
    if view is not None and looked_up:
        deltas[_request_field(view)] = 1
    return deltas


@functools.lru_cache(maxsize=4096)
def _names_of(event: Event, view: str | None) -> tuple[str, ...]:
    """Return the counter fields one `event` of a request to `view` adds to.

    Remembered: a request's commit names the same few fields each time, and escaping
    them was most of its cost.
    """
    if event[0] == "op":
        return (counters.join(*event),)
    counter, namespace = event[0], event[1]
    names = [counters.join("ns", namespace, counter)]
    if counter == counters.ERRORS:
        names.append(counters.join("err", namespace, event[2]))
    if view is not None:
        names.append(counters.join("view", view, namespace, counter))
    return tuple(names)


@functools.lru_cache(maxsize=1024)
def _request_field(view: str) -> str:
    return counters.join("req", view)


def _minute_fields(deltas: Mapping[str, int]) -> Counter[str]:
    """Return what the time series keeps of `deltas`: lookups by outcome, L2 latency."""
    minute: Counter[str] = Counter()
    for name, value in deltas.items():
        parts = counters.split(name)
        if parts[0] == "ns" and len(parts) == 3:
            minute[parts[2]] += value
        elif parts[0] == "op" and parts[1] == "l2" and parts[3] != counters.LATENCY_SUM:
            minute[counters.join("lat", parts[3])] += value
    return minute


def _namespace_of(name: str) -> str | None:
    parts = counters.split(name)
    if parts[0] in ("ns", "err"):
        return parts[1]
    if parts[0] == "view" and len(parts) == 4:
        return parts[2]
    return None


def _process_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- which metrics belong to which alias --------------------------------------------------


def metrics_of(cache: object, alias: str | None = None) -> AliasMetrics:
    """Return the metrics `cache` (a tiered backend) records into."""
    metrics = getattr(cache, "metrics", None)
    if not isinstance(metrics, AliasMetrics):
        raise TypeError(f"cache {alias or cache!r} does not record into django_tiercache metrics")
    return metrics


def metrics_for(alias: str) -> AliasMetrics:
    """Return the process-wide metrics of the cache `alias`."""
    from django.core.cache import caches

    return metrics_of(caches[alias], alias)


def reset_metrics_registry() -> None:
    """Forget every alias's metrics with the rest of tiercache's process state (tests)."""
    from tiercache import registry

    registry.reset()
