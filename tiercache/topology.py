"""Where the Redis nodes are, and how to reach them: the seam every topology implements.

The tiers ask a `Topology` for clients (ordinary commands, through redis-py's pools) and
for connections of their own to a node (the tracking connections, which must not be
recycled by a pool behind the cache's back). Standalone Redis is one node; Cluster and
Sentinel implement the same protocol.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from tiercache.settings import RedisSettings

if TYPE_CHECKING:
    from tiercache.topology_cluster import ClusterTopology

__all__ = [
    "Nodes",
    "StandaloneTopology",
    "Topology",
    "client_options",
    "make_topology",
    "watch_again_after_fork",
]


class Nodes(Protocol):
    """The Redis nodes of one cache, on any topology (Cluster included)."""

    settings: RedisSettings

    def node_of(self, key: str) -> str:
        """Return the address of the node that holds `key`."""
        ...

    def primaries(self) -> list[str]:
        """Return the address of every primary node."""
        ...

    def open_connection(self, node: str) -> redis.Connection:
        """Return a new, unconnected RESP2 connection to `node` that the caller owns."""
        ...

    def on_change(self, callback: Callable[[set[str]], None]) -> None:
        """Call `callback` with the nodes that stopped vouching for their keys."""
        ...


class Topology(Nodes, Protocol):
    """A topology whose commands all go through one `redis.Redis` (standalone, Sentinel)."""

    def sync_client(self) -> redis.Redis:
        """Return a new client for ordinary commands (its pool bounded by max_connections)."""
        ...

    def async_client(self) -> redis.asyncio.Redis:
        """Return a new asyncio client; bind it to one event loop only."""
        ...


class Watcher(Protocol):
    """A topology that watches its nodes from a thread of its own."""

    def after_fork(self) -> None:
        """Watch again in a forked child (if it watched): threads do not survive a fork."""
        ...


#: Every watching topology of this process, to watch again in a forked child.
_watchers: weakref.WeakSet[Watcher] = weakref.WeakSet()
_hook_once = threading.Lock()
_hooked = threading.Event()


def watch_again_after_fork(topology: Watcher) -> None:
    """Have a forked child (gunicorn --preload) call `topology.after_fork()`.

    Without it the child would never hear of a failover: its L1 would keep what a dead
    master or primary vouched for. The hook is registered on first need, so it runs
    after the registry's (already imported by then), which resets listeners and buses.
    """
    with _hook_once:
        if not _hooked.is_set():
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _hooked.set()
        _watchers.add(topology)


def _after_fork_in_child() -> None:
    global _hook_once
    _hook_once = threading.Lock()  # another parent thread may have held it at fork time
    for topology in list(_watchers):
        topology.after_fork()


def client_options(settings: RedisSettings) -> dict[str, Any]:
    """Return the keywords every client and connection of `settings` takes."""
    return {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        # The tiers decide what may be retried (reads only); a client-level retry would
        # resend a write that may already have been applied.
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }


class StandaloneTopology:
    """One Redis server: every key on one node."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        template = redis.ConnectionPool.from_url(settings.url, **client_options(settings))
        self._connection_class: type[redis.Connection] = template.connection_class
        self._connection_kwargs = dict(template.connection_kwargs)
        kwargs = self._connection_kwargs
        #: "host:port", or the unix socket's path: where the server is, without credentials.
        self.address = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        self.node = f"{self.address}/{kwargs.get('db', 0)}"

    def sync_client(self) -> redis.Redis:
        """Return a new client; at max_connections, callers wait for a free connection."""
        settings = self.settings
        pool: redis.ConnectionPool
        if settings.max_connections is None:
            pool = redis.ConnectionPool.from_url(settings.url, **client_options(settings))
        else:
            pool = redis.BlockingConnectionPool.from_url(
                settings.url,
                max_connections=settings.max_connections,
                timeout=settings.socket_timeout,
                **client_options(settings),
            )
        return redis.Redis(connection_pool=pool)

    def async_client(self) -> redis.asyncio.Redis:
        """Return a new asyncio client; at max_connections, callers wait for a free one."""
        settings = self.settings
        pool: redis.asyncio.ConnectionPool
        if settings.max_connections is None:  # redis.asyncio's own default is 100
            pool = redis.asyncio.ConnectionPool.from_url(
                settings.url, max_connections=2**31, **client_options(settings)
            )
        else:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                settings.url,
                max_connections=settings.max_connections,
                timeout=settings.socket_timeout,
                **client_options(settings),
            )
        return redis.asyncio.Redis.from_pool(pool)

    def node_of(self, key: str) -> str:
        """Return the one node."""
        return self.node

    def primaries(self) -> list[str]:
        """Return the one node."""
        return [self.node]

    def open_connection(self, node: str) -> redis.Connection:
        """Return a new RESP2 connection with the client's settings (not from a pool)."""
        return self._connection_class(**{**self._connection_kwargs, "protocol": 2})

    def on_change(self, callback: Callable[[set[str]], None]) -> None:
        """Do nothing: a standalone server never moves its keys."""


def make_topology(settings: RedisSettings) -> Topology | ClusterTopology:
    """Return the topology of `settings`."""
    if settings.cluster:
        from tiercache.topology_cluster import ClusterTopology

        return ClusterTopology(settings)
    if settings.sentinels:
        from tiercache.topology_sentinel import SentinelTopology

        return SentinelTopology(settings)
    return StandaloneTopology(settings)
