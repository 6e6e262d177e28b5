"""The invalidation listener: one daemon thread per process and bus, hearing Redis.

It subscribes through a `Subscriber` (the Redis adapters are in
`tiercache.redis_pubsub`: Redis's own invalidations in tracking mode, the shared
channel in broadcast mode) and applies every invalidation to the L1s of its bus. A
subscriber that finds the server refusing tracking raises `TrackingRefused`; the
listener then switches the bus to broadcast and subscribes with `fallback`. It keeps
the bus honest about what it may have missed:

* on every (re)subscribe it clears the bus's L1s, then marks the bus healthy: whatever
  was said while it was not listening is gone with them;
* it marks the bus unhealthy as soon as the connection fails (no L1 fills meanwhile);
* a heartbeat finds a connection that died silently: after `heartbeat` seconds without
  traffic it sends PING, and a pong that does not come within another `heartbeat`
  seconds counts as a failure;
* it reconnects with a short, growing, jittered backoff;
* every `heartbeat` seconds it also calls `tick` (tracking: find fill connections
  that died while idle).

One thread serves sync and asyncio users alike: a message costs microseconds of work
under the L1's lock, a thread hears it even while an event loop is busy, and it is not
tied to any one loop (Django runs several).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from tiercache.errors import CacheError, CacheTimeout
from tiercache.messages import Invalidation

__all__ = ["PONG", "Audience", "Listener", "Pong", "Subscriber", "TrackingRefused"]

logger = logging.getLogger("tiercache")


class Pong:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PONG"


#: What `Subscriber.receive` returns for the reply to a heartbeat PING.
PONG: Final = Pong()


class TrackingRefused(CacheError):
    """The server refuses `CLIENT TRACKING` (renamed or forbidden CLIENT command)."""


class Audience(Protocol):
    """What a listener keeps informed: a `LocalBus`, or one cluster primary's share of it."""

    location: str
    #: False while it may have missed messages (no L1 fills meanwhile).
    healthy: bool
    subscribed_at: float | None
    last_message_at: float | None
    messages: int
    reconnects: int
    last_error: str | None

    def clear_all(self) -> None:
        """Drop what the listener may have missed (it just subscribed again)."""
        ...

    def receive(self, invalidation: Invalidation) -> None:
        """Apply one invalidation heard."""
        ...

    def fall_back(self, reason: str) -> None:
        """Switch to broadcast: the server refused tracking."""
        ...


class Subscriber(Protocol):
    """One pub/sub connection. Every method but `interrupt` raises `CacheError` on trouble."""

    def open(self) -> None:
        """Connect and subscribe; return once the server confirmed it."""
        ...

    def receive(self, timeout: float) -> Invalidation | Pong | None:
        """Return the next invalidation, PONG, or None when nothing came within `timeout` s."""
        ...

    def ping(self) -> None:
        """Send a PING; its answer comes back through `receive` as PONG."""
        ...

    def interrupt(self) -> None:
        """Wake a `receive` blocked in another thread (it then raises); never raises."""
        ...

    def close(self) -> None:
        """Release the connection; never raises."""
        ...


class Listener:
    """Keeps `bus` subscribed to its channel on a daemon thread."""

    def __init__(
        self,
        bus: Audience,
        subscriber: Callable[[], Subscriber],
        *,
        heartbeat: float = 1.0,
        fallback: Callable[[], Subscriber] | None = None,
        tick: Callable[[], None] | None = None,
        backoff: tuple[float, float] = (0.05, 1.0),
        first_wait: float = 1.0,
        timer: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.bus = bus
        self._subscriber = subscriber
        self.heartbeat = heartbeat
        self._fallback = fallback
        self._tick = tick
        self._backoff = backoff
        self._first_wait = first_wait
        self._timer = timer
        self._jitter = jitter
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._current: Subscriber | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._first_attempt = threading.Event()

    @property
    def running(self) -> bool:
        """Return whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def ensure_started(self) -> None:
        """Start the thread if needed; the first time, wait for its first subscribe."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(
                    target=self._run, name=f"tiercache-listener {self.bus.location}", daemon=True
                )
                self._thread.start()
        # Bounded: if Redis cannot be reached, callers go on without L1 fills.
        self._first_attempt.wait(self._first_wait)

    def wake(self) -> None:
        """Cut a reconnect backoff short (Redis was just seen to be back)."""
        self._wake.set()

    def reconnect(self) -> None:
        """Drop the connection and subscribe again (the master moved); no fills until then."""
        self.bus.healthy = False
        current = self._current
        if current is not None:
            current.interrupt()
        self._wake.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the thread and close its connection; the bus is unhealthy afterwards."""
        self._stopping.set()
        self._wake.set()
        current = self._current
        if current is not None:
            current.interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.bus.healthy = False

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            subscriber = self._subscriber()
            self._current = subscriber
            try:
                subscriber.open()
                self._subscribed()
                failures = 0
                self._listen(subscriber)
            except TrackingRefused as error:
                if self._fallback is None:
                    raise
                self.bus.fall_back(str(error))
                self._subscriber, self._fallback = self._fallback, None
                subscriber.close()
                continue  # subscribe again at once, in broadcast mode
            except CacheError as error:
                failures += 1
                self._lost(str(error))
            except Exception as error:  # a bug here must not leave the bus deaf but "healthy"
                failures += 1
                logger.exception("tiercache listener on %s failed", self.bus.location)
                self._lost(f"{type(error).__name__}: {error}")
            finally:
                self._current = None
                subscriber.close()
            if not self._stopping.is_set():
                self._pause(failures)
        self.bus.healthy = False

    def _subscribed(self) -> None:
        bus = self.bus
        # Order matters: clear first (refusing fills begun earlier), then allow fills.
        bus.clear_all()
        if bus.subscribed_at is not None:
            bus.reconnects += 1
            logger.info("tiercache listener on %s is back; L1 cleared", bus.location)
        bus.subscribed_at = self._timer()
        bus.healthy = True
        self._first_attempt.set()

    def _lost(self, reason: str) -> None:
        # One warning per outage (or failed start), not one per reconnect attempt.
        news = self.bus.healthy or not self._first_attempt.is_set()
        self.bus.healthy = False
        self.bus.last_error = reason
        self._first_attempt.set()
        if self._stopping.is_set():
            return
        log = logger.warning if news else logger.debug
        log("tiercache listener on %s lost, no L1 fills until back: %s", self.bus.location, reason)

    def _pause(self, failures: int) -> None:
        low, high = self._backoff
        delay = min(high, low * 2 ** max(0, failures - 1)) * (0.8 + 0.4 * self._jitter())
        self._wake.wait(delay)
        self._wake.clear()

    def _listen(self, subscriber: Subscriber) -> None:
        bus, heartbeat, timer = self.bus, self.heartbeat, self._timer
        heard = ticked = timer()
        pinged: float | None = None
        while not self._stopping.is_set():
            deadline = min((heard if pinged is None else pinged), ticked) + heartbeat
            item = subscriber.receive(max(0.0, deadline - timer()))
            now = timer()
            if self._tick is not None and now - ticked >= heartbeat:
                ticked = now
                self._tick()
            if item is PONG:
                heard, pinged = now, None
            elif isinstance(item, Invalidation):
                heard, pinged = now, None
                bus.messages += 1
                bus.last_message_at = now
                bus.receive(item)
            elif pinged is not None and now - pinged >= heartbeat:
                raise CacheTimeout(f"no answer to a heartbeat PING within {heartbeat} s")
            elif pinged is None and now - heard >= heartbeat:
                subscriber.ping()
                pinged = now
