"""Single flight: one computation per key at a time in a process; the others wait for it.

Threads and asyncio tasks (on any event loop) share one table, so a sync caller can
wait for an async leader and the other way round. A caller never waits for itself:
if the leader is its own thread or task (a loader that asks for its own key, or sync
code run inside the leader's event loop), it computes alone instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Final

__all__ = ["ABANDONED", "BUSY", "LEADING", "SingleFlight"]


class _Signal:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: You lead: compute, then `finish` the key with the outcome.
LEADING: Final = _Signal("LEADING")
#: Someone else leads and you asked not to wait.
BUSY: Final = _Signal("BUSY")
#: The leader went away without an outcome (cancelled, or crashed): try again.
ABANDONED: Final = _Signal("ABANDONED")


@dataclass(frozen=True, slots=True)
class _Flight:
    outcome: concurrent.futures.Future[object]
    thread: int
    task: asyncio.Task[object] | None


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        return None


class SingleFlight:
    """The computations under way in this process, by key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def _claim(self, key: Hashable, task: asyncio.Task[object] | None) -> _Flight | None:
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight
            outcome: concurrent.futures.Future[object] = concurrent.futures.Future()
            # A running future cannot be cancelled: a waiter's cancellation stays its own.
            outcome.set_running_or_notify_cancel()
            self._flights[key] = _Flight(outcome, threading.get_ident(), task)
            return None

    def join(self, key: Hashable, *, wait: bool = True) -> tuple[object, bool]:
        """Return (LEADING, True) to the new leader, else (outcome or BUSY, False)."""
        flight = self._claim(key, None)
        if flight is None:
            return LEADING, True
        if not wait:
            return BUSY, False
        if flight.thread == threading.get_ident():
            return LEADING, False  # waiting would wait for ourselves: compute alone
        return flight.outcome.result(), False

    async def ajoin(self, key: Hashable, *, wait: bool = True) -> tuple[object, bool]:
        """Return (LEADING, True) to the new leader, else (outcome or BUSY, False)."""
        task = _current_task()
        flight = self._claim(key, task)
        if flight is None:
            return LEADING, True
        if not wait:
            return BUSY, False
        if flight.task is task or (flight.task is None and flight.thread == threading.get_ident()):
            return LEADING, False
        return await asyncio.wrap_future(flight.outcome), False

    def finish(self, key: Hashable, outcome: object) -> None:
        """Hand `outcome` to everyone waiting on `key` and end its flight."""
        with self._lock:
            flight = self._flights.pop(key, None)
        if flight is not None:
            flight.outcome.set_result(outcome)

    def __len__(self) -> int:
        with self._lock:
            return len(self._flights)
