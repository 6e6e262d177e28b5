"""What a cache's resilience parts are doing right now: its breaker and its bus."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol, TypedDict

from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus

__all__ = ["BusState", "Guarded", "ResilienceStats", "resilience_stats"]

#: off: no other process to hear (no Redis, or invalidation off, or no L1);
#: starting: the listener has not subscribed yet in this process; up: hearing others;
#: down: deaf (disconnected or reconnecting) - no L1 fills until it is up again.
BusState = Literal["off", "starting", "up", "down"]


class Guarded(Protocol):
    """A cache with a breaker and a bus (`TieredCache`, the Django backend, ...)."""

    @property
    def breaker(self) -> CircuitBreaker | None: ...

    @property
    def bus(self) -> LocalBus: ...


class ResilienceStats(TypedDict):
    """The state of one cache's circuit breaker and invalidation bus in this process."""

    #: "closed", "open", "half_open", or "none" (no Redis).
    breaker_state: str
    breaker_times_opened: int
    breaker_failures: int
    bus_state: BusState
    #: How other processes' writes reach L1: "tracking", "broadcast" (the server refused
    #: tracking, or asked for), or "off".
    bus_mode: str
    bus_healthy: bool
    #: Resubscribes after the first (each one cleared L1).
    bus_reconnects: int
    bus_messages: int
    #: Seconds since the last message was heard (None: none yet).
    bus_last_message_age: float | None
    bus_last_error: str | None


def _bus_state(bus: LocalBus) -> BusState:
    if not bus.listening:
        return "off"
    if bus.healthy:
        return "up"
    return "starting" if bus.subscribed_at is None and bus.last_error is None else "down"


def resilience_stats(
    cache: Guarded, *, timer: Callable[[], float] = time.monotonic
) -> ResilienceStats:
    """Return the breaker and bus state of `cache`, as metrics and admin pages show it."""
    breaker, bus = cache.breaker, cache.bus
    heard = bus.last_message_at
    return ResilienceStats(
        breaker_state=breaker.state if breaker is not None else "none",
        breaker_times_opened=breaker.times_opened if breaker is not None else 0,
        breaker_failures=breaker.failures if breaker is not None else 0,
        bus_state=_bus_state(bus),
        bus_mode=bus.mode,
        bus_healthy=bus.healthy,
        bus_reconnects=bus.reconnects,
        bus_messages=bus.messages,
        bus_last_message_age=None if heard is None else max(0.0, timer() - heard),
        bus_last_error=bus.last_error,
    )
