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

    #: L1 hits kept as a list before `fold` counts them (bounds a long request's memory).
    FOLD_AT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a view may hand cache calls to threads
        #: The namespace of each L1 hit, per alias, as it happened. L1 hits are most of
        #: a request's lookups, so each is one `list.append` (atomic: no lock) and they
        #: are counted in one C-level pass when the request reads or commits its counts
        #: (`AliasMetrics.record_hit` appends).
        self.l1_hits: dict[AliasMetrics, list[str]] = {}
        # Everything else follows a Redis round trip or an error: a lock is nothing there.
        self._counts: Counter[tuple[AliasMetrics, Event]] = Counter()
        self.cache_seconds = 0.0

    def add(self, metrics: AliasMetrics, event: Event, amount: int = 1) -> None:
        """Count `amount` events of `metrics`' alias."""
        with self._lock:
            self._counts[metrics, event] += amount

    def fold(self) -> dict[tuple[AliasMetrics, Event], int]:
        """Count the L1 hits listed so far; return a copy of every count."""
        with self._lock:
            for metrics, hits in list(self.l1_hits.items()):
                # Slice then delete, never swap the list: a thread appending meanwhile
                # appends to this same list, after what is deleted.
                done = len(hits)
                for namespace, count in Counter(hits[:done]).items():
                    self._counts[metrics, (counters.L1_HITS, namespace)] += count
                del hits[:done]
            return dict(self._counts)

    def _by_alias(self) -> dict[AliasMetrics, Counter[Event]]:
        by_alias: dict[AliasMetrics, Counter[Event]] = {}
        for (metrics, event), count in self.fold().items():
            by_alias.setdefault(metrics, Counter())[event] += count
        return by_alias

    def add_time(self, seconds: float) -> None:
        """Add time spent waiting for Redis."""
        with self._lock:
            self.cache_seconds += seconds

    def totals(self) -> NamespaceStats:
        """Return this request's hits, misses and errors over every alias and namespace."""
        row: Counter[str] = Counter()
        for (_, event), count in self.fold().items():
            if event[0] in counters.COUNTERS:
                row[event[0]] += count
        return counters.stats_of(row)

    def events(self) -> list[tuple[Event, int]]:
        """Return what was counted so far, over every alias."""
        return [(event, count) for (_, event), count in self.fold().items()]

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
