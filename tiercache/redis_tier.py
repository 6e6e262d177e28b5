"""The L2 tier over redis-py's public API: the sync and async twins and their one boundary.

Each tier runs the requests the policy yields on connections borrowed from its client's
pool, and translates every redis-py exception into a `CacheError` subclass at this
boundary. A tier keeps the connections it borrowed for its next calls (redis-py's
`get_connection` bookkeeping costs as much as a loopback round trip) and gives them
all back in `close`. `max_connections` bounds them: a call waits for a free one, and a
wait that runs out is a `CacheTimeout` that the breaker does not count, since Redis
did not fail. Only reads are retried after a connection error; a write that may have
reached Redis is never sent twice.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

import redis.exceptions as rex

from tiercache.breaker import CircuitBreaker
from tiercache.commands import READS, SCRIPTS, Command, Fill, Request
from tiercache.errors import (
    CacheError,
    CacheReadOnly,
    CacheTimeout,
    CacheUnavailable,
    CircuitOpen,
    CorruptData,
    NotAnInteger,
)
from tiercache.topology import Topology
from tiercache.tracking import Claim, Tracking, packed

__all__ = ["AsyncRedisTier", "RedisTier", "error_from"]

_PASSWORD_IN_TEXT = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")

#: Longest a sync read waits for its key's busy fill connection before reading through
#: the pool unfilled. Measured, 16 threads missing 3,200 keys on one fill connection:
#: skipping filled 230 of them, a 5 ms bound all 3,200, at the same time per miss.
FILL_WAIT = 0.002


def error_from(exc: rex.RedisError | OSError) -> CacheError:
    """Translate a redis-py (or socket) exception into the `CacheError` naming its cause."""
    text = _PASSWORD_IN_TEXT.sub(r"\1***@", str(exc))
    if isinstance(exc, OSError):  # a TLS or socket error redis-py did not wrap
        return CacheUnavailable(f"Redis is unreachable: {text}")
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


def _commands(request: Command | list[Command]) -> Sequence[Command]:
    return (request,) if isinstance(request, tuple) else request


def _with_sources(commands: Sequence[Command]) -> list[Command]:
    """Return `commands` with every EVALSHA as EVAL of its script's source."""
    return [
        ("EVAL", SCRIPTS[str(c[1])].source, *c[2:]) if c[0] == "EVALSHA" else c for c in commands
    ]


