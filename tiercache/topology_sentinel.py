"""Redis behind Sentinel: redis-py's `Sentinel` clients follow the master, we watch it move.

The URL's host is the service name; its user, password, database and scheme apply to
the master. `sentinel_kwargs` apply to the connections to the Sentinels. Every key lives
on the one master, so the topology has one node, named after the service: its breaker
and its L1 share survive a failover, and `on_change` tells when the master moved (the
new master has no tracking state for what the old one vouched for).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.exceptions as rex
from redis.asyncio.connection import AbstractConnection
from redis.connection import ConnectionInterface, parse_url
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from tiercache.settings import RedisSettings
from tiercache.topology import client_options, watch_again_after_fork

__all__ = ["SentinelTopology", "replica_states"]

logger = logging.getLogger("tiercache")


class SentinelTopology:
    """A master and its replicas, found through Sentinel."""

    sharded = False

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.service = urlsplit(settings.url).hostname or ""
        self.node = f"{self.service} (sentinel)"
        self._master_kwargs = _master_kwargs(settings)
        self._sentinel_kwargs = {
            **client_options(settings),
            **dict(settings.sentinel_kwargs),
        }
        self._sentinel = Sentinel(
            list(settings.sentinels), sentinel_kwargs=self._sentinel_kwargs, **self._master_kwargs
        )
        self._pool = SentinelConnectionPool(self.service, self._sentinel, **self._master_kwargs)
        self._callbacks: list[Callable[[set[str]], None]] = []
        self._master: tuple[str, int] | None = None
        self._watcher: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        watch_again_after_fork(self)

    def sync_client(self) -> redis.Redis:
        """Return a client of the current master (its connections find the master anew)."""
        extra = {"max_connections": self.settings.max_connections}
        return self._sentinel.master_for(
            self.service, **({} if extra["max_connections"] is None else extra)
        )

    def async_client(self) -> redis.asyncio.Redis:
        """Return an asyncio client of the current master; bind it to one event loop."""
        kwargs = dict(self._master_kwargs)
        tls = kwargs["connection_class"] is _MasterSSLConnection
        kwargs["connection_class"] = _AsyncMasterSSLConnection if tls else _AsyncMasterConnection
        sentinel = redis.asyncio.sentinel.Sentinel(
            list(self.settings.sentinels),
            # Each new master connection asks a Sentinel; redis.asyncio refuses a 101st.
            sentinel_kwargs={"max_connections": 2**31, **self._sentinel_kwargs},
            **kwargs,
        )
        client: redis.asyncio.Redis = sentinel.master_for(
            self.service,
            redis_class=_AsyncMasterClient,
            # redis.asyncio's own default is 100; the tier bounds its own use.
            max_connections=self.settings.max_connections or 2**31,
        )
        return client

    def node_of(self, key: str) -> str:
        """Return the one node: the service."""
        return self.node

    def primaries(self) -> list[str]:
        """Return the one node: the service."""
        return [self.node]

    def master_address(self) -> str | None:
        """Return "host:port" of the master as last seen (None: not found yet)."""
        master = self._master
        return None if master is None else f"{master[0]}:{master[1]}"

    def members(self) -> tuple[str | None, list[tuple[str, str | None]], list[str]]:
        """Return the master, its replicas and the Sentinels ("host:port" each), as now seen.

        The master is the one the Sentinels name (the last one seen if none answers;
        None if never seen). The replicas are all those the first Sentinel to answer
        `SENTINEL REPLICAS` knows, each with why it deems it down (`down_flags`), so a
        replica that stopped stays listed. The Sentinels are the configured ones.
        """
        try:
            host, port = self._sentinel.discover_master(self.service)
            master: str | None = f"{host}:{port}"
        except (rex.RedisError, OSError):
            master = self.master_address()
        replicas: list[tuple[str, str | None]] = []
        for sentinel in self._sentinel.sentinels:
            try:
                replicas = replica_states(sentinel.sentinel_slaves(self.service))
                break
            except (rex.RedisError, OSError):
                continue  # ask the next Sentinel, as redis-py's discover_replicas does
        return master, replicas, [f"{host}:{port}" for host, port in self.settings.sentinels]

    async def amembers(self) -> tuple[str | None, list[tuple[str, str | None]], list[str]]:
        """Return what `members()` does, asking the Sentinels with redis.asyncio."""
        sentinel = redis.asyncio.sentinel.Sentinel(
            list(self.settings.sentinels), sentinel_kwargs=self._sentinel_kwargs
        )
        try:
            try:
                host, port = await sentinel.discover_master(self.service)
                master: str | None = f"{host}:{port}"
            except (rex.RedisError, OSError):
                master = self.master_address()
            replicas: list[tuple[str, str | None]] = []
            for client in sentinel.sentinels:
                try:
                    replicas = replica_states(await client.sentinel_slaves(self.service))
                    break
                except (rex.RedisError, OSError):
                    continue
        finally:
            for client in sentinel.sentinels:
                await client.aclose()
        return master, replicas, [f"{host}:{port}" for host, port in self.settings.sentinels]

    def connection_to(self, address: str, *, sentinel: bool = False) -> ConnectionInterface:
        """Return a new, unconnected connection to the server at "host:port".

        It takes the master's credentials, database and TLS (a master or a replica), or
        with `sentinel` the Sentinels' keywords; it never asks where the master is.
        """
        host, _, port = address.rpartition(":")
        if sentinel:
            client = redis.Redis(host=host, port=int(port), **self._sentinel_kwargs)
            return client.connection_pool.make_connection()
        kwargs = dict(self._master_kwargs)
        tls = kwargs.pop("connection_class") is _MasterSSLConnection
        connection_class = redis.SSLConnection if tls else redis.Connection
        return connection_class(host=host, port=int(port), **kwargs)

    def async_connection_to(self, address: str, *, sentinel: bool = False) -> AbstractConnection:
        """Return what `connection_to` does, as a redis.asyncio connection."""
        host, _, port = address.rpartition(":")
        if sentinel:
            client = redis.asyncio.Redis(host=host, port=int(port), **self._sentinel_kwargs)
            return client.connection_pool.make_connection()
        kwargs = dict(self._master_kwargs)
        tls = kwargs.pop("connection_class") is _MasterSSLConnection
        connection_class = redis.asyncio.SSLConnection if tls else redis.asyncio.Connection
        return connection_class(host=host, port=int(port), **kwargs)

    def open_connection(self, node: str) -> redis.Connection:
        """Return a new RESP2 connection that finds the current master when it connects."""
        kwargs = {
            key: value for key, value in self._master_kwargs.items() if key != "connection_class"
        }
        connection_class = self._master_kwargs["connection_class"]
        connection: redis.Connection = connection_class(
            connection_pool=self._pool, **{**kwargs, "protocol": 2}
        )
        return connection

    def on_change(self, callback: Callable[[set[str]], None]) -> None:
        """Call `callback` with the node when the Sentinels name another master."""
        with self._lock:
            self._callbacks.append(callback)
        self.watch()

    def watch(self) -> None:
        """Ask the Sentinels for the master every `watch_interval` seconds, from a thread."""
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=_watch,
                    args=(weakref.ref(self), self._stopped, self.settings.watch_interval),
                    name=f"tiercache-sentinel-{self.service}",
                    daemon=True,
                )
                self._watcher.start()

    def after_fork(self) -> None:
        """Watch again in a forked child: the parent's watcher thread did not come along."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        watched, self._watcher = self._watcher is not None, None
        if watched and not self._stopped.is_set():
            self.watch()

    def look(self) -> None:
        """Ask the Sentinels for the master; tell the callbacks if it moved."""
        try:
            master = self._sentinel.discover_master(self.service)
        except (rex.RedisError, OSError):
            return  # no Sentinel answers, or none knows a master: look again later
        previous, self._master = self._master, master
        if previous is not None and previous != master:
            for callback in list(self._callbacks):
                callback({self.node})

    def close(self) -> None:
        """Stop watching and close the connections of the shared pool."""
        self._stopped.set()
        self._pool.disconnect()


