"""The figures of each tiered cache alias, as the admin page, JSON and the command show them."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from django_tiercache import counters
from django_tiercache.contract import TieredBackend, tiered_aliases, tiered_cache
from django_tiercache.metrics import SiteView, metrics_of
from tiercache import NamespaceStats
from tiercache.topology_nodes import NodeStatus

__all__ = [
    "AliasReport",
    "LatencyRow",
    "MinutePoint",
    "WorkerRow",
    "alias_reports",
    "build_report",
    "report_json",
    "reporting_window",
]


@dataclass(frozen=True)
class MinutePoint:
    """One minute of the last hour, summed over processes."""

    minute: int  # minutes since the Unix epoch
    lookups: int
    l1_hits: int
    l2_hits: int
    misses: int
    errors: int
    #: Share of lookups served by each tier (None: no lookups that minute).
    l1_rate: float | None
    l2_rate: float | None
    #: Redis round-trip time quantiles, in milliseconds (None: no round trip).
    l2_p50_ms: float | None
    l2_p99_ms: float | None


@dataclass(frozen=True)
class LatencyRow:
    """Calls to one tier's operation and their time quantiles, in milliseconds."""

    tier: str
    operation: str
    calls: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class WorkerRow:
    """The last report of one worker process."""

    process: str
    host: str
    pid: int | None
    age: float  # seconds since the report
    stale: bool  # no report for several push intervals
    l1_entries: int | None
    l1_bytes: int | None
    breakers: dict[str, str]
    breaker_outages: int
    bus_state: str
    bus_reconnects: int
    last_error: str | None


@dataclass(frozen=True)
class AliasReport:
    """Everything known about one alias: configuration, tiers' health, site-wide counters."""

    alias: str
    config: dict[str, object] = field(default_factory=dict)
    l1_entries: int | None = None
    l1_capacity: int | None = None
    l1_bytes: int | None = None
    breaker_state: str | None = None
    #: Outages of this process's breaker (closed → open), not failed probes.
    breaker_outages: int = 0
    bus_healthy: bool | None = None
    redis: dict[str, object] = field(default_factory=dict)
    #: Every Redis node with its role, its answer to a PING and this process's breaker.
    nodes: list[NodeStatus] = field(default_factory=list)
    #: False: the figures are this process's only (see `figures_note`).
    site_wide: bool = False
    figures_note: str | None = None
    processes: int = 0
    namespaces: dict[str, NamespaceStats] = field(default_factory=dict)
    error_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    views: list[counters.ViewStats] = field(default_factory=list)
    total: NamespaceStats = field(default_factory=lambda: counters.stats_of({}))
    minutes: list[MinutePoint] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    #: Calls and quantiles per tier and operation, over the whole counting period.
    latencies: list[LatencyRow] = field(default_factory=list)
    reset_at: float | None = None
    #: Seconds after which a silent worker counts as stale.
    stale_after: float = 0.0
    #: Set when the backend itself could not be built; nothing else is then known.
    problem: str | None = None

    @property
    def breaker_times_opened(self) -> int:
        """Return the outages (the name the command reads)."""
        return self.breaker_outages

    @property
    def kinds(self) -> list[str]:
        """Return every error kind seen, sorted: one column each."""
        return sorted({kind for by_kind in self.error_kinds.values() for kind in by_kind})

    @property
    def namespace_rows(self) -> list[tuple[str, NamespaceStats, str, list[int]]]:
        """Return (namespace, stats, hit rate text, error count per kind column)."""
        kinds = self.kinds
        return [
            (
                namespace,
                stats,
                counters.hit_rate_text(stats),
                [self.error_kinds.get(namespace, {}).get(kind, 0) for kind in kinds],
            )
            for namespace, stats in self.namespaces.items()
        ]

    @property
    def total_hit_rate(self) -> str:
        """Return the overall hit rate text ("—" without lookups)."""
        return counters.hit_rate_text(self.total)

    @property
    def reset_at_time(self) -> datetime | None:
        """Return the time of the last reset as an aware datetime."""
        if self.reset_at is None:
            return None
        return datetime.fromtimestamp(self.reset_at, tz=UTC)

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
    # The nodes' PINGs and the counters' read may each wait up to socket_timeout for a
    # node that does not answer: overlap them, so that costs the page one wait, not two.
    with ThreadPoolExecutor(1, thread_name_prefix="tiercache-report") as pool:
        probing = pool.submit(_probe, cache)
        site: SiteView = metrics_of(cache, alias).site_view()
        nodes, health = probing.result()
    namespaces = counters.namespace_stats(site.counts)
    stale_after = reporting_window(cache)
    note = None
    if not site.site_wide:
        note = f"Figures of this process only: {site.problem}"
    workers = [
        _worker_row(process, report, stale_after) for process, report in site.workers.items()
    ]
    return AliasReport(
        alias=alias,
        config=config,
        l1_entries=len(l1) if l1 is not None else None,
        l1_capacity=l1.maxsize if l1 is not None else None,
        l1_bytes=l1.bytes_used if l1 is not None else None,
        breaker_state=breaker.state if breaker is not None else None,
        breaker_outages=breaker.outages if breaker is not None else 0,
        bus_healthy=cache.bus_healthy,
        redis=health,
        nodes=nodes,
        site_wide=site.site_wide,
        figures_note=note,
        processes=sum(1 for worker in workers if not worker.stale),
        namespaces=namespaces,
        error_kinds=counters.error_kinds(site.counts),
        views=counters.view_stats(site.counts),
        total=counters.stats_of(_sum_rows(namespaces)),
        minutes=[_minute_point(minute, row) for minute, row in site.minutes],
        workers=workers,
        events=counters.process_events(site.counts),
        latencies=[
            LatencyRow(
                tier,
                operation,
                sum(_buckets(histogram).values()),
                _ms(counters.quantile(_buckets(histogram), 0.5)),
                _ms(counters.quantile(_buckets(histogram), 0.99)),
            )
            for (tier, operation), histogram in sorted(counters.tier_latencies(site.counts).items())
        ],
        reset_at=site.reset_at,
        stale_after=stale_after,
    )