def _unknown_scripts(replies: list[object]) -> list[int]:
    """Return where a reply says NOSCRIPT: that script did not run, so resending is safe."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, rex.NoScriptError)]


class _Boundary:
    """What both twins share: the breaker, what may be retried, errors and replies."""

    def __init__(
        self,
        topology: Topology,
        breaker: CircuitBreaker,
        tracking: Tracking | None,
        callbacks: dict[Any, Any],
    ) -> None:
        self.topology = topology
        self.breaker = breaker
        self.tracking = tracking
        settings = topology.settings
        self._max = settings.max_connections
        self._wait = settings.socket_timeout
        self._callbacks = callbacks

    def _check_breaker(self) -> None:
        if not self.breaker.allow():
            raise CircuitOpen("Redis circuit is open after repeated failures; not trying")

    def _claim(self, fill: Fill, wait: float) -> Claim | None:
        """Take the fill connections of a tracked read, or None to read through the pool.

        None when the process is deaf (no fills then) or a connection stays busy for
        `wait` seconds: a miss does not queue behind others' fills for longer, it only
        leaves L1 unfilled.
        """
        tracking = self.tracking
        if tracking is None or not tracking.usable():
            return None
        claim = tracking.claim(fill, wait)
        if claim is not None and not self.breaker.allow():
            tracking.release(claim)
            raise CircuitOpen("Redis circuit is open after repeated failures; not trying")
        return claim

    def _no_free_connection(self) -> NoReturn:
        # Every connection is busy: Redis did not fail, so the breaker is not told.
        raise CacheTimeout(
            f"no free Redis connection within {self._wait} s (max_connections={self._max})"
        )

    def _fail(self, exc: rex.RedisError | OSError) -> NoReturn:
        error = error_from(exc)
        if isinstance(error, CacheUnavailable) and not isinstance(error, CacheReadOnly):
            self.breaker.record_failure()
        else:
            self.breaker.record_success()  # the server answered, if with an error
        raise error from None

    @staticmethod
    def _retryable(commands: Sequence[Command]) -> bool:
        """Return whether sending `commands` twice is harmless (reads only)."""
        return all(c[0] in READS for c in commands)

    def _shape(self, commands: Sequence[Command], replies: list[object], single: bool) -> object:
        """Return the reply of a request: parsed, the first error reply raised."""
        for reply in replies:
            if isinstance(reply, rex.RedisError):
                raise reply
        parsed = [
            reply if (callback := self._callbacks.get(c[0])) is None else callback(reply)
            for c, reply in zip(commands, replies, strict=True)
        ]
        return parsed[0] if single else parsed


class RedisTier(_Boundary):
    """Runs requests on the sync client of a topology, from any thread."""

    def __init__(
        self, topology: Topology, breaker: CircuitBreaker, tracking: Tracking | None = None
    ) -> None:
        self.client = topology.sync_client()
        super().__init__(topology, breaker, tracking, dict(self.client.response_callbacks))
        self._pool = self.client.connection_pool
        self._idle: list[Any] = []  # list.pop and list.append are atomic: no lock needed
        self._pid = os.getpid()
        self._slots = threading.BoundedSemaphore(self._max) if self._max else None

    def execute(self, request: Request) -> object:
        """Run one command, a pipeline or a tracked read; raise `CacheError` on trouble."""
        if isinstance(request, Fill):
            return self._fill(request)
        return self._send(request)

    def _send(self, request: Command | list[Command], *, allowed: bool = False) -> object:
        if not allowed:  # `allowed`: this call already passed the breaker
            self._check_breaker()
        if self._slots is not None and not self._slots.acquire(timeout=self._wait):
            self._no_free_connection()
        try:
            commands = _commands(request)
            try:
                replies = self._run(commands)
                if stale := _unknown_scripts(replies):  # after a restart or SCRIPT FLUSH
                    again = self._run(_with_sources([commands[i] for i in stale]))
                    for i, reply in zip(stale, again, strict=True):
                        replies[i] = reply
                reply = self._shape(commands, replies, isinstance(request, tuple))
            except (rex.RedisError, OSError) as exc:
                self._fail(exc)
        finally:
            if self._slots is not None:
                self._slots.release()
        self.breaker.record_success()
        return reply

    def _fill(self, fill: Fill) -> tuple[object, bool]:
        claim = self._claim(fill, FILL_WAIT)
        if claim is None:
            return self._send(fill.write or fill.command), False
        assert self.tracking is not None
        try:
            try:
                reply = self.tracking.run(claim)
            except rex.ConnectionError:
                if fill.write is not None:
                    raise  # it may have been applied: never send a write twice
                # The pool's connections heal; the breaker already let this call through.
                return self._send(fill.command, allowed=True), False
        except (rex.RedisError, OSError) as exc:
            self._fail(exc)
        self.breaker.record_success()
        return reply, True

    def _borrow(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
            self._idle, self._pid = [], os.getpid()
        try:
            connection = self._idle.pop()
        except IndexError:
            return self._pool.get_connection()  # checked and connected by the pool
        try:
            if connection.can_read(timeout=0):  # data or EOF while idle: start afresh
                connection.disconnect()
        except (rex.ConnectionError, OSError):
            connection.disconnect()  # the next send reconnects
        return connection

    def _run(self, commands: Sequence[Command]) -> list[object]:
        connection = self._borrow()
        try:
            try:
                replies = self._roundtrip(connection, commands)
            except rex.ConnectionError:
                if not self._retryable(commands):
                    raise  # it may have been applied: never send a write twice
                connection.disconnect()
                replies = self._roundtrip(connection, commands)
        except BaseException:
            connection.disconnect()  # a reply may be half read: never reuse as is
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        return replies

    @staticmethod
    def _roundtrip(connection: Any, commands: Sequence[Command]) -> list[object]:
        connection.send_packed_command(packed(connection, commands), check_health=False)
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except rex.ResponseError as error:  # in sync: read the remaining replies
                replies.append(error)
        return replies

    def close(self) -> None:
        """Close every connection of the client's pool, those in use included."""
        self._idle = []
        self._pool.disconnect(inuse_connections=True)
        self.client.close()


