"""What each worker process reports besides its counters: its L1, breaker and bus."""

from __future__ import annotations

import os
import socket

from django_tiercache import counters
from tiercache import resilience_stats
from tiercache.composite import Assembly

__all__ = ["probe_of"]


def probe_of(assembly: Assembly, node: str) -> tuple[dict[str, object], dict[str, int]]:
    """Return the gauges of this worker's share of a cache, and its event totals.

    `node` names the Redis server the breaker guards (a redacted location). Event
    totals run from the start of the process; the metrics turn them into deltas.
    """
    l1 = assembly.policy.l1
    health = resilience_stats(assembly)
    outages = assembly.breaker.outages if assembly.breaker is not None else 0
    per_node = {name: breaker.state for name, breaker in dict(assembly.node_breakers).items()}
    report: dict[str, object] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "l1_entries": len(l1) if l1 is not None else None,
        "l1_bytes": l1.bytes_used if l1 is not None else None,
        "l1_capacity": l1.maxsize if l1 is not None else None,
        # A Redis Cluster has a breaker per primary, named "host:port".
        "breakers": per_node if len(per_node) > 1 else {node: health["breaker_state"]},
        "breaker_outages": outages,
        "bus_state": health["bus_state"],
        "bus_reconnects": health["bus_reconnects"],
        "bus_last_error": health["bus_last_error"],
    }
    totals = {
        counters.EVICTIONS: l1.evictions if l1 is not None else 0,
        counters.INVALIDATIONS: health["bus_messages"],
        counters.BUS_RECONNECTS: health["bus_reconnects"],
        counters.STAMPEDE_JOINS: assembly.stampede.joins,
        counters.STALE_SERVED: assembly.stampede.stale_served,
        counters.BREAKER_OUTAGES: outages,
    }
    return report, totals
