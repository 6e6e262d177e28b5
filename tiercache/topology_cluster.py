"""A Redis Cluster through redis-py's `RedisCluster` clients; the slot routing is theirs.

One seed node is enough: redis-py discovers the others and follows MOVED and ASK. A
node is named "host:port". The clients are built lazily, so a cluster that is down
when the cache is built only makes its calls fail, never the construction.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio.cluster
import redis.exceptions as rex
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.crc import key_slot

from tiercache.errors import CacheUnavailable
from tiercache.settings import RedisSettings
from tiercache.topology import client_options, watch_again_after_fork

__all__ = ["ANY_NODE", "ClusterTopology"]

logger = logging.getLogger("tiercache")

#: `open_connection(ANY_NODE)`: a node that answers, whichever (for broadcast, which
#: classic PUBLISH spreads to every node).
ANY_NODE = "any"

#: After a node failed, look at the slot map this often (seconds), for this long: a
#: replica takes over within about twice cluster-node-timeout.
_URGENT_INTERVAL = 0.1
_URGENT_FOR = 15.0
#: Hash slots of a Redis Cluster.
_SLOTS = 16384


class ClusterTopology:
    """The primaries of a Redis Cluster and their slots, as redis-py sees them."""

    sharded = True

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        parts = urlsplit(settings.url)
        self.seed = f"{parts.hostname}:{parts.port or 6379}"
        self._kwargs = _node_kwargs(settings)
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[set[str]], None]] = []
        self._slots: dict[tuple[int, int], str] | None = None
        self._watcher: threading.Thread | None = None
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._urgent_until = 0.0
        #: Grows each time a slot moves to another primary (tiers then refresh redis-py's map).
        self.generation = 0
        self._names: list[str | None] = [None] * _SLOTS
        self._names_generation = 0
        # The shared client's slot map missed the last change (its refresh failed).
        self._stale = False
        watch_again_after_fork(self)

    def _options(self) -> dict[str, Any]:
        options = {**self._kwargs, **client_options(self.settings)}
        # A slot whose primary died must not make the whole client refuse to start.
        options["require_full_coverage"] = False
        if self.settings.max_connections is not None:
            options["max_connections"] = self.settings.max_connections
        return options

    def sync_client(self) -> RedisCluster:
        """Return a new cluster client (it asks the seed for the slot map now)."""
        host, _, port = self.seed.rpartition(":")
        return RedisCluster(host=host, port=int(port), **self._options())

    def async_client(self) -> redis.asyncio.cluster.RedisCluster:
        """Return a new asyncio cluster client (it asks for the slot map on first use)."""
        host, _, port = self.seed.rpartition(":")
        options = self._options()
        options.setdefault("max_connections", 2**31)  # redis.asyncio's default is 100
        return redis.asyncio.cluster.RedisCluster(host=host, port=int(port), **options)

    def _shared(self) -> RedisCluster:
        with self._lock:
            if self._client is None:
                self._client = client = self.sync_client()
                # Nothing closes a topology: its client goes with it.
                weakref.finalize(self, client.close)
            return self._client

    def node_of(self, key: str) -> str:
        """Return the primary that owns `key`'s slot, as redis-py last saw it."""
        [node] = self.nodes_of((key,))
        return node

    def nodes_of(self, keys: Iterable[str]) -> list[str]:
        """Return the primary that owns each key's slot, as redis-py last saw it.

        redis-py computes the slot (`redis.crc.key_slot`, what `RedisCluster.keyslot`
        calls after its encoder, which costs twice the CRC for a str) and names its
        primary (`NodesManager.get_node_from_slot`); the name is remembered per slot
        until the slot map changes, since redis-py's lookup (a lock, a few checks) would
        cost a batch of 100 keys about 100 µs. Raises `CacheUnavailable` when no primary
        is known for a slot.
        """
        generation, names = self.generation, self._names
        if self._names_generation != generation:
            # A new table: a lookup begun on the old map can only write into the old one.
            names = self._names = [None] * _SLOTS
            self._names_generation = generation
        found = []
        for key in keys:
            slot = key_slot(key.encode())
            found.append(names[slot] or self._name_of(names, slot))
        return found

    def _name_of(self, names: list[str | None], slot: int) -> str:
        client = self._client or self._shared()
        try:
            name = names[slot] = str(client.nodes_manager.get_node_from_slot(slot).name)
        except (rex.RedisError, rex.RedisClusterException, OSError) as exc:
            raise CacheUnavailable(f"no primary known for slot {slot}: {exc}") from None
        return name

    def primaries(self) -> list[str]:
        """Return every primary ("host:port"); the seed alone while none answers."""
        try:
            return sorted(str(node.name) for node in self._shared().get_primaries())
        except (rex.RedisError, rex.RedisClusterException, OSError):
            return [self.seed]

    def open_connection(self, node: str) -> redis.Connection:
        """Return a new, unconnected RESP2 connection to `node` that the caller owns."""
        if node == ANY_NODE:
            node = self._any_node()
        host, _, port = node.rpartition(":")
        kwargs = {**self._kwargs, **client_options(self.settings)}
        connection_class = redis.SSLConnection if kwargs.pop("ssl", False) else redis.Connection
        connection: redis.Connection = connection_class(
            host=host, port=int(port), protocol=2, **kwargs
        )
        return connection

    def _any_node(self) -> str:
        """Return a node redis-py knows, a different one at each call (the seed if none)."""
        try:
            return str(self._shared().get_random_node().name)
        except (rex.RedisError, rex.RedisClusterException, OSError):
            return self.seed

    def on_change(self, callback: Callable[[set[str]], None]) -> None:
        """Call `callback` with the nodes that lost slots (failed over, resharded)."""
        with self._lock:
            self._callbacks.append(callback)
        self.watch()

    def watch(self) -> None:
        """Look at the slot map every `watch_interval` seconds, from a daemon thread."""
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=_watch,
                    args=(weakref.ref(self), self._stopped, self._wake),
                    name=f"tiercache-cluster-{self.seed}",
                    daemon=True,
                )
                self._watcher.start()

    def after_fork(self) -> None:
        """Watch again in a forked child: the parent's watcher thread did not come along."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        watched, self._watcher = self._watcher is not None, None
        if watched and not self._stopped.is_set():
            self.watch()

    def suspect(self) -> None:
        """Say a node just failed: look at the slot map now, and often for a while."""
        self._urgent_until = time.monotonic() + _URGENT_FOR
        self._wake.set()

    def next_look(self) -> float:
        """Return the seconds until the watcher looks again."""
        urgent = time.monotonic() < self._urgent_until
        return _URGENT_INTERVAL if urgent else self.settings.watch_interval

    def look(self) -> None:
        """Ask a node for the slot map; when a slot changed primary, say which nodes lost it."""
        try:
            client = self._shared()
            reply = client.cluster_slots(target_nodes=client.get_random_node())
        except (rex.RedisError, rex.RedisClusterException, OSError):
            return  # the cluster is unreachable now: look again later
        current = _owners(reply)
        previous, self._slots = self._slots, current
        changed = previous is not None and previous != current
        if not (changed or self._stale):
            return
        try:
            client.nodes_manager.initialize()  # `nodes_of` and `primaries` see the new map
            self._stale = False
        except (rex.RedisError, rex.RedisClusterException, OSError):
            self._stale = True  # try again at the next look; the tiers refresh anyway
        self.generation += 1
        if changed:
            assert previous is not None
            lost = {node for span, node in previous.items() if current.get(span) != node}
            for callback in list(self._callbacks):
                callback(lost)

    def close(self) -> None:
        """Stop watching and close the shared client."""
        self._stopped.set()
        self._wake.set()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def _owners(reply: object) -> dict[tuple[int, int], str]:
    """Return the primary ("host:port") of each slot range of a CLUSTER SLOTS reply."""
    if not isinstance(reply, dict):  # redis-py parses it to {(start, end): {"primary": ...}}
        return {}
    return {
        (int(span[0]), int(span[1])): f"{info['primary'][0]}:{info['primary'][1]}"
        for span, info in reply.items()
    }


def _watch(
    topology: weakref.ref[ClusterTopology], stopped: threading.Event, wake: threading.Event
) -> None:
    while not stopped.is_set():
        watched = topology()
        if watched is None:
            return
        wake.clear()
        try:
            watched.look()
        except Exception:  # a surprise from redis-py must not end the watching for good
            logger.exception("tiercache: looking at the slot map of %s failed", watched.seed)
        interval = watched.next_look()
        del watched  # let the topology go while this thread sleeps
        wake.wait(interval)


def _node_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """Return the keywords of every node connection: the URL's credentials and TLS."""
    parsed = parse_url(settings.url)
    kwargs = {key: value for key, value in parsed.items() if key not in ("host", "port", "db")}
    if kwargs.get("connection_class") is redis.SSLConnection:
        kwargs["ssl"] = True
    kwargs.pop("connection_class", None)
    return kwargs