class AsyncRedisTier(_Boundary):
    """Runs requests on an asyncio client of a topology, bound to one event loop."""

    def __init__(
        self, topology: Topology, breaker: CircuitBreaker, tracking: Tracking | None = None
    ) -> None:
        self.client = topology.async_client()
        super().__init__(topology, breaker, tracking, dict(self.client.response_callbacks))
        self._pool = self.client.connection_pool
        self._idle: list[Any] = []
        self._slots = asyncio.BoundedSemaphore(self._max) if self._max else None

    async def execute(self, request: Request) -> object:
        """Run one command, a pipeline or a tracked read; raise `CacheError` on trouble."""
        if isinstance(request, Fill):
            return await self._fill(request)
        return await self._send(request)

    async def _send(self, request: Command | list[Command], *, allowed: bool = False) -> object:
        if not allowed:
            self._check_breaker()
        slots = self._slots
        if slots is not None:
            if slots.locked():
                try:
                    await asyncio.wait_for(slots.acquire(), self._wait)
                except TimeoutError:
                    self._no_free_connection()
            else:
                await slots.acquire()
        try:
            commands = _commands(request)
            try:
                replies = await self._run(commands)
                if stale := _unknown_scripts(replies):
                    again = await self._run(_with_sources([commands[i] for i in stale]))
                    for i, reply in zip(stale, again, strict=True):
                        replies[i] = reply
                reply = self._shape(commands, replies, isinstance(request, tuple))
                if inspect.isawaitable(reply):  # some asyncio callbacks are coroutines
                    reply = await reply
            except (rex.RedisError, OSError) as exc:
                self._fail(exc)
        finally:
            if slots is not None:
                slots.release()
        self.breaker.record_success()
        return reply

    async def _fill(self, fill: Fill) -> tuple[object, bool]:
        claim = self._claim(fill, 0.0)  # an event loop never blocks on a lock
        if claim is None:
            return await self._send(fill.write or fill.command), False
        assert self.tracking is not None
        # The fill connections are the process's, shared by every thread and loop: a
        # worker thread runs the round trip, so the event loop never blocks on it.
        loop = asyncio.get_running_loop()
        try:
            try:
                reply = await loop.run_in_executor(self.tracking.executor, self.tracking.run, claim)
            except rex.ConnectionError:
                if fill.write is not None:
                    raise  # it may have been applied: never send a write twice
                return await self._send(fill.command, allowed=True), False
        except (rex.RedisError, OSError) as exc:
            self._fail(exc)
        self.breaker.record_success()
        return reply, True

    async def _borrow(self) -> Any:
        try:
            connection = self._idle.pop()
        except IndexError:
            return await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            if await connection.can_read():
                await connection.disconnect()
        except (rex.ConnectionError, OSError):
            await connection.disconnect()
        return connection

    async def _run(self, commands: Sequence[Command]) -> list[object]:
        connection = await self._borrow()
        try:
            try:
                replies = await self._roundtrip(connection, commands)
            except rex.ConnectionError:
                if not self._retryable(commands):
                    raise
                await connection.disconnect()
                replies = await self._roundtrip(connection, commands)
        except BaseException:  # a timeout or a cancellation may leave a reply half read
            await connection.disconnect(nowait=True)
            self._idle.append(connection)
            raise
        self._idle.append(connection)
        return replies

    @staticmethod
    async def _roundtrip(connection: Any, commands: Sequence[Command]) -> list[object]:
        await connection.send_packed_command(packed(connection, commands), check_health=False)
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except rex.ResponseError as error:
                replies.append(error)
        return replies

    async def aclose(self) -> None:
        """Close every connection of the client's pool, those in use included."""
        self._idle = []
        await self._pool.disconnect(inuse_connections=True)
        await self.client.aclose()
