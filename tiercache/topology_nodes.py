"""Which Redis nodes a cache reaches, in which role, and whether each one answers now.

The admin page, its JSON and `manage.py tiercache ping` show this one list. The nodes
are redis-py's own view of the topology: CLUSTER NODES (or a cluster client's
`get_nodes()` with each node's `server_type`), Sentinel's `discover_master` and
`SENTINEL REPLICAS`. Each node is PINGed on a new connection of its own, all of them at
once, so the answer comes within the cache's connect + socket timeouts however many
nodes are down. The `a*` twins do the same on redis.asyncio, on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio
import redis.exceptions as rex
from redis.asyncio.connection import AbstractConnection
from redis.connection import ConnectionInterface

from tiercache.breaker import CircuitBreaker
from tiercache.cluster_tier import AsyncClusterTier, AsyncTier, ClusterTier, SyncTier
from tiercache.redis_tier import error_from
from tiercache.topology import StandaloneTopology, client_options
from tiercache.topology_cluster import ClusterTopology
from tiercache.topology_sentinel import SentinelTopology

__all__ = [
    "NodeRole",
    "NodeStatus",
    "RedisNode",
    "anode_statuses",
    "aredis_nodes",
    "node_statuses",
    "redis_nodes",
]

#: primary or replica: standalone Redis (its one server is the primary) and Cluster;
#: master, replica or sentinel: Sentinel; seed: a cluster's URL node while redis-py
#: knows no other (none answered yet).
NodeRole = Literal["primary", "replica", "master", "sentinel", "seed"]

#: CLUSTER NODES as redis-py parses it: each node's "host:port" and its fields.
Described = dict[str, dict[str, object]]


@dataclass(frozen=True)
class RedisNode:
    """One server of a cache's topology."""

    #: "host:port", or a unix socket's path; never credentials.
    address: str
    role: NodeRole
    #: The node name of the circuit breaker that guards it (None: none does, as for
    #: replicas and sentinels, which the cache does not send commands to).
    breaker_name: str | None = None
    #: Why the topology itself counts it down, whether or not it answers a PING: the
    #: flags of a replica the Sentinels deem down ("s_down", "o_down", "disconnected").
    down: str | None = None


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
        return _cluster_listing(tier.topology.seed, _described(tier), _known(tier))
    if isinstance(topology, SentinelTopology):
        return _sentinel_listing(topology, *topology.members())
    assert isinstance(topology, StandaloneTopology)
    return [RedisNode(topology.address, "primary", topology.node)]


async def aredis_nodes(tier: AsyncTier) -> list[RedisNode]:
    """Return what `redis_nodes` does, asking redis-py's asyncio clients."""
    topology = tier.topology
    if isinstance(tier, AsyncClusterTier):
        return _cluster_listing(tier.topology.seed, await _adescribed(tier), _known(tier))
    if isinstance(topology, SentinelTopology):
        return _sentinel_listing(topology, *await topology.amembers())
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
        answers = list(pool.map(lambda node: _ping(_connection(tier, node)), nodes))
    return _statuses(nodes, answers, breaker_for)


async def anode_statuses(
    tier: AsyncTier, breaker_for: Callable[[str], CircuitBreaker]
) -> list[NodeStatus]:
    """Return what `node_statuses` does, PINGing every node at once on the event loop."""
    nodes = await aredis_nodes(tier)
    answers = await asyncio.gather(*(_aping(_aconnection(tier, node)) for node in nodes))
    return _statuses(nodes, answers, breaker_for)


def _statuses(
    nodes: list[RedisNode],
    answers: Sequence[tuple[float | None, str | None]],
    breaker_for: Callable[[str], CircuitBreaker],
) -> list[NodeStatus]:
    statuses = []
    for node, (latency, failure) in zip(nodes, answers, strict=True):
        error = failure
        if node.down is not None:  # it may answer a PING, but the Sentinels hand it out no more
            deemed = f"the Sentinels deem it down ({node.down})"
            error = deemed if failure is None else f"{failure}; {deemed}"
        breaker = None if node.breaker_name is None else breaker_for(node.breaker_name).state
        statuses.append(NodeStatus(node.address, node.role, error is None, latency, error, breaker))
    return statuses


def _sentinel_listing(
    topology: SentinelTopology,
    master: str | None,
    replicas: list[tuple[str, str | None]],
    sentinels: list[str],
) -> list[RedisNode]:
    return [
        *([RedisNode(master, "master", topology.node)] if master is not None else []),
        *(
            RedisNode(address, "replica", down=down)
            for address, down in sorted(replicas, key=lambda replica: _address_order(replica[0]))
        ),
        *(RedisNode(address, "sentinel") for address in sentinels),
    ]


