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
from contextvars import ContextVar, Token
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
    """The cache use of one request, per alias, until the middleware commits it.

    Counts are plain dicts: a request has a few kinds of events, and a `Counter`'s
    Python-level bookkeeping costs more than adding them.
    """

    #: L1 hits kept as a list before `fold` counts them (bounds a long request's memory).
    FOLD_AT = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a view may hand cache calls to threads
        #: The namespace of each L1 hit, per alias, as it happened. L1 hits are most of
        #: a request's lookups, so each is one `list.append` (atomic: no lock), and they
        #: are counted when the request reads or commits its counts
        #: (`AliasMetrics.record_hit` appends).
        self.l1_hits: dict[AliasMetrics, list[str]] = {}
        # Everything else follows a Redis round trip or an error: a lock is nothing there.
        self._counts: dict[AliasMetrics, dict[Event, int]] = {}
        self.cache_seconds = 0.0
        self._token: Token[RequestScope | None] | None = None

    # A class, not a generator context manager: every request enters one.
    def __enter__(self) -> RequestScope:
        self._token = current_scope.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._token is not None, "a scope is entered once"
        current_scope.reset(self._token)

    def add(self, metrics: AliasMetrics, event: Event, amount: int = 1) -> None:
        """Count `amount` events of `metrics`' alias."""
        with self._lock:
            counts = self._counts.setdefault(metrics, {})
            counts[event] = counts.get(event, 0) + amount

    def fold(self) -> dict[AliasMetrics, dict[Event, int]]:
        """Count the L1 hits listed so far; return a copy of every alias's counts."""
        with self._lock:
            for metrics, hits in list(self.l1_hits.items()):
                # Slice then delete, never swap the list: a thread appending meanwhile
                # appends to this same list, after what is deleted.
                done = len(hits)
                counts = self._counts.setdefault(metrics, {})
                for namespace, hit in Counter(hits[:done]).items():  # counts in C
                    event = (counters.L1_HITS, namespace)
                    counts[event] = counts.get(event, 0) + hit
                del hits[:done]
            return {metrics: dict(counts) for metrics, counts in self._counts.items()}

    def add_time(self, seconds: float) -> None:
        """Add time spent waiting for Redis."""
        with self._lock:
            self.cache_seconds += seconds

    def totals(self) -> NamespaceStats:
        """Return this request's hits, misses and errors over every alias and namespace."""
        row: Counter[str] = Counter()
        for counts in self.fold().values():
            for event, count in counts.items():
                if event[0] in counters.COUNTERS:
                    row[event[0]] += count
        return counters.stats_of(row)

    def events(self) -> list[tuple[Event, int]]:
        """Return what was counted so far, over every alias."""
        return [item for counts in self.fold().values() for item in counts.items()]

    def forward(self, outer: RequestScope | None) -> None:
        """Hand what this scope counted to `outer`, or to the process counters."""
        for metrics, counted in self.fold().items():
            if outer is None:
                metrics.merge_request(counted, None)
                continue
            for event, count in counted.items():
                outer.add(metrics, event, count)
        if outer is not None:
            outer.add_time(self.cache_seconds)

    def commit(self, view: str | None) -> list[AliasMetrics]:
        """Merge the counts into each alias's process counters; return those aliases."""
        events = self.fold()
        for metrics, counted in events.items():
            metrics.merge_request(counted, view or UNRESOLVED_VIEW)
        return list(events)


current_scope: ContextVar[RequestScope | None] = ContextVar(
    "django_tiercache_request_scope", default=None
)


def request_scope() -> RequestScope:
    """Collect the cache use of the code run inside (``with request_scope() as scope:``).

    Commit it at the end (`RequestScope.commit`).
    """
    return RequestScope()


@contextlib.contextmanager
def captured() -> Iterator[RequestScope]:
    """Collect the cache use of the code inside apart, then pass it on as if uncaptured."""
    outer = current_scope.get()
    with request_scope() as inner:
        yield inner
    inner.forward(outer)
