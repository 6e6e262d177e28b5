"""`TiercacheCollector`: the site's cache figures for Prometheus (`pip install tiercache[prometheus]`).

Every figure is summed over the site's worker processes: it comes from the counters each
process pushes into Redis (`django_tiercache.aggregation`), not from `prometheus_client`'s
multiprocess directory, so any worker can answer a scrape. Register it on your own
registry (django-prometheus, an existing /metrics):

    from prometheus_client import REGISTRY
    from django_tiercache.prometheus import TiercacheCollector
    REGISTRY.register(TiercacheCollector())

or mount `django_tiercache.views.metrics`. Labels carry alias, namespace, tier, operation,
error kind and Redis node, never a key. The names are listed in docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from django_tiercache import counters
from django_tiercache.contract import tiered_aliases, tiered_cache
from django_tiercache.metrics import SiteView, metrics_of
from django_tiercache.report import reporting_window

__all__ = ["METRIC_NAMES", "TiercacheCollector"]

_EVENT_HELP = {
    counters.EVICTIONS: "L1 entries dropped to make room",
    counters.INVALIDATIONS: "Invalidation messages received from Redis",
    counters.BUS_RECONNECTS: "Reconnects of the invalidation connection (each cleared L1)",
    counters.STAMPEDE_JOINS: "get_or_set callers that waited for another caller's load",
    counters.STALE_SERVED: "Stale or fail-safe values served by get_or_set",
    counters.BREAKER_OUTAGES: "Circuit breaker outages (closed to open; probes not counted)",
}


class TiercacheCollector(Collector):
    """Collects the figures of every tiered cache alias (or of `aliases`) at scrape time."""

    def __init__(self, aliases: Iterable[str] | None = None) -> None:
        self._aliases = list(aliases) if aliases is not None else None

    def describe(self) -> Iterator[Metric]:
        """Name the families without reading Redis (registration must not do I/O)."""
        yield from _Families().all()

    def collect(self) -> Iterator[Metric]:
        """Read each alias's site-wide figures and yield them as metric families."""
        families = _Families()
        for alias in self._aliases if self._aliases is not None else tiered_aliases():
            try:
                cache = tiered_cache(alias)
                site = metrics_of(cache, alias).site_view()
                stale_after = reporting_window(cache)
            except Exception:  # a broken cache must not break the scrape of the others
                continue
            families.add(alias, site, stale_after)
        yield from families.all()


class _Families:
    """One scrape's metric families, filled alias by alias."""

    def __init__(self) -> None:
        self.requests = CounterMetricFamily(
            "tiercache_requests",
            "Cache lookups by result (hit/miss/error) and, for hits, the tier that answered",
            labels=["cache", "namespace", "tier", "result"],
        )
        self.errors = CounterMetricFamily(
            "tiercache_errors",
            "Cache errors by kind (the CacheError subclass)",
            labels=["cache", "namespace", "kind"],
        )
        self.seconds = HistogramMetricFamily(
            "tiercache_operation_seconds",
            "Time of calls to a tier (Redis round trips), by operation",
            labels=["cache", "tier", "operation"],
        )
        self.gauges = {
            name: GaugeMetricFamily(name, help_text, labels=["cache"])
            for name, help_text in (
                ("tiercache_l1_entries", "Entries held in L1, summed over workers"),
                ("tiercache_l1_bytes", "Bytes held in L1, summed over workers"),
                ("tiercache_workers", "Worker processes that reported recently"),
                (
                    "tiercache_figures_site_wide",
                    "1: the figures are every worker's; 0: Redis was unreachable, this worker's only",
                ),
            )
        }
        self.breaker_open = GaugeMetricFamily(
            "tiercache_breaker_open",
            "Workers whose circuit breaker for this Redis node is not closed",
            labels=["cache", "node"],
        )
        self.events = {
            event: CounterMetricFamily(f"tiercache_{event}", help_text, labels=["cache"])
            for event, help_text in _EVENT_HELP.items()
        }

    def all(self) -> list[Metric]:
        """Return every family, in a fixed order."""
        return [
            self.requests,
            self.errors,
            self.seconds,
            *self.gauges.values(),
            self.breaker_open,
            *self.events.values(),
        ]

    def add(self, alias: str, site: SiteView, stale_after: float) -> None:
        """Add one alias's figures."""
        for namespace, stats in counters.namespace_stats(site.counts).items():
            self.requests.add_metric([alias, namespace, "l1", "hit"], stats["l1_hits"])
            self.requests.add_metric([alias, namespace, "l2", "hit"], stats["l2_hits"])
            self.requests.add_metric([alias, namespace, "none", "miss"], stats["misses"])
            self.requests.add_metric([alias, namespace, "none", "error"], stats["errors"])
        for namespace, kinds in counters.error_kinds(site.counts).items():
            for kind, count in kinds.items():
                self.errors.add_metric([alias, namespace, kind], count)
        for (tier, operation), row in sorted(counters.tier_latencies(site.counts).items()):
            cumulative, buckets = 0, []
            for index, bound in enumerate(counters.LATENCY_BUCKETS):
                cumulative += row.get(index, 0)
                le = "+Inf" if bound == float("inf") else repr(bound)
                buckets.append((le, float(cumulative)))
            self.seconds.add_metric(
                [alias, tier, operation], buckets, sum_value=row.get(counters.LATENCY_SUM, 0) / 1e6
            )
        fresh = [report for report in site.workers.values() if _age(report) <= stale_after]
        gauges = self.gauges
        gauges["tiercache_l1_entries"].add_metric(
            [alias], sum(_int(r, "l1_entries") for r in fresh)
        )
        gauges["tiercache_l1_bytes"].add_metric([alias], sum(_int(r, "l1_bytes") for r in fresh))
        gauges["tiercache_workers"].add_metric([alias], len(fresh))
        gauges["tiercache_figures_site_wide"].add_metric([alias], 1 if site.site_wide else 0)
        not_closed: dict[str, int] = {}
        for report in fresh:
            breakers = report.get("breakers")
            for node, state in breakers.items() if isinstance(breakers, dict) else ():
                not_closed[str(node)] = not_closed.get(str(node), 0) + (state != "closed")
        for node, count in sorted(not_closed.items()):
            self.breaker_open.add_metric([alias, node], count)
        for event, total in counters.process_events(site.counts).items():
            self.events[event].add_metric([alias], total)


def _age(report: dict[str, object]) -> float:
    age = report.get("age")
    return float(age) if isinstance(age, int | float) else float("inf")


def _int(report: dict[str, object], name: str) -> int:
    value = report.get(name)
    return int(value) if isinstance(value, int | float) else 0


#: Every family this collector exposes (counters without their `_total` suffix).
METRIC_NAMES = tuple(family.name for family in _Families().all())
