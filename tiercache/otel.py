"""A cache's figures as OpenTelemetry metrics (``pip install tiercache[otel]``).

`instrument(cache, name=...)` registers observable instruments on a meter: nothing is
recorded on an L1 hit; the SDK's reader calls back at collection time and reads the
cache's own counters (`CacheMetrics`), its L1, breaker, bus and stampede guard. One
histogram, ``tiercache.operation``, is fed after each Redis round trip
(`on_latency`). The names follow the Prometheus ones of `django_tiercache` (an OTel Prometheus
exporter turns ``tiercache.requests`` into ``tiercache_requests_total``)::

    from opentelemetry import metrics
    from tiercache import TieredCache
    from tiercache.otel import instrument

    cache = TieredCache.from_url("redis://127.0.0.1:6379/0")
    instrument(cache, name="sessions")  # uses metrics.get_meter_provider()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation, get_meter

from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.memory import MemoryTier
from tiercache.metrics import LATENCY_BOUNDS
from tiercache.options import CacheOptions
from tiercache.ports import CacheMetricsProtocol
from tiercache.stampede import Stampede

__all__ = ["Instrumented", "instrument"]


class Instrumented(Protocol):
    """What `instrument` reads: a core `TieredCache`/`AsyncTieredCache`, or alike."""

    @property
    def metrics(self) -> CacheMetricsProtocol: ...

    @property
    def l1(self) -> MemoryTier | None: ...

    @property
    def breaker(self) -> CircuitBreaker | None: ...

    @property
    def bus(self) -> LocalBus: ...

    @property
    def options(self) -> CacheOptions: ...

    @property
    def stampede(self) -> Stampede: ...

    def on_latency(self, observe: Callable[[str, float], None]) -> None: ...


_Callback = Callable[[CallbackOptions], Iterable[Observation]]


def instrument(cache: Instrumented, *, name: str = "default", meter: Meter | None = None) -> None:
    """Report `cache`'s figures, labelled ``cache=name``, through `meter`."""
    meter = meter or get_meter("tiercache")
    node = cache.options.location if cache.options.url is not None else ""
    label = {"cache": name}

    def requests(options: CallbackOptions) -> Iterable[Observation]:
        for namespace, stats in cache.metrics.get_all_stats().items():
            where = {**label, "namespace": namespace}
            yield Observation(stats["l1_hits"], {**where, "tier": "l1", "result": "hit"})
            yield Observation(stats["l2_hits"], {**where, "tier": "l2", "result": "hit"})
            yield Observation(stats["misses"], {**where, "tier": "none", "result": "miss"})
            yield Observation(stats["errors"], {**where, "tier": "none", "result": "error"})

    def errors(options: CallbackOptions) -> Iterable[Observation]:
        # Not part of CacheMetricsProtocol; CacheMetrics (the default) has it.
        kinds: dict[str, dict[str, int]] = getattr(cache.metrics, "get_error_kinds", dict)()
        for namespace, by_kind in kinds.items():
            for kind, count in by_kind.items():
                yield Observation(count, {**label, "namespace": namespace, "kind": kind})

    def l1_entries(options: CallbackOptions) -> Iterable[Observation]:
        if cache.l1 is not None:
            yield Observation(len(cache.l1), label)

    def l1_bytes(options: CallbackOptions) -> Iterable[Observation]:
        if cache.l1 is not None:
            yield Observation(cache.l1.bytes_used, label)

    def breaker_open(options: CallbackOptions) -> Iterable[Observation]:
        if cache.breaker is not None:
            yield Observation(int(cache.breaker.state != "closed"), {**label, "node": node})

    def event(read: Callable[[], int]) -> _Callback:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            yield Observation(read(), label)

        return observe

    def outages() -> int:
        return cache.breaker.outages if cache.breaker is not None else 0

    def evictions() -> int:
        return cache.l1.evictions if cache.l1 is not None else 0

    meter.create_observable_counter(
        "tiercache.requests", [requests], unit="{lookup}", description="Cache lookups"
    )
    meter.create_observable_counter(
        "tiercache.errors", [errors], unit="{error}", description="Cache errors by kind"
    )
    meter.create_observable_gauge(
        "tiercache.l1_entries", [l1_entries], unit="{entry}", description="Entries in L1"
    )
    meter.create_observable_gauge(
        "tiercache.l1_bytes", [l1_bytes], unit="By", description="Bytes held in L1"
    )
    meter.create_observable_gauge(
        "tiercache.breaker_open", [breaker_open], description="1 while the breaker is not closed"
    )
    seconds = meter.create_histogram(
        "tiercache.operation",
        unit="s",
        description="Time of Redis round trips, by operation",
        explicit_bucket_boundaries_advisory=list(LATENCY_BOUNDS),
    )

    def record(operation: str, took: float) -> None:
        seconds.record(took, {**label, "tier": "l2", "operation": operation})

    # Only Redis round trips are timed (a ~70 µs call affords it); L1 hits are not.
    cache.on_latency(record)
    for metric, read, description in (
        ("tiercache.evictions", evictions, "L1 entries dropped to make room"),
        ("tiercache.invalidations", lambda: cache.bus.messages, "Invalidations received"),
        ("tiercache.bus_reconnects", lambda: cache.bus.reconnects, "Invalidation reconnects"),
        ("tiercache.stampede_joins", lambda: cache.stampede.joins, "get_or_set loads joined"),
        ("tiercache.stale_served", lambda: cache.stampede.stale_served, "Stale values served"),
        ("tiercache.breaker_outages", outages, "Breaker outages (closed to open)"),
    ):
        meter.create_observable_counter(metric, [event(read)], description=description)