def _cluster_listing(seed: str, described: Described | None, known: list[Any]) -> list[RedisNode]:
    """Return the cluster's nodes as CLUSTER NODES names them, else as redis-py knows them.

    redis-py's `get_nodes()` comes from CLUSTER SLOTS, which leaves out a replica that
    has failed or has replicated nothing yet (offset 0: a new, idle cluster): the
    operator would not see it. CLUSTER NODES lists every node, failed ones included.
    """
    if described:
        found = [
            _cluster_node(address, "master" in str(node["flags"]).split(","))
            for address, node in described.items()
            if not address.endswith(":0")  # "noaddr": a node forgotten but still gossiped
        ]
    elif not known:
        return [RedisNode(seed, "seed", seed)]
    else:
        found = [_cluster_node(str(node.name), node.server_type == "primary") for node in known]
    return sorted(found, key=lambda node: (node.role != "primary", _address_order(node.address)))


def _known(tier: ClusterTier | AsyncClusterTier) -> list[Any]:
    """Return the nodes redis-py's cluster client knows (from CLUSTER SLOTS), if any."""
    try:
        return list(tier.client.get_nodes())
    except (rex.RedisError, rex.RedisClusterException, OSError):
        return []


def _described(tier: ClusterTier) -> Described | None:
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
                return cast("Described", answer.result())
        return None
    finally:
        pool.shutdown(wait=False)  # a silent primary's thread ends at its socket timeout


async def _adescribed(tier: AsyncClusterTier) -> Described | None:
    """Return what `_described` does, asking with redis-py's asyncio cluster nodes."""
    client = tier.client
    try:
        await client.initialize()  # a no-op once the tier has
    except (rex.RedisError, rex.RedisClusterException, OSError):
        return None
    asked = {
        asyncio.ensure_future(node.execute_command("CLUSTER NODES"))
        for node in client.get_primaries()
    }
    try:
        while asked:
            answered, asked = await asyncio.wait(asked, return_when=asyncio.FIRST_COMPLETED)
            for answer in answered:
                if answer.exception() is None and answer.result():
                    return cast("Described", answer.result())
        return None
    finally:
        for question in asked:
            question.cancel()


def _cluster_node(address: str, primary: bool) -> RedisNode:
    return RedisNode(address, "primary", address) if primary else RedisNode(address, "replica")


def _ping(connection: ConnectionInterface) -> tuple[float | None, str | None]:
    """Return the PING round trip in ms and None, or None and why it failed."""
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


async def _aping(connection: AbstractConnection) -> tuple[float | None, str | None]:
    """Return what `_ping` does, on a redis.asyncio connection."""
    try:
        await connection.connect()
        started = time.perf_counter()
        await connection.send_command("PING")
        await connection.read_response()
        return round((time.perf_counter() - started) * 1000, 3), None
    except (rex.RedisError, OSError) as exc:
        return None, str(error_from(exc))
    finally:
        await connection.disconnect()


def _connection(tier: SyncTier, node: RedisNode) -> ConnectionInterface:
    """Return a new connection to `node`, with the cache's credentials and timeouts."""
    topology = tier.topology
    if isinstance(topology, SentinelTopology):
        return topology.connection_to(node.address, sentinel=node.role == "sentinel")
    if isinstance(topology, ClusterTopology):
        return topology.open_connection(node.address)  # any node, by its "host:port"
    return topology.open_connection(topology.primaries()[0])  # the one server


def _aconnection(tier: AsyncTier, node: RedisNode) -> AbstractConnection:
    """Return what `_connection` does, as a redis.asyncio connection."""
    topology = tier.topology
    if isinstance(topology, SentinelTopology):
        return topology.async_connection_to(node.address, sentinel=node.role == "sentinel")
    if isinstance(tier, AsyncClusterTier):
        # The settings of a node redis-py knows (credentials, TLS, timeouts): the same
        # for every node of the cluster, failed replicas it does not know included.
        client = tier.client
        known = client.get_default_node() or next(iter(client.get_nodes()), None)
        host, _, port = node.address.rpartition(":")
        if known is None:  # redis-py never reached the cluster: neither will this
            return redis.asyncio.Connection(
                host=host, port=int(port), **client_options(topology.settings)
            )
        return cast(
            "AbstractConnection",
            known.connection_class(**{**known.connection_kwargs, "host": host, "port": int(port)}),
        )
    assert isinstance(topology, StandaloneTopology)
    return redis.asyncio.ConnectionPool.from_url(
        topology.settings.url, **client_options(topology.settings)
    ).make_connection()


def _address_order(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return (host, int(port)) if port.isdigit() else (address, 0)