class _AsyncMasterClient(redis.asyncio.Redis):
    """A master's asyncio client that also closes its own connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client, then the Sentinel clients it found the master with."""
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()


def _watch(
    topology: weakref.ref[SentinelTopology], stopped: threading.Event, interval: float
) -> None:
    while not stopped.is_set():
        watched = topology()
        if watched is None:
            return
        try:
            watched.look()
        except Exception:  # a surprise from redis-py must not end the watching for good
            logger.exception("tiercache: asking the Sentinels of %s failed", watched.service)
        del watched  # let the topology go while this thread sleeps
        stopped.wait(interval)


class _MasterConnection(SentinelManagedConnection):
    """A connection that asks the Sentinels for the master however it (re)connects.

    redis-py's own class does so only in `connect()`; a command sent on a closed
    connection reconnects through `connect_check_health`, to the default localhost:6379.
    """

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Find the master, then connect to it."""
        if not self.is_connected:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health, retry_socket_connect)


class _MasterSSLConnection(_MasterConnection, redis.SSLConnection):
    """The same over TLS."""


class _AsyncMasterConnection(redis.asyncio.sentinel.SentinelManagedConnection):
    """The asyncio twin of `_MasterConnection`."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Find the master, then connect to it."""
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)


class _AsyncMasterSSLConnection(_AsyncMasterConnection, redis.asyncio.SSLConnection):
    """The same over TLS."""


#: The flags of `SENTINEL REPLICAS` that say a Sentinel deems a replica down, with the
#: booleans redis-py's parsed reply carries for them (`Sentinel.filter_replicas` drops
#: a replica on the first two).
_DOWN_FLAGS = (("s_down", "is_sdown"), ("o_down", "is_odown"), ("disconnected", "is_disconnected"))


def replica_states(reply: Iterable[Mapping[str, Any]]) -> list[tuple[str, str | None]]:
    """Return each replica of a parsed `SENTINEL REPLICAS` reply as ("host:port", flags).

    `flags` names why the Sentinel deems it down ("s_down", "o_down", "disconnected",
    comma-separated), or is None when it does not.
    """
    return [
        (
            f"{state['ip']}:{state['port']}",
            ",".join(flag for flag, key in _DOWN_FLAGS if state.get(key)) or None,
        )
        for state in reply
    ]


def _master_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """Return the keywords of connections to the master: the URL's credentials, db, TLS."""
    parsed = parse_url(settings.url)
    kwargs: dict[str, Any] = {
        key: value for key, value in parsed.items() if key not in ("host", "port")
    }
    tls = kwargs.pop("connection_class", None) is redis.SSLConnection
    kwargs["connection_class"] = _MasterSSLConnection if tls else _MasterConnection
    return {**kwargs, **client_options(settings)}
