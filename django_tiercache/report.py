"""The figures of each tiered cache alias, as the admin page and the command show them."""

from __future__ import annotations

from dataclasses import dataclass, field

from django_tiercache import counters
from django_tiercache.contract import TieredBackend, tiered_aliases, tiered_cache
from django_tiercache.metrics import SiteCounts, metrics_of
from tiercache import NamespaceStats

__all__ = ["AliasReport", "alias_reports", "build_report"]


@dataclass(frozen=True)
class AliasReport:
    """Everything known about one alias: configuration, tiers' health, site-wide counters."""

    alias: str
    config: dict[str, object] = field(default_factory=dict)
    l1_entries: int | None = None
    l1_capacity: int | None = None
    l1_bytes: int | None = None
    breaker_state: str | None = None
    breaker_times_opened: int = 0
    bus_healthy: bool | None = None
    redis: dict[str, object] = field(default_factory=dict)
    #: False: the figures are this process's only (see `figures_note`).
    site_wide: bool = False
    figures_note: str | None = None
    processes: int = 0
    namespaces: dict[str, NamespaceStats] = field(default_factory=dict)
    error_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    views: list[counters.ViewStats] = field(default_factory=list)
    total: NamespaceStats = field(default_factory=lambda: counters.stats_of({}))
    #: Set when the backend itself could not be built; nothing else is then known.
    problem: str | None = None

    @property
    def namespace_rows(self) -> list[tuple[str, NamespaceStats, str]]:
        """Return (namespace, stats, error kinds as text) for each namespace."""
        rows = []
        for namespace, stats in self.namespaces.items():
            kinds = self.error_kinds.get(namespace, {})
            text = ", ".join(f"{kind}: {count}" for kind, count in kinds.items())
            rows.append((namespace, stats, text))
        return rows

    @property
    def redis_reachable(self) -> bool:
        """Return whether Redis answered the health probe."""
        return bool(self.redis.get("reachable"))


def build_report(alias: str) -> AliasReport:
    """Probe the backend of `alias` and gather the counters of every process."""
    try:
        cache = tiered_cache(alias)
        config = cache.describe()  # builds the backend: its settings are parsed here
    except Exception as error:  # a broken configuration must not break the page
        return AliasReport(alias, problem=f"{type(error).__name__}: {error}")
    l1 = cache.l1
    breaker = cache.breaker
    site: SiteCounts = metrics_of(cache, alias).site_counts()
    namespaces = counters.namespace_stats(site.counts)
    note = None
    if not site.site_wide:
        note = f"Figures of this process only: {site.problem}"
    return AliasReport(
        alias=alias,
        config=config,
        l1_entries=len(l1) if l1 is not None else None,
        l1_capacity=l1.maxsize if l1 is not None else None,
        l1_bytes=l1.bytes_used if l1 is not None else None,
        breaker_state=breaker.state if breaker is not None else None,
        breaker_times_opened=breaker.times_opened if breaker is not None else 0,
        bus_healthy=cache.bus_healthy,
        redis=cache.redis_health(),
        site_wide=site.site_wide,
        figures_note=note,
        processes=sum(1 for age in site.processes.values() if age <= _reporting_window(cache)),
        namespaces=namespaces,
        error_kinds=counters.error_kinds(site.counts),
        views=counters.view_stats(site.counts),
        total=counters.stats_of(_sum_rows(namespaces)),
    )


def alias_reports(aliases: list[str] | None = None) -> list[AliasReport]:
    """Return the report of each tiered alias (all of them by default)."""
    return [build_report(alias) for alias in (aliases or tiered_aliases())]


def _reporting_window(cache: TieredBackend) -> float:
    """Return how recently a process must have pushed to count as reporting."""
    return max(60.0, 3 * cache.options.METRICS_PUSH_INTERVAL)


def _sum_rows(rows: dict[str, NamespaceStats]) -> dict[str, int]:
    total = dict.fromkeys(counters.COUNTERS, 0)
    for stats in rows.values():
        total[counters.L1_HITS] += stats["l1_hits"]
        total[counters.L2_HITS] += stats["l2_hits"]
        total[counters.MISSES] += stats["misses"]
        total[counters.ERRORS] += stats["errors"]
    return total
