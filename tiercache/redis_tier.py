"""The L2 tier over redis-py: the only module that imports `redis`.

It runs the requests the policy yields, on redis-py's sync or asyncio client, and
translates every redis-py exception into a `CacheError` subclass at this boundary.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

from tiercache.breaker import CircuitBreaker
from tiercache.commands import SCRIPTS, Arg, Command, Request
from tiercache.errors import (
    CacheError,
    CacheReadOnly,
    CacheTimeout,
    CacheUnavailable,
    CircuitOpen,
    CorruptData,
    NotAnInteger,
)

__all__ = ["AsyncRedisTier", "RedisSettings", "RedisTier", "redact_url"]


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis; timeouts are small so a sick Redis fails fast."""

    url: str
    connect_timeout: float = 0.25
    socket_timeout: float = 0.5
    max_connections: int | None = None

    def client_options(self) -> dict[str, object]:
        """Return the keyword arguments shared by the sync and async clients."""
        options: dict[str, object] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            # One immediate retry heals a pooled connection that a server restart
            # closed; more, or a backoff, would only make a dead server slower to see.
            "retry": Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,)),
            "health_check_interval": 0,
        }
        if self.max_connections is not None:
            options["max_connections"] = self.max_connections
        return options

    def sync_client(self) -> redis.Redis:
        """Return a new sync client with its own connection pool."""
        return redis.Redis.from_url(self.url, **self.client_options())

    def async_client(self) -> redis.asyncio.Redis:
        """Return a new asyncio client (bind it to one event loop only)."""
        # redis.asyncio's default pool refuses the 101st concurrent command outright, and
        # the breaker would take that for an outage: wait for a free connection instead.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self.url, timeout=self.socket_timeout, **self.client_options()
        )
        return redis.asyncio.Redis.from_pool(pool)


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


_PASSWORD_IN_TEXT = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def _error_from(exc: rex.RedisError) -> CacheError:
    """Translate a redis-py exception into the `CacheError` that names its cause."""
    text = _PASSWORD_IN_TEXT.sub(r"\1***@", str(exc))
    if isinstance(exc, rex.TimeoutError):
        return CacheTimeout(f"Redis did not answer in time: {text}")
    if isinstance(exc, rex.ReadOnlyError | rex.OutOfMemoryError):
        return CacheReadOnly(f"Redis refused the write: {text}")
    if isinstance(exc, rex.AuthenticationError | rex.AuthorizationError):
        return CacheUnavailable("Redis refused our credentials")
    if isinstance(exc, rex.ConnectionError | rex.BusyLoadingError):
        return CacheUnavailable(f"Redis is unreachable: {text}")
    if isinstance(exc, rex.ResponseError):
        if "not an integer" in text or "overflow" in text:
            return NotAnInteger(f"value is not an integer: {text}")
        if "WRONGTYPE" in text:
            return CorruptData(f"key holds a Redis type other than a string: {text}")
        if "READONLY" in text:
            return CacheReadOnly(f"Redis refused the write: {text}")
    return CacheError(f"Redis error: {text}")


def _with_source(command: Command) -> Command:
    """Return an EVALSHA command as EVAL with the script's source."""
    return ("EVAL", SCRIPTS[str(command[1])].source, *command[2:])


try:
    from hiredis import pack_command as _pack
    from redis._parsers import _HiredisParser
except ImportError:  # no hiredis, or another redis-py layout: the public path is taken
    _pack = None  # type: ignore[assignment]


def _wire_roundtrip(connection: Any, command: tuple[Arg, ...]) -> object:
    """Send `command` and read its reply straight on a connection's socket and reader.

    `Connection.send_command` and `read_response` add argument re-packing, health and
    push-message handling we do not use: about a sixth of a loopback GET's time. This
    keeps what matters (hiredis packs, redis-py's own parser reads and maps error
    replies to redis-py exceptions) and raises what `send_command` would.
    """
    if connection._sock is None:
        connection.connect()
    try:
        connection._sock.sendall(_pack(command))  # type: ignore[arg-type]
    except TimeoutError:  # socket.timeout
        raise rex.TimeoutError("Timeout writing to socket") from None
    except OSError as error:
        raise rex.ConnectionError(f"Error while writing to socket: {error}") from None
    reply = connection._parser.read_response()
    if isinstance(reply, rex.RedisError):
        raise reply
    return reply


def _public_roundtrip(connection: Any, command: tuple[Arg, ...]) -> object:
    """Send `command` and read its reply through redis-py's public connection API."""
    connection.send_command(*command)
    return connection.read_response()


def _has_wire_path(connection: Any) -> bool:
    """Return whether `connection` is the kind `_wire_roundtrip` knows (hiredis parser)."""
    return (
        _pack is not None
        and type(getattr(connection, "_parser", None)) is _HiredisParser
        and hasattr(connection, "_sock")
    )


