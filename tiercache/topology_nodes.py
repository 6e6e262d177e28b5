"""Which Redis nodes a cache reaches, in which role, and whether each one answers now.

The admin page, its JSON and `manage.py tiercache ping` show this one list. The nodes
are redis-py's own view of the topology: a cluster client's `cluster_nodes()` (or its
`get_nodes()` with each node's `server_type`), Sentinel's `discover_master` and
`discover_replicas`. Each node is PINGed on a new connection of its own, all of them at
once, so the answer comes within the cache's connect + socket timeouts however many
nodes are down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Literal, cast

import redis.exceptions as rex
from redis.connection import ConnectionInterface

from tiercache.breaker import CircuitBreaker
from tiercache.cluster_tier import ClusterTier, SyncTier
from tiercache.redis_tier import error_from
from tiercache.topology import StandaloneTopology
from tiercache.topology_cluster import ClusterTopology
from tiercache.topology_sentinel import SentinelTopology

__all__ = ["NodeRole", "NodeStatus", "RedisNode", "node_statuses", "redis_nodes"]

#: primary or replica: standalone Redis (its one server is the primary) and Cluster;
#: master, replica or sentinel: Sentinel; seed: a cluster's URL node while redis-py
#: knows no other (none answered yet).
NodeRole = Literal["primary", "replica", "master", "sentinel", "seed"]


@dataclass(frozen=True)
class RedisNode:
    """One server of a cache's topology."""

    #: "host:port", or a unix socket's path; never credentials.
    address: str
    role: NodeRole
    #: The node name of the circuit breaker that guards it (None: none does, as for
    #: replicas and sentinels, which the cache does not send commands to).
    breaker_name: str | None = None


@dataclass(frozen=True)
class NodeStatus:
    """One server of a cache's topology, its answer to a PING, and its breaker."""

    address: str
    role: NodeRole
    #: It answered a PING within the cache's timeouts.
    healthy: bool
    #: The PING's round trip, in milliseconds (None: no answer).
    latency_ms: float | None
    #: Why it did not answer (None: it did); never carries a password.
    error: str | None
    #: This process's breaker of the node: "closed", "open" or "half_open" (None: no
    #: breaker guards it).
    breaker: str | None


def redis_nodes(tier: SyncTier) -> list[RedisNode]:
    """Return every node of the tier's topology with its role, as redis-py sees it now.

    Primaries (or the master) come first, then replicas, then sentinels. A cluster
    client that cannot reach its seed yet lists the seed alone.
    """
    topology = tier.topology
    if isinstance(tier, ClusterTier):
        return _cluster_nodes(tier)
    if isinstance(topology, SentinelTopology):
        master, replicas, sentinels = topology.members()
        return [
            *([RedisNode(master, "master", topology.node)] if master is not None else []),
            *(RedisNode(address, "replica") for address in sorted(replicas, key=_address_order)),
            *(RedisNode(address, "sentinel") for address in sentinels),
        ]
    assert isinstance(topology, StandaloneTopology)
    return [RedisNode(topology.address, "primary", topology.node)]


def node_statuses(tier: SyncTier, breaker_for: Callable[[str], CircuitBreaker]) -> list[NodeStatus]:
    """PING every node of the tier's topology at once; return each with its breaker's state.

    `breaker_for(name)` returns the breaker of a node (`Assembly.breaker_for`). Never
    raises for Redis trouble: a node that does not answer is unhealthy, with the error.
    """
    nodes = redis_nodes(tier)
    if not nodes:
        return []
    with ThreadPoolExecutor(len(nodes), thread_name_prefix="tiercache-ping") as pool:
        answers = list(pool.map(lambda node: _ping(tier, node), nodes))
    return [
        NodeStatus(
            node.address,
            node.role,
            healthy=error is None,
            latency_ms=latency,
            error=error,
            breaker=None if node.breaker_name is None else breaker_for(node.breaker_name).state,
        )
        for node, (latency, error) in zip(nodes, answers, strict=True)
    ]


def _cluster_nodes(tier: ClusterTier) -> list[RedisNode]:
    """Return the cluster's nodes as CLUSTER NODES names them, else as redis-py knows them.

    redis-py's `get_nodes()` comes from CLUSTER SLOTS, which leaves out a replica that
    has failed or has replicated nothing yet (offset 0: a new, idle cluster): the
    operator would not see it. CLUSTER NODES lists every node, failed ones included.
    """
    described = _described(tier)
    if described:
        found = [
            _cluster_node(address, "master" in str(node["flags"]).split(","))
            for address, node in described.items()
            if not address.endswith(":0")  # "noaddr": a node forgotten but still gossiped
        ]
    else:
        try:
            nodes = tier.client.get_nodes()
        except (rex.RedisError, rex.RedisClusterException, OSError):
            seed = tier.topology.seed
            return [RedisNode(seed, "seed", seed)]
        found = [_cluster_node(str(node.name), node.server_type == "primary") for node in nodes]
    return sorted(found, key=lambda node: (node.role != "primary", _address_order(node.address)))


def _described(tier: ClusterTier) -> dict[str, dict[str, object]] | None:
    """Return CLUSTER NODES as the first primary to answer gives it (None: none did).

    Every primary redis-py knows is asked at once: one that does not answer would
    otherwise hold the list up for its socket timeout (twice, with redis-py's
    `cluster_nodes()` retry), before the PINGs wait for it again.
    """
    try:
        client = tier.client
        primaries = client.get_primaries()
    except (rex.RedisError, rex.RedisClusterException, OSError):
        return None
    if not primaries:
        return None
    pool = ThreadPoolExecutor(len(primaries), thread_name_prefix="tiercache-nodes")
    try:
        asked = [
            pool.submit(client.get_redis_connection(node).execute_command, "CLUSTER NODES")
            for node in primaries
        ]
        for answer in as_completed(asked):
            if answer.exception() is None and answer.result():
                return cast("dict[str, dict[str, object]]", answer.result())
        return None
    finally:
        pool.shutdown(wait=False)  # a silent primary's thread ends at its socket timeout


def _cluster_node(address: str, primary: bool) -> RedisNode:
    return RedisNode(address, "primary", address) if primary else RedisNode(address, "replica")


def _ping(tier: SyncTier, node: RedisNode) -> tuple[float | None, str | None]:
    """Return the PING round trip in ms and None, or None and why it failed."""
    connection = _connection(tier, node)
    try:
        connection.connect()
        started = time.perf_counter()
        connection.send_command("PING")
        connection.read_response()
        return round((time.perf_counter() - started) * 1000, 3), None
    except (rex.RedisError, OSError) as exc:
        return None, str(error_from(exc))
    finally:
        connection.disconnect()


def _connection(tier: SyncTier, node: RedisNode) -> ConnectionInterface:
    """Return a new connection to `node`, with the cache's credentials and timeouts."""
    topology = tier.topology
    if isinstance(topology, SentinelTopology):
        return topology.connection_to(node.address, sentinel=node.role == "sentinel")
    if isinstance(topology, ClusterTopology):
        return topology.open_connection(node.address)  # any node, by its "host:port"
    return topology.open_connection(topology.primaries()[0])  # the one server


def _address_order(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host, int(port)) if port.isdigit() else (address, 0)