def report_json(report: AliasReport) -> dict[str, object]:
    """Return `report` as plain JSON-ready data, hit rates included."""
    data = asdict(report)
    data["hit_rate"] = report.total["hit_rate"] if report.total["total_requests"] else None
    data["error_kind_columns"] = report.kinds
    return data


def alias_reports(aliases: list[str] | None = None) -> list[AliasReport]:
    """Return the report of each tiered alias (all of them by default)."""
    return [build_report(alias) for alias in (aliases or tiered_aliases())]


def reporting_window(cache: TieredBackend) -> float:
    """Return how recently a worker must have pushed to count as reporting, not stale."""
    return 3 * cache.options.METRICS_PUSH_INTERVAL + 5.0


def _probe(cache: TieredBackend) -> tuple[list[NodeStatus], dict[str, object]]:
    """Return the nodes' PING answers and the health of Redis, from one round of PINGs."""
    nodes = cache.node_statuses()
    return nodes, cache.redis_health(nodes)


def _worker_row(process: str, report: Mapping[str, object], stale_after: float) -> WorkerRow:
    age = float(_number(report.get("age")))
    error = report.get("last_error")
    bus_error = report.get("bus_last_error")
    last_error = None
    if isinstance(error, dict):
        last_error = str(error.get("kind"))
    elif bus_error:
        last_error = f"bus: {bus_error}"
    breakers = report.get("breakers")
    pid = report.get("pid")
    return WorkerRow(
        process=process,
        host=str(report.get("host", process.rsplit(":", 1)[0])),
        pid=pid if isinstance(pid, int) else None,
        age=age,
        stale=age > stale_after,
        l1_entries=_optional_int(report.get("l1_entries")),
        l1_bytes=_optional_int(report.get("l1_bytes")),
        breakers={str(k): str(v) for k, v in breakers.items()}
        if isinstance(breakers, dict)
        else {},
        breaker_outages=_number(report.get("breaker_outages")),
        bus_state=str(report.get("bus_state", "?")),
        bus_reconnects=_number(report.get("bus_reconnects")),
        last_error=last_error,
    )


def _minute_point(minute: int, row: Mapping[str, int]) -> MinutePoint:
    l1, l2 = row.get(counters.L1_HITS, 0), row.get(counters.L2_HITS, 0)
    misses, errors = row.get(counters.MISSES, 0), row.get(counters.ERRORS, 0)
    lookups = l1 + l2 + misses + errors
    buckets = {
        int(counters.split(name)[1]): value
        for name, value in row.items()
        if counters.split(name)[0] == "lat"
    }
    return MinutePoint(
        minute=minute,
        lookups=lookups,
        l1_hits=l1,
        l2_hits=l2,
        misses=misses,
        errors=errors,
        l1_rate=l1 / lookups if lookups else None,
        l2_rate=l2 / lookups if lookups else None,
        l2_p50_ms=_ms(counters.quantile(buckets, 0.5)),
        l2_p99_ms=_ms(counters.quantile(buckets, 0.99)),
    )


def _buckets(histogram: Mapping[int | str, int]) -> dict[int, int]:
    return {b: n for b, n in histogram.items() if isinstance(b, int)}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _number(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _optional_int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _sum_rows(rows: dict[str, NamespaceStats]) -> dict[str, int]:
    total = dict.fromkeys(counters.COUNTERS, 0)
    for stats in rows.values():
        total[counters.L1_HITS] += stats["l1_hits"]
        total[counters.L2_HITS] += stats["l2_hits"]
        total[counters.MISSES] += stats["misses"]
        total[counters.ERRORS] += stats["errors"]
    return total
