"""`RequestScope`: the cache use of one request, kept apart until the middleware commits it.

While a scope is current (a context variable), `AliasMetrics` count into it instead of
their process counters; `commit` merges each alias's counts in one step, attributed to
the view. `captured` nests a scope around one call (the debug-toolbar panel) and hands
its counts on afterwards.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

from django_tiercache import counters
from tiercache import NamespaceStats

if TYPE_CHECKING:
    from django_tiercache.metrics import AliasMetrics

__all__ = [
    "UNRESOLVED_VIEW",
    "Event",
    "RequestScope",
    "captured",
    "current_scope",
    "request_scope",
]

#: Name under which requests that resolved to no view are counted.
UNRESOLVED_VIEW = "(unresolved)"

#: A recorded event: (counter, namespace), (errors, namespace, kind) or
#: (op, tier, operation, bucket or "sum").
Event = tuple[str, ...]


class RequestScope:
    """The cache use of one request, per alias, until the middleware commits it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a view may hand cache calls to threads
        # One flat dict: each count is one lookup under the lock (it is on every hit).
        self._counts: dict[tuple[AliasMetrics, Event], int] = {}
        self.cache_seconds = 0.0

    def add(self, metrics: AliasMetrics, event: Event, amount: int = 1) -> None:
        """Count one event of `metrics`' alias."""
        key = (metrics, event)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def _by_alias(self) -> dict[AliasMetrics, Counter[Event]]:
        with self._lock:
            counts = list(self._counts.items())
        by_alias: dict[AliasMetrics, Counter[Event]] = {}
        for (metrics, event), count in counts:
            by_alias.setdefault(metrics, Counter())[event] += count
        return by_alias

    def add_time(self, seconds: float) -> None:
        """Add time spent waiting for Redis."""
        with self._lock:
            self.cache_seconds += seconds

    def totals(self) -> NamespaceStats:
        """Return this request's hits, misses and errors over every alias and namespace."""
        row: Counter[str] = Counter()
        with self._lock:
            for (_, event), count in self._counts.items():
                if event[0] in counters.COUNTERS:
                    row[event[0]] += count
        return counters.stats_of(row)

    def events(self) -> list[tuple[Event, int]]:
        """Return what was counted so far, over every alias."""
        with self._lock:
            return [(event, count) for (_, event), count in self._counts.items()]

    def forward(self, outer: RequestScope | None) -> None:
        """Hand what this scope counted to `outer`, or to the process counters."""
        for metrics, counted in self._by_alias().items():
            if outer is None:
                metrics.merge_request(counted, None)
                continue
            for event, count in counted.items():
                outer.add(metrics, event, count)
        if outer is not None:
            outer.add_time(self.cache_seconds)

    def commit(self, view: str | None) -> list[AliasMetrics]:
        """Merge the counts into each alias's process counters; return those aliases."""
        events = self._by_alias()
        for metrics, counted in events.items():
            metrics.merge_request(counted, view or UNRESOLVED_VIEW)
        return list(events)


current_scope: ContextVar[RequestScope | None] = ContextVar(
    "django_tiercache_request_scope", default=None
)


@contextlib.contextmanager
def request_scope() -> Iterator[RequestScope]:
    """Collect the cache use of the code run inside, for one commit at the end."""
    scope = RequestScope()
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)


@contextlib.contextmanager
def captured() -> Iterator[RequestScope]:
    """Collect the cache use of the code inside apart, then pass it on as if uncaptured."""
    outer = current_scope.get()
    with request_scope() as inner:
        yield inner
    inner.forward(outer)
