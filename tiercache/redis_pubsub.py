"""The listener's Redis adapter: one raw pub/sub connection over redis-py.

Besides `tiercache.redis_tier`, this is the only module that imports `redis`. It drives
a bare connection rather than redis-py's `PubSub`, which silently reconnects and
resubscribes: the listener must see every disconnect, because messages sent meanwhile
are lost and L1 has to be cleared. redis-py speaks RESP3 by default, where pub/sub
messages are push replies; RESP2 (`?protocol=2`) works too.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from tiercache.errors import CacheError, CacheTimeout, CacheUnavailable
from tiercache.listener import PONG, Pong

__all__ = ["RedisSubscriber"]


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class RedisSubscriber:
    """Implements `tiercache.listener.Subscriber` on one redis-py connection."""

    def __init__(self, url: str, connect_timeout: float, socket_timeout: float) -> None:
        self._pool = redis.ConnectionPool.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._connection: Any = None

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except rex.TimeoutError as exc:
            raise CacheTimeout(f"Redis pub/sub timed out: {exc}") from None
        except (rex.RedisError, OSError) as exc:
            raise CacheUnavailable(f"Redis pub/sub connection lost: {exc}") from None

    def open(self, channel: str) -> None:
        """Connect and subscribe to `channel`; return once the server confirmed it."""
        with self._translated():
            # Any: redis-py leaves these connection methods unannotated.
            connection: Any = self._pool.make_connection()
            self._connection = connection
            connection.connect()
            connection.send_command("SUBSCRIBE", channel)
            reply = connection.read_response(push_request=True)
        if not (isinstance(reply, list) and reply and _text(reply[0]) == "subscribe"):
            raise CacheError(f"unexpected answer to SUBSCRIBE: {reply!r}")

    def receive(self, timeout: float) -> bytes | Pong | None:
        """Return the next message, PONG, or None when nothing came within `timeout` s."""
        connection = self._connection
        with self._translated():
            if not connection.can_read(timeout=timeout):
                return None
            reply = connection.read_response(push_request=True)
        if _text(reply) == "PONG":  # RESP3 answers PING plainly even when subscribed
            return PONG
        if not isinstance(reply, list) or len(reply) < 2:
            return None
        kind = _text(reply[0])
        if kind == "message" and len(reply) == 3:
            data = reply[2]
            return data if isinstance(data, bytes) else str(data).encode()
        if kind == "pong":  # RESP2, subscribed
            return PONG
        return None

    def ping(self) -> None:
        """Send a PING; in subscribed mode its answer arrives as a pong message."""
        with self._translated():
            self._connection.send_command("PING")

    def interrupt(self) -> None:
        """Shut the socket down so a `receive` blocked in another thread returns."""
        sock = getattr(self._connection, "_sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        with contextlib.suppress(rex.RedisError, OSError):
            if connection is not None:
                connection.disconnect()
            self._pool.disconnect()