class _Boundary:
    """What both tiers share: the breaker check and the exception translation."""

    def __init__(self, breaker: CircuitBreaker) -> None:
        self.breaker = breaker

    def _check_breaker(self) -> None:
        if not self.breaker.allow():
            raise CircuitOpen("Redis circuit is open after repeated failures; not trying")

    def _fail(self, exc: rex.RedisError | OSError) -> NoReturn:
        if isinstance(exc, OSError):  # a TLS or socket error redis-py did not wrap
            self.breaker.record_failure()
            raise CacheUnavailable(f"Redis is unreachable: {exc}") from None
        error = _error_from(exc)
        if isinstance(error, CacheUnavailable) and not isinstance(error, CacheReadOnly):
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        raise error from None


class RedisTier(_Boundary):
    """Runs requests on a sync `redis.Redis`.

    Single commands skip `Redis.execute_command`: in redis-py 8 its pool bookkeeping,
    retry wrapper and telemetry hooks cost as much as the round trip itself. Each call
    takes an idle connection of the client's own class and settings, sends, reads and
    gives it back; connections are per process (dropped after a fork).
    """

    def __init__(self, client: redis.Redis, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.client = client
        self._callbacks: dict[str, Callable[[Any], object]] = dict(client.response_callbacks)
        self._idle: list[Any] = []  # list.pop and list.append are atomic: no lock needed
        self._pid = os.getpid()
        self._roundtrip: Callable[[Any, Command], object] | None = None  # by the first

    def execute(self, request: Request) -> object:
        """Run one command or a pipeline; raise `CacheError` on trouble."""
        self._check_breaker()
        try:
            try:
                reply = self._send(request)
            except rex.NoScriptError:
                reply = self._send(self._resend_scripts(request))
        except (rex.RedisError, OSError) as exc:
            self._fail(exc)
        self.breaker.record_success()
        return reply

    def _send(self, request: Request) -> object:
        if isinstance(request, tuple):
            return self._send_one(request)
        pipe = self.client.pipeline(transaction=False)
        for command in request:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return pipe.execute()

    def _send_one(self, command: Command) -> object:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle, self._pid = [], os.getpid()
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self.client.connection_pool.make_connection()
        roundtrip = self._roundtrip
        if roundtrip is None:
            roundtrip = self._roundtrip = (
                _wire_roundtrip if _has_wire_path(connection) else _public_roundtrip
            )
        try:
            try:
                reply = roundtrip(connection, command)
            except rex.ConnectionError:
                # A pooled connection that a server restart closed fails once; a dead
                # server fails again at once (connection refused), so retry just once.
                connection.disconnect()
                reply = roundtrip(connection, command)
        except rex.ResponseError:
            self._idle.append(connection)  # an error reply leaves the connection in sync
            raise
        except BaseException:
            connection.disconnect()  # a reply may be half read: never reuse as is
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        callback = self._callbacks.get(str(command[0]))
        return reply if callback is None else callback(reply)

    @staticmethod
    def _resend_scripts(request: Request) -> Request:
        if isinstance(request, tuple):
            return _with_source(request) if request[0] == "EVALSHA" else request
        return [_with_source(c) if c[0] == "EVALSHA" else c for c in request]

    def close(self) -> None:
        """Close the idle connections and the client's pool."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.disconnect()
        self.client.close()


class AsyncRedisTier(_Boundary):
    """Runs requests on a `redis.asyncio.Redis` bound to one event loop.

    As `RedisTier`, single commands go straight to an idle connection; a connection is
    used by one task at a time, so concurrent tasks use several.
    """

    def __init__(self, client: redis.asyncio.Redis, breaker: CircuitBreaker) -> None:
        super().__init__(breaker)
        self.client = client
        self._callbacks: dict[Any, Any] = dict(client.response_callbacks)
        self._idle: list[Any] = []

    async def execute(self, request: Request) -> object:
        """Run one command or a pipeline; raise `CacheError` on trouble."""
        self._check_breaker()
        try:
            try:
                reply = await self._send(request)
            except rex.NoScriptError:
                reply = await self._send(RedisTier._resend_scripts(request))
        except (rex.RedisError, OSError) as exc:
            self._fail(exc)
        self.breaker.record_success()
        return reply

    async def _send(self, request: Request) -> object:
        if isinstance(request, tuple):
            return await self._send_one(request)
        pipe = self.client.pipeline(transaction=False)
        for command in request:
            pipe.execute_command(*command)
        return await pipe.execute()

    async def _send_one(self, command: Command) -> object:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            try:
                await connection.send_command(*command)
                reply = await connection.read_response()
            except rex.ConnectionError:
                await connection.disconnect()  # closed by a server restart: retry once
                await connection.send_command(*command)
                reply = await connection.read_response()
        except rex.ResponseError:
            self._idle.append(connection)
            raise
        except BaseException:  # a timeout or a cancellation may leave a reply half read
            await connection.disconnect(nowait=True)
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        callback = self._callbacks.get(str(command[0]))
        if callback is None:
            return reply
        parsed = callback(reply)
        return await parsed if inspect.isawaitable(parsed) else parsed

    async def aclose(self) -> None:
        """Close the idle connections and the client's pool."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect()
        await self.client.aclose()
