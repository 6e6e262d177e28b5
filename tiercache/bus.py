"""The invalidation bus: fans changes out to every L1 of this process, and to others.

In-process fan-out is synchronous: once a write returns, no other L1 of this process
holds the old value. Other processes learn of changes from the messages the write
scripts publish on `channel` (see `tiercache.listener`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

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
        self._lock = threading.Lock()
        self._l1s: weakref.WeakSet[MemoryTier] = weakref.WeakSet()
        # Set by the listener: False while it may have missed messages.
        self.healthy = True

    @property
    def channel(self) -> str:
        """Return the pub/sub channel ('' when invalidation is off)."""
        return self._channel

    def attach(self, l1: MemoryTier) -> None:
        """Keep `l1` coherent with the others on this bus."""
        with self._lock:
            self._l1s.add(l1)

    def l1s(self) -> list[MemoryTier]:
        """Return the attached L1s."""
        with self._lock:
            return list(self._l1s)

    def message(self, op: Op, keys: Sequence[str] = (), pattern: str = "") -> str:
        """Return the text that tells other processes about a change."""
        return encode(self.instance_id, op, tuple(keys), pattern)

    def announce_locally(
        self, source: MemoryTier | None, op: Op, keys: Sequence[str] = (), pattern: str = ""
    ) -> None:
        """Apply a change to every attached L1 but `source`."""
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
        """Return whether L1 may be filled from L2 now."""
        return self.healthy
