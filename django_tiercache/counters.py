"""The counter fields the metrics keep, locally and in Redis, and the stats read from them.

Every counter is one flat field name, so that a process's deltas are a `Counter[str]`
and adding them into Redis is one HINCRBY each:

- ``ns|<namespace>|<counter>`` with counter one of `COUNTERS`;
- ``err|<namespace>|<kind>`` errors of one `CacheError` kind;
- ``view|<view>|<namespace>|<counter>`` what requests to a view did in a namespace;
- ``req|<view>`` how many requests to the view used this cache.

'|' and '%' inside a name are percent-escaped, so any namespace or view name round-trips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from tiercache import NamespaceStats

__all__ = [
    "COUNTERS",
    "ERRORS",
    "L1_HITS",
    "L2_HITS",
    "MISSES",
    "ViewStats",
    "error_kinds",
    "join",
    "namespace_stats",
    "split",
    "stats_of",
    "view_stats",
]

L1_HITS = "l1_hits"
L2_HITS = "l2_hits"
MISSES = "misses"
ERRORS = "errors"
COUNTERS = (L1_HITS, L2_HITS, MISSES, ERRORS)


def join(*parts: str) -> str:
    """Return the field name made of `parts`."""
    return "|".join(part.replace("%", "%25").replace("|", "%7C") for part in parts)


def split(name: str) -> list[str]:
    """Return the parts of a field name."""
    return [part.replace("%7C", "|").replace("%25", "%") for part in name.split("|")]


def stats_of(row: Mapping[str, int]) -> NamespaceStats:
    """Return the stats of one row of counters (missing counters are zero)."""
    l1_hits, l2_hits = row.get(L1_HITS, 0), row.get(L2_HITS, 0)
    hits = l1_hits + l2_hits
    total = hits + row.get(MISSES, 0)
    return NamespaceStats(
        hits=hits,
        l1_hits=l1_hits,
        l2_hits=l2_hits,
        misses=row.get(MISSES, 0),
        errors=row.get(ERRORS, 0),
        total_requests=total,
        hit_rate=hits / total if total else 0.0,
    )


def namespace_stats(counts: Mapping[str, int]) -> dict[str, NamespaceStats]:
    """Return the stats of every namespace, sorted by name."""
    rows: dict[str, Counter[str]] = {}
    for name, value in counts.items():
        parts = split(name)
        if len(parts) == 3 and parts[0] == "ns":
            rows.setdefault(parts[1], Counter())[parts[2]] += value
    return {namespace: stats_of(rows[namespace]) for namespace in sorted(rows)}


def error_kinds(counts: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Return error counts by namespace, then by kind."""
    kinds: dict[str, dict[str, int]] = {}
    for name, value in sorted(counts.items()):
        parts = split(name)
        if len(parts) == 3 and parts[0] == "err" and value:
            kinds.setdefault(parts[1], {})[parts[2]] = value
    return kinds


@dataclass(frozen=True)
class ViewStats:
    """What the requests to one view did with the cache."""

    view: str
    requests: int
    total: NamespaceStats
    namespaces: dict[str, NamespaceStats] = field(default_factory=dict)


def view_stats(counts: Mapping[str, int]) -> list[ViewStats]:
    """Return the stats of every view that used the cache, busiest first."""
    requests: Counter[str] = Counter()
    rows: dict[str, dict[str, Counter[str]]] = {}
    for name, value in counts.items():
        parts = split(name)
        if len(parts) == 2 and parts[0] == "req":
            requests[parts[1]] += value
        elif len(parts) == 4 and parts[0] == "view":
            rows.setdefault(parts[1], {}).setdefault(parts[2], Counter())[parts[3]] += value
    views = []
    for view in set(rows) | set(requests):
        by_namespace = rows.get(view, {})
        total: Counter[str] = Counter()
        for row in by_namespace.values():
            total.update(row)
        views.append(
            ViewStats(
                view=view,
                requests=requests[view],
                total=stats_of(total),
                namespaces={ns: stats_of(by_namespace[ns]) for ns in sorted(by_namespace)},
            )
        )
    return sorted(views, key=lambda stats: (-stats.total["total_requests"], stats.view))
