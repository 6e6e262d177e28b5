"""Assembly of a tiered cache from its options: the composition root of the core."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tiercache import registry
from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.codecs import Codec
from tiercache.listener import Listener
from tiercache.memory import MemoryTier
from tiercache.options import CacheOptions
from tiercache.policy import TierPolicy
from tiercache.ports import CacheMetricsProtocol
from tiercache.redis_pubsub import RedisSubscriber
from tiercache.stampede import Stampede
from tiercache.topology import Topology, make_topology
from tiercache.topology_cluster import ClusterTopology

__all__ = ["Assembly", "assemble"]


@dataclass(frozen=True)
class Assembly:
    """The parts of one cache: its policy, and what the shells need to reach Redis."""

    options: CacheOptions
    policy: TierPolicy
    bus: LocalBus
    breaker: CircuitBreaker | None
    stampede: Stampede
    #: The Redis nodes and how to reach them (None: L1 only).
    topology: Topology | ClusterTopology | None
    #: Each node's breaker by name, as the tiers asked for them (a cluster has several).
    node_breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def breaker_for(self, node: str) -> CircuitBreaker:
        """Return the breaker of one node (of a cluster: each primary has its own)."""
        breaker = self.node_breakers.get(node)
        if breaker is None:
            options, bus = self.options, self.bus
            breaker = registry.breaker_for(
                (options.url, node, options.breaker_threshold, options.breaker_reset),
                lambda: _breaker(options, bus, _listener(options, bus)),
            )
            self.node_breakers[node] = breaker
        return breaker


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
    topology: Topology | ClusterTopology | None = None
    if options.url is None:
        bus = LocalBus("", registry.instance_id())  # an L1-only cache talks to no one
        breaker = None
    else:
        topology = make_topology(options.redis_settings())
        bus = registry.bus_for(options.location, options.channel())
        listener = _listener(options, bus)
        # One per node and breaker settings; keyed by the full URL too, so a wrong
        # password does not open the circuit of the right one.
        breaker = registry.breaker_for(
            (
                options.url,
                topology.primaries()[0],
                options.breaker_threshold,
                options.breaker_reset,
            ),
            lambda: _breaker(options, bus, listener),
        )
        if bus.channel and l1 is not None:
            bus.listen_with(lambda: listener().ensure_started())
            # Subscribe before the first read or write: both capture the L1 sequence,
            # and the subscribe's clear would make their fill look raced.
            listener().ensure_started()
    if l1 is not None:
        bus.attach(l1)
    policy = TierPolicy(
        l1=l1,
        has_l2=options.url is not None,
        codec=codec,
        bus=bus,
        metrics=metrics,
        max_value_bytes=options.max_value_bytes,
        clock=options.clock,
    )
    stampede = Stampede(
        policy,
        bus,
        # Same Redis key, same value: one flight per key and server, whichever cache asks.
        scope=options.location if options.url is not None else id(policy),
        lock_timeout=options.lock_timeout,
        backup_size=options.l1_maxsize or 10_000,
        timer=options.timer,
    )
    assembly = Assembly(options, policy, bus, breaker, stampede, topology)
    if breaker is not None and topology is not None:
        assembly.node_breakers[topology.primaries()[0]] = breaker
    return assembly


def _breaker(
    options: CacheOptions, bus: LocalBus, listener: Callable[[], Listener]
) -> CircuitBreaker:
    breaker = CircuitBreaker(options.breaker_threshold, options.breaker_reset, timer=options.timer)
    # Writes made elsewhere while we could not hear them were never announced.
    breaker.on_recover(bus.clear_all)
    if bus.channel:
        # Redis is back: resubscribe now rather than when the listener's backoff ends.
        breaker.on_recover(lambda: listener().wake())
    return breaker


def _listener(options: CacheOptions, bus: LocalBus) -> Callable[[], Listener]:
    """Return how to reach this process's listener of `bus` (made on first need)."""
    url = options.url
    assert url is not None

    def make() -> Listener:
        return Listener(
            bus,
            lambda: RedisSubscriber(url, options.connect_timeout, options.heartbeat_interval),
            heartbeat=options.heartbeat_interval,
            first_wait=options.connect_timeout + options.socket_timeout,
        )

    return lambda: registry.listener_for(bus, make)
