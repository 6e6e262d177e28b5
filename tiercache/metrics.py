"""In-process, thread-safe metrics: hits per tier, misses and errors per namespace."""

from __future__ import annotations

import threading
from collections import Counter

from tiercache.ports import NamespaceStats

__all__ = ["LATENCY_BOUNDS", "CacheMetrics", "stats_from_counts"]

#: Upper bounds, in seconds, of the buckets of every Redis-latency histogram we export.
LATENCY_BOUNDS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

# Index of each counter in a namespace's row.
_L1_HITS, _L2_HITS, _MISSES, _ERRORS = range(4)


def stats_from_counts(l1_hits: int, l2_hits: int, misses: int, errors: int) -> NamespaceStats:
    """Build the stats of one namespace from its raw counters.

    An error counts as a lookup that did not hit (`total_requests` includes it), so an
    outage lowers the hit rate instead of leaving it out.
    """
    hits = l1_hits + l2_hits
    total = hits + misses + errors
    return NamespaceStats(
        hits=hits,
        l1_hits=l1_hits,
        l2_hits=l2_hits,
        misses=misses,
        errors=errors,
        total_requests=total,
        hit_rate=hits / total if total else 0.0,
    )


class CacheMetrics:
    """Thread-safe counters per namespace; implements `CacheMetricsProtocol`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, list[int]] = {}
        self._error_kinds: Counter[tuple[str, str]] = Counter()

    def _bump(self, namespace: str, index: int) -> None:
        with self._lock:
            row = self._rows.get(namespace)
            if row is None:
                row = self._rows[namespace] = [0, 0, 0, 0]
            row[index] += 1

    def record_hit(self, namespace: str, tier: str = "l1") -> None:
        """Count a hit served by `tier` ("l1" or "l2")."""
        self._bump(namespace, _L1_HITS if tier == "l1" else _L2_HITS)

    def record_miss(self, namespace: str) -> None:
        """Count a miss."""
        self._bump(namespace, _MISSES)

    def record_error(self, namespace: str, kind: str = "CacheError") -> None:
        """Count an error of `kind` (the `CacheError` subclass name)."""
        with self._lock:
            row = self._rows.get(namespace)
            if row is None:
                row = self._rows[namespace] = [0, 0, 0, 0]
            row[_ERRORS] += 1
            self._error_kinds[namespace, kind] += 1

    def get_stats(self, namespace: str) -> NamespaceStats:
        """Return the stats of one namespace (all zero if never seen)."""
        with self._lock:
            row = list(self._rows.get(namespace, (0, 0, 0, 0)))
        return stats_from_counts(*row)

    def get_all_stats(self) -> dict[str, NamespaceStats]:
        """Return the stats of every namespace seen since the last reset."""
        with self._lock:
            rows = {namespace: list(row) for namespace, row in self._rows.items()}
        return {namespace: stats_from_counts(*row) for namespace, row in sorted(rows.items())}

    def get_error_kinds(self) -> dict[str, dict[str, int]]:
        """Return error counts by namespace and error kind."""
        with self._lock:
            items = list(self._error_kinds.items())
        kinds: dict[str, dict[str, int]] = {}
        for (namespace, kind), count in sorted(items):
            kinds.setdefault(namespace, {})[kind] = count
        return kinds

    def reset(self, namespace: str | None = None) -> None:
        """Zero one namespace, or all of them."""
        with self._lock:
            if namespace is None:
                self._rows.clear()
                self._error_kinds.clear()
                return
            self._rows.pop(namespace, None)
            for pair in [pair for pair in self._error_kinds if pair[0] == namespace]:
                del self._error_kinds[pair]
