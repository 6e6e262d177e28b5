"""The counter fields the metrics keep, locally and in Redis, and the stats read from them.

Every counter is one flat field name, so that a process's deltas are a `Counter[str]`
and adding them into Redis is one HINCRBY each:

- ``ns|<namespace>|<counter>`` with counter one of `COUNTERS`;
- ``err|<namespace>|<kind>`` errors of one `CacheError` kind;
- ``view|<view>|<namespace>|<counter>`` what requests to a view did in a namespace;
- ``req|<view>`` how many requests to the view used this cache;
- ``op|<tier>|<operation>|<bucket>`` how many calls to a tier fell in a latency bucket
  (`LATENCY_BUCKETS`; ``sum`` holds their summed time in microseconds);
- ``proc|<event>`` events counted by the cache's parts (`PROCESS_EVENTS`).

'|' and '%' inside a name are percent-escaped, so any namespace or view name round-trips.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from tiercache import NamespaceStats
from tiercache.metrics import LATENCY_BOUNDS, stats_from_counts

__all__ = [
    "BREAKER_OUTAGES",
    "BUS_RECONNECTS",
    "COUNTERS",
    "ERRORS",
    "EVICTIONS",
    "INVALIDATIONS",
    "L1_HITS",
    "L2_HITS",
    "LATENCY_BUCKETS",
    "LATENCY_SUM",
    "MISSES",
    "PROCESS_EVENTS",
    "STALE_SERVED",
    "STAMPEDE_JOINS",
    "ViewStats",
    "bucket_of",
    "error_kinds",
    "hit_rate_text",
    "join",
    "namespace_stats",
    "process_events",
    "quantile",
    "split",
    "stats_of",
    "tier_latencies",
    "view_stats",
]

L1_HITS = "l1_hits"
L2_HITS = "l2_hits"
MISSES = "misses"
ERRORS = "errors"
COUNTERS = (L1_HITS, L2_HITS, MISSES, ERRORS)

#: Upper bounds, in seconds, of the latency histogram's buckets (the last is +Inf).
LATENCY_BUCKETS = (*LATENCY_BOUNDS, float("inf"))
#: The field holding a histogram's summed time, in integer microseconds.
LATENCY_SUM = "sum"

#: Events the cache's parts count, each summed over processes under ``proc|<event>``.
EVICTIONS = "evictions"
INVALIDATIONS = "invalidations"
BUS_RECONNECTS = "bus_reconnects"
STAMPEDE_JOINS = "stampede_joins"
STALE_SERVED = "stale_served"
BREAKER_OUTAGES = "breaker_outages"
PROCESS_EVENTS = (
    EVICTIONS,
    INVALIDATIONS,
    BUS_RECONNECTS,
    STAMPEDE_JOINS,
    STALE_SERVED,
    BREAKER_OUTAGES,
)


def bucket_of(seconds: float) -> int:
    """Return the index of the latency bucket that holds `seconds`."""
    for index, bound in enumerate(LATENCY_BUCKETS):
        if seconds <= bound:
            return index
    return len(LATENCY_BUCKETS) - 1


def quantile(buckets: Mapping[int, int], q: float) -> float | None:
    """Return the `q` quantile (0..1) of a histogram, interpolated in its bucket."""
    total = sum(buckets.values())
    if not total:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for index, bound in enumerate(LATENCY_BUCKETS):
        count = buckets.get(index, 0)
        if count and seen + count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bound: say at least that much
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        lower = bound
    return lower


def join(*parts: str) -> str:
    """Return the field name made of `parts`."""
    return "|".join(part.replace("%", "%25").replace("|", "%7C") for part in parts)


def split(name: str) -> list[str]:
    """Return the parts of a field name."""
    return [part.replace("%7C", "|").replace("%25", "%") for part in name.split("|")]


def stats_of(row: Mapping[str, int]) -> NamespaceStats:
    """Return the stats of one row of counters (missing counters are zero).

    As in the core, an error counts as a lookup that did not hit; with no lookups the hit
    rate is 0.0 and pages show "—" (see `hit_rate_text`).
    """
    return stats_from_counts(
        row.get(L1_HITS, 0), row.get(L2_HITS, 0), row.get(MISSES, 0), row.get(ERRORS, 0)
    )


def hit_rate_text(stats: NamespaceStats) -> str:
    """Return the hit rate as a percentage, or "—" when there were no lookups."""
    if not stats["total_requests"]:
        return "—"
    return f"{stats['hit_rate'] * 100:.1f}%"


def tier_latencies(counts: Mapping[str, int]) -> dict[tuple[str, str], dict[int | str, int]]:
    """Return each (tier, operation)'s histogram: bucket index → count, plus ``sum`` (µs)."""
    histograms: dict[tuple[str, str], dict[int | str, int]] = {}
    for name, value in counts.items():
        parts = split(name)
        if len(parts) == 4 and parts[0] == "op":
            bucket: int | str = parts[3] if parts[3] == LATENCY_SUM else int(parts[3])
            histograms.setdefault((parts[1], parts[2]), {})[bucket] = value
    return histograms


def process_events(counts: Mapping[str, int]) -> dict[str, int]:
    """Return the summed count of each of `PROCESS_EVENTS` (zero if never counted)."""
    return {event: counts.get(join("proc", event), 0) for event in PROCESS_EVENTS}


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
