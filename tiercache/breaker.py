"""A circuit breaker: after repeated L2 failures, stop trying for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed: calls go through. Open: calls fail at once. Half-open: one probe goes.

    `on_recover` runs when a probe succeeds after the circuit was open: whatever the
    other processes wrote meanwhile was never announced to us, so callers use it to
    clear their L1.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_timeout: float = 2.0,
        *,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._timer = timer
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._listeners: list[Callable[[], None]] = []
        self.times_opened = 0
        #: Outages: closed → open transitions. A failed half-open probe reopens the
        #: circuit (counted in `times_opened`) but is the same outage.
        self.outages = 0

    @property
    def state(self) -> BreakerState:
        """Return the current state (an open circuit past its cool-down reads half-open)."""
        if self._state == "open" and self._timer() >= self._opened_at + self.reset_timeout:
            return "half_open"
        return self._state

    @property
    def failures(self) -> int:
        """Return the consecutive failures counted since the last success."""
        return self._failures

    def on_recover(self, listener: Callable[[], None]) -> None:
        """Call `listener` each time the circuit closes after having been open."""
        self._listeners.append(listener)

    def probe_now(self) -> None:
        """Let the next call probe at once: what failed was replaced (a new master)."""
        with self._lock:
            if self._state == "open":
                self._opened_at = self._timer() - self.reset_timeout

    def allow(self) -> bool:
        """Return whether a call may go to the network now."""
        if self._state == "closed":  # the hot path takes no lock
            return True
        with self._lock:
            if self._state == "open":
                if self._timer() < self._opened_at + self.reset_timeout:
                    return False
                self._state = "half_open"
                self._probe_in_flight = False
            if self._probe_in_flight:
                return False
            self._probe_in_flight = True
            return True

    def record_success(self) -> None:
        """Note a call that reached the server; closes a half-open circuit."""
        if self._state == "closed" and not self._failures:
            return
        with self._lock:
            recovered = self._state != "closed"
            self._state = "closed"
            self._failures = 0
            self._probe_in_flight = False
        if recovered:
            for listener in list(self._listeners):
                listener()

    def record_failure(self) -> None:
        """Note a call that could not reach the server."""
        with self._lock:
            self._failures += 1
            self._probe_in_flight = False
            if self._state == "half_open" or self._failures >= self.failure_threshold:
                if self._state == "closed":
                    self.outages += 1
                if self._state != "open":
                    self.times_opened += 1
                self._state = "open"
                self._opened_at = self._timer()
