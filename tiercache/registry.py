"""Process-wide state in one place: shared buses, listeners, breakers and clients.

Everything here is per process: after `fork` the child starts afresh (new instance
id, no inherited connections or listeners). Buses survive a fork, renamed and with
their L1s emptied, so caches built before it (gunicorn --preload) and after it still
share one bus; each starts its own listener when first used. `reset()` returns to a
blank state for tests.

Objects kept per event loop (asyncio clients) are closed when their loop shuts down:
`asyncio.run`, asgiref's `async_to_sync` and Django's test runner all end a loop with
`loop.shutdown_asyncgens()`, which closes an async generator the registry starts in
each loop. Without that, a process that runs a fresh loop per request (async views
under WSGI) would keep one client, and its sockets, per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import TypeVar

from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.listener import Listener

__all__ = [
    "breaker_for",
    "bus_for",
    "close_loop",
    "instance_id",
    "listener_for",
    "per_loop",
    "pop_per_loop",
    "reset",
    "shared",
    "stop_listener",
]

T = TypeVar("T")

_lock = threading.RLock()
_instance_id = uuid.uuid4().hex[:12]
_buses: dict[str, LocalBus] = {}
_breakers: dict[Hashable, CircuitBreaker] = {}
_shared: dict[Hashable, object] = {}
_closers: list[Callable[[], None]] = []
#: By what each listener keeps informed: a bus, or one cluster primary's ear.
_listeners: dict[Hashable, Listener] = {}


class _LoopObjects:
    """What one event loop holds, and the async generator that closes it at loop end."""

    def __init__(self) -> None:
        self.objects: dict[Hashable, object] = {}
        self.closers: dict[Hashable, Callable[[object], Awaitable[None]]] = {}
        self.guard: AsyncIterator[None] | None = None

    async def aclose(self) -> None:
        objects, closers = dict(self.objects), dict(self.closers)
        self.objects.clear()
        self.closers.clear()
        for key, close in closers.items():
            with contextlib.suppress(Exception):  # best effort while a loop ends
                await close(objects[key])


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopObjects] = (
    weakref.WeakKeyDictionary()
)


def instance_id() -> str:
    """Return this process's id, which tells its own invalidation messages apart."""
    return _instance_id


def bus_for(location: str, channel: str) -> LocalBus:
    """Return the bus of the Redis database at `location` (a redacted URL)."""
    with _lock:
        bus = _buses.get(location)
        if bus is None:
            bus = _buses[location] = LocalBus(channel, _instance_id, location=location)
        return bus


def listener_for(audience: Hashable, factory: Callable[[], Listener]) -> Listener:
    """Return the listener of `audience` (a bus, or a primary's ear), made by `factory` once."""
    with _lock:
        listener = _listeners.get(audience)
        if listener is None:
            listener = _listeners[audience] = factory()
        return listener


def stop_listener(audience: Hashable) -> None:
    """Stop and forget the listener of `audience`, if any (a node stopped being a primary)."""
    with _lock:
        listener = _listeners.pop(audience, None)
    if listener is not None:
        listener.stop()


def breaker_for(key: Hashable, factory: Callable[[], CircuitBreaker]) -> CircuitBreaker:
    """Return the breaker under `key` (a node and the breaker's settings), sync and async."""
    with _lock:
        breaker = _breakers.get(key)
        if breaker is None:
            breaker = _breakers[key] = factory()
        return breaker


def shared(key: Hashable, factory: Callable[[], T], close: Callable[[T], None] | None = None) -> T:
    """Return the process-wide object under `key` (a client, a listener...)."""
    with _lock:
        if key not in _shared:
            made = factory()
            _shared[key] = made
            if close is not None:
                _closers.append(lambda: close(made))
        return _shared[key]  # type: ignore[return-value]


def per_loop(
    key: Hashable,
    factory: Callable[[], T],
    close: Callable[[T], Awaitable[None]] | None = None,
) -> T:
    """Return the object under `key` for the running event loop (async clients).

    `close` runs in that loop when the loop shuts down its async generators.
    """
    loop = asyncio.get_running_loop()
    held = _per_loop.get(loop)
    if held is None:
        held = _watch(loop)
    made = held.objects.get(key)
    if made is None:
        made = held.objects[key] = factory()
        if close is not None:
            held.closers[key] = close  # type: ignore[assignment]
    return made  # type: ignore[return-value]


def _watch(loop: asyncio.AbstractEventLoop) -> _LoopObjects:
    """Start holding objects for `loop`, closed by the loop's own shutdown."""
    with _lock:
        for other in [other for other in _per_loop if other.is_closed()]:
            _per_loop.pop(other, None)  # ended without shutdown_asyncgens: let GC close
        held = _per_loop.get(loop)
        if held is not None:
            return held
        held = _per_loop[loop] = _LoopObjects()

    async def guard() -> AsyncIterator[None]:
        try:
            yield
        finally:
            # The running loop, not a captured one: this frame must not keep it alive.
            running = asyncio.get_running_loop()
            if _per_loop.get(running) is held:
                del _per_loop[running]
            await held.aclose()

    # The first step registers the generator with the running loop (asyncio's
    # firstiter hook) and stops at `yield`; the loop then holds it only weakly.
    held.guard = guard()
    with contextlib.suppress(StopIteration):
        held.guard.__anext__().send(None)  # type: ignore[attr-defined]
    return held


def pop_per_loop(key: Hashable) -> object | None:
    """Forget the running loop's object under `key` and return it (its owner closes it)."""
    held = _per_loop.get(asyncio.get_running_loop())
    if held is None:
        return None
    held.closers.pop(key, None)
    return held.objects.pop(key, None)


async def close_loop() -> None:
    """Close what the running loop holds now (tests that end a loop their own way)."""
    held = _per_loop.pop(asyncio.get_running_loop(), None)
    if held is not None:
        await held.aclose()


def reset() -> None:
    """Forget every shared object (closing what can be closed); for tests."""
    global _instance_id
    with _lock:
        closers = list(_closers)
        _closers.clear()
        listeners = list(_listeners.values())
        _listeners.clear()
        trackings = [bus.tracking for bus in _buses.values() if bus.tracking is not None]
        ears = [bus.ears for bus in _buses.values() if bus.ears is not None]
        _buses.clear()
        _breakers.clear()
        _shared.clear()
        _per_loop.clear()
        _instance_id = uuid.uuid4().hex[:12]
    for listener in listeners:
        listener.stop()
    for tracking in trackings:
        tracking.close()
    for per_node in ears:
        per_node.close()
    for close in closers:
        with contextlib.suppress(Exception):  # best effort while tearing down
            close()


def _after_fork_in_child() -> None:
    # Inherited sockets and listener threads belong to the parent: drop them unclosed.
    # A lock held by another parent thread at fork time would never be released here.
    global _instance_id, _lock
    _lock = threading.RLock()
    _closers.clear()
    _listeners.clear()
    _breakers.clear()
    _shared.clear()
    _per_loop.clear()
    _instance_id = uuid.uuid4().hex[:12]
    for bus in _buses.values():
        bus.after_fork(_instance_id)


os.register_at_fork(after_in_child=_after_fork_in_child)
