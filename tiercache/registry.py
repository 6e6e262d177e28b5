"""Process-wide state in one place: shared buses, listeners, breakers, clients and L1s.

Everything here is per process: after `fork` the child starts afresh (new instance
id, no inherited connections or listeners). Buses survive a fork, renamed and with
their L1s emptied, so caches built before it (gunicorn --preload) and after it still
share one bus; each starts its own listener when first used. `reset()` returns to a
blank state for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.listener import Listener
from tiercache.memory import MemoryTier

__all__ = [
    "breaker_for",
    "bus_for",
    "instance_id",
    "listener_for",
    "per_loop",
    "reset",
    "shared",
    "shared_l1",
]

T = TypeVar("T")

_lock = threading.RLock()
_instance_id = uuid.uuid4().hex[:12]
_buses: dict[str, LocalBus] = {}
_breakers: dict[str, CircuitBreaker] = {}
_l1s: dict[Hashable, MemoryTier] = {}
_shared: dict[Hashable, object] = {}
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, object]] = (
    weakref.WeakKeyDictionary()
)
_closers: list[Callable[[], None]] = []
_listeners: dict[LocalBus, Listener] = {}


def instance_id() -> str:
    """Return this process's id, which tells its own invalidation messages apart."""
    return _instance_id


def bus_for(location: str, channel: str) -> LocalBus:
    """Return the bus of the Redis database at `location` (a redacted URL)."""
    with _lock:
        bus = _buses.get(location)
        if bus is None:
            bus = _buses[location] = LocalBus(channel, _instance_id)
        return bus


def listener_for(bus: LocalBus, factory: Callable[[], Listener]) -> Listener:
    """Return the listener of `bus` in this process, creating it with `factory` once."""
    with _lock:
        listener = _listeners.get(bus)
        if listener is None:
            listener = _listeners[bus] = factory()
        return listener


def breaker_for(location: str, factory: Callable[[], CircuitBreaker]) -> CircuitBreaker:
    """Return the breaker of the Redis server at `location`, shared by sync and async."""
    with _lock:
        breaker = _breakers.get(location)
        if breaker is None:
            breaker = _breakers[location] = factory()
        return breaker


def shared_l1(key: Hashable, factory: Callable[[], MemoryTier]) -> MemoryTier:
    """Return the L1 registered under `key`, creating it with `factory` once."""
    with _lock:
        l1 = _l1s.get(key)
        if l1 is None:
            l1 = _l1s[key] = factory()
        return l1


def shared(key: Hashable, factory: Callable[[], T], close: Callable[[T], None] | None = None) -> T:
    """Return the process-wide object under `key` (a client, a listener...)."""
    with _lock:
        if key not in _shared:
            made = factory()
            _shared[key] = made
            if close is not None:
                _closers.append(lambda: close(made))
        return _shared[key]  # type: ignore[return-value]


def per_loop(key: Hashable, factory: Callable[[], T]) -> T:
    """Return the object under `key` for the running event loop (async clients)."""
    loop = asyncio.get_running_loop()
    objects = _per_loop.get(loop)
    if objects is None:
        with _lock:
            objects = _per_loop.setdefault(loop, {})
    made = objects.get(key)
    if made is None:
        made = objects[key] = factory()
    return made  # type: ignore[return-value]


def reset() -> None:
    """Forget every shared object (closing what can be closed); for tests."""
    global _instance_id
    with _lock:
        closers = list(_closers)
        _closers.clear()
        listeners = list(_listeners.values())
        _listeners.clear()
        _buses.clear()
        _breakers.clear()
        _l1s.clear()
        _shared.clear()
        _per_loop.clear()
        _instance_id = uuid.uuid4().hex[:12]
    for listener in listeners:
        listener.stop()
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
    _l1s.clear()
    _shared.clear()
    _per_loop.clear()
    _instance_id = uuid.uuid4().hex[:12]
    for bus in _buses.values():
        bus.after_fork(_instance_id)


os.register_at_fork(after_in_child=_after_fork_in_child)
