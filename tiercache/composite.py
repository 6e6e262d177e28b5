"""Assembly of a tiered cache from its options: the composition root of the core."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from tiercache import registry
from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.cluster_bus import ClusterEars, NodeEar
from tiercache.codecs import Codec
from tiercache.listener import Listener, Subscriber
from tiercache.memory import MemoryTier
from tiercache.options import CacheOptions
from tiercache.policy import TierPolicy
from tiercache.ports import CacheMetricsProtocol
from tiercache.redis_pubsub import BroadcastSubscriber, TrackingSubscriber
from tiercache.stampede import Stampede
from tiercache.topology import Nodes, Topology, make_topology
from tiercache.topology_cluster import ANY_NODE, ClusterTopology
from tiercache.tracking import Tracking

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
    #: Makes a node's breaker (None: L1 only).
    new_breaker: Callable[[], CircuitBreaker] | None = None

    def breaker_for(self, node: str) -> CircuitBreaker:
        """Return the breaker of one node (of a cluster: each primary has its own)."""
        breaker = self.node_breakers.get(node)
        if breaker is None:
            assert self.new_breaker is not None
            options = self.options
            breaker = registry.breaker_for(
                (options.url, node, options.breaker_threshold, options.breaker_reset),
                self.new_breaker,
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
    new_breaker: Callable[[], CircuitBreaker] | None = None
    if options.url is None:
        bus = LocalBus("", registry.instance_id())  # an L1-only cache talks to no one
        breaker = None
    else:
        topology = make_topology(options.redis_settings())
        bus = registry.bus_for(options.location, options.channel())
        bus.require(options.invalidation_mode)
        # A cluster's broadcasts reach every node: listen on any that answers.
        node = ANY_NODE if isinstance(topology, ClusterTopology) else topology.primaries()[0]
        if isinstance(topology, ClusterTopology) and bus.requested == "tracking":
            _hear_each_primary(options, bus, topology)
            listener: Callable[[], Listener] | None = None
        else:
            if bus.requested == "tracking":
                bus.track_with(lambda: Tracking(bus, topology, node, options.fill_connections))
            listener = _listener(options, bus, topology, node)
        # One per node and breaker settings; keyed by the full URL too, so a wrong
        # password does not open the circuit of the right one.
        new_breaker = functools.partial(_breaker, options, bus, listener)
        breaker = registry.breaker_for(
            (options.url, node, options.breaker_threshold, options.breaker_reset), new_breaker
        )
        if listener is not None and not isinstance(topology, ClusterTopology):
            # Sentinel named another master: it has no tracking state of ours.
            topology.on_change(functools.partial(_moved, bus, listener, breaker))
        if listener is not None and bus.requested != "off":
            bus.listen_with(lambda: listener().ensure_started())
            # Subscribe before the first read or write: both capture the L1 sequence,
            # and the subscribe's clear would make their fill look raced. A cache without
            # L1 listens too: it learns whether the server allows tracking, and so whether
            # its writes must be published for the others.
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
    assembly = Assembly(options, policy, bus, breaker, stampede, topology, new_breaker=new_breaker)
    if breaker is not None and topology is not None and not isinstance(topology, ClusterTopology):
        assembly.node_breakers[topology.primaries()[0]] = breaker
    return assembly


def _hear_each_primary(options: CacheOptions, bus: LocalBus, topology: ClusterTopology) -> None:
    """Give `bus` one ear per primary of a cluster, each with its listener and tracking."""

    def make(ears: ClusterEars, node: str) -> NodeEar:
        ear = NodeEar(ears, node)
        ear.tracking = Tracking(ear, topology, node, options.fill_connections, per_key=True)
        listener = _listener(options, ear, topology, node, ear.tracking)
        ear.start = lambda: listener().ensure_started()
        return ear

    ears = bus.hear_per_node(
        lambda: ClusterEars(bus, topology, make, registry.stop_listener, options.fill_connections)
    )
    topology.on_change(ears.changed)
    bus.listen_with(ears.start_all)
    # Subscribe before the first read or write (see `assemble`), to every primary.
    ears.start_all()


def _moved(
    bus: LocalBus, listener: Callable[[], Listener], breaker: CircuitBreaker, nodes: set[str]
) -> None:
    """Forget what the old master vouched for, listen to the new one, try it at once."""
    breaker.probe_now()
    bus.clear_all()
    if bus.tracking is not None:
        bus.tracking.forget()
    listener().reconnect()


def _breaker(
    options: CacheOptions, bus: LocalBus, listener: Callable[[], Listener] | None
) -> CircuitBreaker:
    breaker = CircuitBreaker(options.breaker_threshold, options.breaker_reset, timer=options.timer)
    # Writes made elsewhere while we could not hear them were never announced.
    breaker.on_recover(bus.clear_all)
    if bus.channel and listener is not None:
        # Redis is back: resubscribe now rather than when the listener's backoff ends.
        breaker.on_recover(lambda: listener().wake())
    return breaker


def _listener(
    options: CacheOptions,
    audience: LocalBus | NodeEar,
    topology: Nodes,
    node: str,
    tracking: Tracking | None = None,
) -> Callable[[], Listener]:
    """Return how to reach this process's listener of `audience` (made on first need).

    `audience` is a bus (its node's tracking is `bus.tracking`), or one primary's ear
    with its `tracking`; a cluster's broadcast fallback listens on any node.
    """
    bus = audience if isinstance(audience, LocalBus) else audience.bus
    where = ANY_NODE if isinstance(topology, ClusterTopology) else node

    def broadcast() -> Subscriber:
        return BroadcastSubscriber(topology, where, bus.broadcast_channel)

    def make() -> Listener:
        nonlocal tracking
        tracking = tracking or bus.tracking
        heartbeat = options.heartbeat_interval
        first_wait = options.connect_timeout + options.socket_timeout
        if bus.mode == "tracking" and tracking is not None:
            node_tracking = tracking
            return Listener(
                audience,
                lambda: TrackingSubscriber(topology, node, node_tracking),
                heartbeat=heartbeat,
                first_wait=first_wait,
                fallback=broadcast,
                tick=tracking.check_idle,
            )
        return Listener(audience, broadcast, heartbeat=heartbeat, first_wait=first_wait)

    return lambda: registry.listener_for(audience, make)
