"""The listener's Redis adapters: one raw pub/sub connection each, over redis-py.

They drive a bare connection the cache owns (from `Topology.open_connection`) rather
than redis-py's `PubSub`, which silently reconnects and resubscribes with a new client
id: the listener must see every disconnect, because invalidations sent meanwhile are
lost and L1 has to be cleared. Both speak RESP2, where Redis redirects tracking
invalidations to a connection only if it is subscribed to `__redis__:invalidate`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis.exceptions as rex

from tiercache.commands import Command
from tiercache.errors import CacheError, CacheTimeout, CacheUnavailable
from tiercache.listener import PONG, Pong, TrackingRefused
from tiercache.messages import Invalidation, decode
from tiercache.topology import Nodes
from tiercache.tracking import Tracking

__all__ = ["BroadcastSubscriber", "TrackingSubscriber"]

#: The channel Redis publishes tracking invalidations on (RESP2 redirect).
INVALIDATE_CHANNEL = "__redis__:invalidate"


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except rex.TimeoutError as exc:
        raise CacheTimeout(f"Redis pub/sub timed out: {exc}") from None
    except (rex.RedisError, OSError) as exc:
        raise CacheUnavailable(f"Redis pub/sub connection lost: {exc}") from None


class _Subscriber:
    """Implements `tiercache.listener.Subscriber` on one connection to one node."""

    def __init__(self, topology: Nodes, node: str) -> None:
        self._topology = topology
        self._node = node
        self._connection: Any = None

    def _open(self, commands: list[Command]) -> list[object]:
        """Connect, send `commands`, return their replies (error replies as values)."""
        connection: Any = self._topology.open_connection(self._node)
        self._connection = connection
        connection.connect()
        connection.send_packed_command(connection.pack_commands(commands))
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except rex.ResponseError as error:
                replies.append(error)
        return replies

    def _next(self, timeout: float) -> object:
        connection = self._connection
        with _translated():
            try:
                if not connection.can_read(timeout=timeout):
                    return None
                return connection.read_response()
            except (TypeError, ValueError, AttributeError):  # closed by `interrupt` meanwhile
                raise rex.ConnectionError("the connection was closed") from None

    def receive(self, timeout: float) -> Invalidation | Pong | None:
        """Return the next invalidation, PONG, or None (nothing within `timeout` s)."""
        reply = self._next(timeout)
        if not isinstance(reply, list) or len(reply) < 2:
            return None
        kind = _text(reply[0])
        if kind == "pong":  # RESP2, subscribed
            return PONG
        if kind == "message" and len(reply) == 3:
            return self._decode(reply[2])
        return None

    def _decode(self, payload: object) -> Invalidation | None:
        """Return the invalidation a message's payload says, or None."""
        raise NotImplementedError

    def ping(self) -> None:
        """Send a PING; in subscribed mode its answer arrives as a pong message."""
        with _translated():
            self._connection.send_command("PING")

    def interrupt(self) -> None:
        """Shut the connection down so a `receive` blocked in another thread returns."""
        with contextlib.suppress(rex.RedisError, OSError, AttributeError):
            self._connection.disconnect()

    def close(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        with contextlib.suppress(rex.RedisError, OSError):
            if connection is not None:
                connection.disconnect()


def _subscribed(reply: object) -> None:
    if not (isinstance(reply, list) and reply and _text(reply[0]) == "subscribe"):
        raise CacheError(f"unexpected answer to SUBSCRIBE: {reply!r}")


class TrackingSubscriber(_Subscriber):
    """Hears Redis's tracking invalidations for the keys `tracking`'s connections read."""

    def __init__(self, topology: Nodes, node: str, tracking: Tracking) -> None:
        super().__init__(topology, node)
        self._tracking = tracking

    def open(self) -> None:
        """Connect, learn our client id, check tracking is allowed, and subscribe."""
        with _translated():
            replies = self._open(
                [
                    ("CLIENT", "ID"),
                    ("CLIENT", "SETNAME", f"tiercache-invalidate-{self._tracking.bus.instance_id}"),
                    # A probe: a server (or an ACL) that refuses tracking says so here.
                    ("CLIENT", "TRACKING", "ON", "OPTIN"),
                    ("CLIENT", "TRACKING", "OFF"),
                    ("SUBSCRIBE", INVALIDATE_CHANNEL),
                ]
            )
        refused = [r for r in replies[:4] if isinstance(r, rex.ResponseError)]
        if refused:
            raise TrackingRefused(str(refused[0]))
        _subscribed(replies[4])
        client_id = replies[0]
        if not isinstance(client_id, int):
            raise CacheError(f"unexpected answer to CLIENT ID: {client_id!r}")
        self._tracking.redirect_to(client_id)

    def _decode(self, payload: object) -> Invalidation | None:
        """Return the keys Redis says changed, or a flush (a null payload)."""
        if payload is None:  # FLUSHDB, FLUSHALL: every tracked key of the node is gone
            return Invalidation("", "clear")
        if not isinstance(payload, list):
            return None
        return Invalidation("", "keys", tuple(_text(key) for key in payload))


class BroadcastSubscriber(_Subscriber):
    """Hears the one channel every writer publishes on (broadcast mode)."""

    def __init__(self, topology: Nodes, node: str, channel: str) -> None:
        super().__init__(topology, node)
        self._channel = channel

    def open(self) -> None:
        """Connect and subscribe to the shared channel."""
        with _translated():
            [named, reply] = self._open(
                [("CLIENT", "SETNAME", "tiercache-invalidate"), ("SUBSCRIBE", self._channel)]
            )
        del named  # a server without CLIENT still serves broadcast
        _subscribed(reply)

    def _decode(self, payload: object) -> Invalidation | None:
        """Return the invalidation another process published, or None if not ours."""
        return decode(payload if isinstance(payload, bytes) else str(payload).encode())
