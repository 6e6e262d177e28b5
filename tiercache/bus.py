"""The invalidation bus: fans changes out to every L1 of this process, and to others.

In-process fan-out is synchronous: once a write returns, no other L1 of this process
holds the old value. Other processes learn of changes from the messages the write
scripts publish on `channel` (see `tiercache.listener`).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Sequence

from tiercache.globs import glob_to_regex
from tiercache.memory import MemoryTier
from tiercache.messages import Invalidation, Op, encode

__all__ = ["LocalBus", "apply_invalidation"]


def apply_invalidation(l1: MemoryTier, invalidation: Invalidation) -> None:
    """Apply one change to one L1."""
    if invalidation.op == "keys":
        l1.invalidate(invalidation.keys)
    elif invalidation.op == "pattern":
        l1.invalidate_matching(glob_to_regex(invalidation.pattern))
    else:
        l1.clear()


class LocalBus:
    """The L1s of this process that share one Redis database, and its channel."""

    def __init__(self, channel: str, instance_id: str) -> None:
        self._channel = channel
        self.instance_id = instance_id
        self._own_channel = self._channel_of(instance_id)
        self._lock = threading.Lock()
        # A tuple replaced whole on change, so readers need no lock; weak, so an L1
        # nobody uses any more is not kept coherent forever.
        self._refs: tuple[weakref.ref[MemoryTier], ...] = ()
        # Set by the listener: False while it may have missed messages.
        self.healthy = True
        # Starts this process's listener (see `listen_with`); None: nobody else to hear.
        self._listen: Callable[[], None] | None = None
        # What the listener reports, for metrics: monotonic times, counters, last failure.
        self.subscribed_at: float | None = None
        self.last_message_at: float | None = None
        self.messages = 0
        self.reconnects = 0
        self.last_error: str | None = None

    @property
    def channel(self) -> str:
        """Return this process's channel, `<base>:<instance id>` ('' when invalidation is off).

        Writers publish to every channel of the base but their own (see commands._PUBLISH).
        """
        return self._own_channel

    def _channel_of(self, instance_id: str) -> str:
        return f"{self._channel}:{instance_id}" if self._channel else ""

    def attach(self, l1: MemoryTier) -> None:
        """Keep `l1` coherent with the others on this bus."""
        with self._lock:
            alive = [ref for ref in self._refs if ref() is not None]
            if not any(ref() is l1 for ref in alive):
                self._refs = (*alive, weakref.ref(l1))

    def l1s(self) -> list[MemoryTier]:
        """Return the attached L1s."""
        return [l1 for ref in self._refs if (l1 := ref()) is not None]

    def message(self, op: Op, keys: Sequence[str] = (), pattern: str = "") -> str:
        """Return the text that tells other processes about a change."""
        return encode(self.instance_id, op, tuple(keys), pattern)

    def announce_locally(
        self, source: MemoryTier | None, op: Op, keys: Sequence[str] = (), pattern: str = ""
    ) -> None:
        """Apply a change to every attached L1 but `source`."""
        refs = self._refs
        if len(refs) == 1 and refs[0]() is source:
            return  # the usual case: one L1 per alias and process, and it made the change
        others = [l1 for l1 in self.l1s() if l1 is not source]
        if not others:
            return
        invalidation = Invalidation(self.instance_id, op, tuple(keys), pattern)
        for l1 in others:
            apply_invalidation(l1, invalidation)

    def receive(self, invalidation: Invalidation) -> None:
        """Apply a change another process announced (our own messages are ignored)."""
        if invalidation.sender == self.instance_id:
            return
        for l1 in self.l1s():
            apply_invalidation(l1, invalidation)

    def clear_all(self) -> None:
        """Clear every attached L1 (after a reconnect, when messages may be lost)."""
        for l1 in self.l1s():
            l1.clear()

    def fills_allowed(self) -> bool:
        """Return whether L1 may take values now; starts the listener on first need."""
        if not self.healthy and self._listen is not None:
            self._listen()
        return self.healthy

    def listen_with(self, start: Callable[[], None]) -> None:
        """Have `start` run this process's listener; no L1 fills until it has subscribed."""
        with self._lock:
            if self._listen is None:
                self._listen = start
                self.healthy = False

    @property
    def listening(self) -> bool:
        """Return whether other processes are heard through a listener (when healthy)."""
        return self._listen is not None

    def after_fork(self, instance_id: str) -> None:
        """Start over in a forked child: new id, no listener yet, empty L1s."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        self.instance_id = instance_id
        self._own_channel = self._channel_of(instance_id)
        self.subscribed_at = self.last_message_at = self.last_error = None
        self.messages = self.reconnects = 0
        if self._listen is not None:
            self.healthy = False
        for l1 in self.l1s():
            with contextlib.suppress(Exception):  # at-fork hooks must not raise
                l1.after_fork()
