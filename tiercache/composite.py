"""Assembly of a tiered cache from its options: the composition root of the core."""

from __future__ import annotations

from dataclasses import dataclass

from tiercache import registry
from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.codecs import Codec
from tiercache.memory import MemoryTier
from tiercache.options import CacheOptions
from tiercache.policy import TierPolicy
from tiercache.ports import CacheMetricsProtocol

__all__ = ["Assembly", "assemble"]


@dataclass(frozen=True)
class Assembly:
    """The parts of one cache: its policy, and what the shells need to reach Redis."""

    options: CacheOptions
    policy: TierPolicy
    bus: LocalBus
    breaker: CircuitBreaker | None


def assemble(
    options: CacheOptions,
    codec: Codec,
    metrics: CacheMetricsProtocol | None,
    *,
    l1: MemoryTier | None = None,
) -> Assembly:
    """Build the policy of a cache; `l1` lets callers share one L1 between instances."""
    if l1 is None and options.has_l1:
        l1 = MemoryTier(
            options.l1_maxsize or 1,
            options.l1_ttl,
            max_bytes=options.l1_max_bytes,
            timer=options.timer,
        )
    if options.url is None:
        bus = LocalBus("", registry.instance_id())  # an L1-only cache talks to no one
        breaker = None
    else:
        bus = registry.bus_for(options.location, options.channel())
        breaker = registry.breaker_for(options.location, lambda: _breaker(options, bus))
    if l1 is not None:
        bus.attach(l1)
    policy = TierPolicy(
        l1=l1,
        has_l2=options.url is not None,
        codec=codec,
        bus=bus,
        metrics=metrics,
        max_value_bytes=options.max_value_bytes,
    )
    return Assembly(options, policy, bus, breaker)


def _breaker(options: CacheOptions, bus: LocalBus) -> CircuitBreaker:
    breaker = CircuitBreaker(options.breaker_threshold, options.breaker_reset, timer=options.timer)
    # Writes made elsewhere while we could not hear them were never announced.
    breaker.on_recover(bus.clear_all)
    return breaker
