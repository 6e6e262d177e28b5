"""The invalidation bus: the L1s of one Redis database in this process, kept coherent.

In-process fan-out is synchronous: once a write returns, no other L1 of this process
holds the old value. Other processes' writes arrive according to the bus's mode:

* "tracking": Redis tells this process about the keys it read for L1 (server-assisted
  client-side caching, see `tiercache.tracking`), whoever changed them;
* "broadcast": every write publishes the keys it changed on one shared channel, and
  every process hears every write (for servers that refuse `CLIENT TRACKING`);
* "off": nobody is told; L1 copies live out their TTL.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from tiercache.globs import glob_to_regex
from tiercache.memory import MemoryTier
from tiercache.messages import Invalidation, Op, encode

if TYPE_CHECKING:
    from tiercache.cluster_bus import ClusterEars
    from tiercache.tracking import Tracking

__all__ = ["MODES", "LocalBus", "Mode", "apply_invalidation", "mode_of"]

logger = logging.getLogger("tiercache")

Mode = Literal["tracking", "broadcast", "off"]
MODES: tuple[Mode, ...] = ("tracking", "broadcast", "off")


def mode_of(invalidation: object) -> Mode:
    """Return the mode an `invalidation` setting names (True: the default, "tracking")."""
    if invalidation is True:
        return "tracking"
    if invalidation is False or invalidation is None or invalidation == "off":
        return "off"
    if invalidation in ("tracking", "broadcast"):
        return invalidation
    raise ValueError(
        f"invalidation must be 'tracking', 'broadcast' or off (False, None, 'off'), "
        f"got {invalidation!r}"
    )


def apply_invalidation(l1: MemoryTier, invalidation: Invalidation) -> None:
    """Apply one change to one L1."""
    if invalidation.op == "keys":
        l1.invalidate(invalidation.keys)
    elif invalidation.op == "pattern":
        l1.invalidate_matching(glob_to_regex(invalidation.pattern))
    else:
        l1.clear()


class LocalBus:
    """The L1s of this process that share one Redis database, and how they hear others."""

    def __init__(self, channel: str, instance_id: str, *, location: str = "memory") -> None:
        self._base = channel
        self.location = location
        self.instance_id = instance_id
        self._lock = threading.Lock()
        # A tuple replaced whole on change, so readers need no lock; weak, so an L1
        # nobody uses any more is not kept coherent forever.
        self._refs: tuple[weakref.ref[MemoryTier], ...] = ()
        #: What the caches asked for, and what the server allows ("broadcast" when a
        #: server refuses tracking).
        self.requested: Mode = "off"
        self.mode: Mode = "off"
        #: The node's tracking state, in tracking mode (see `tiercache.tracking`).
        self.tracking: Tracking | None = None
        #: On a Redis Cluster in tracking mode: one ear per primary, each with its own
        #: listener and tracking (see `tiercache.cluster_bus`); `tracking` is None then.
        self.ears: ClusterEars | None = None
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

    # -- mode ------------------------------------------------------------------------

    def require(self, mode: Mode) -> None:
        """Serve a cache that wants `mode`; refuse a second mode on the same Redis."""
        with self._lock:
            if mode in ("off", self.requested):
                return
            if self.requested != "off":
                raise ValueError(
                    f"a cache on {self.location} asks for invalidation={mode!r}, but another "
                    f"cache of this process on the same Redis uses {self.requested!r}: "
                    "give every cache of one Redis the same invalidation mode"
                )
            self.requested = self.mode = mode

    def fall_back(self, reason: str) -> None:
        """Switch from tracking to broadcast: the server refused `CLIENT TRACKING`."""
        if self.mode != "tracking":
            return
        self.mode = "broadcast"
        logger.warning(
            "tiercache: Redis at %s refuses CLIENT TRACKING (%s); invalidation falls back "
            "to broadcast: every write is published to every process",
            self.location,
            reason,
        )

    def track_with(self, factory: Callable[[], Tracking]) -> None:
        """Set this bus's tracking state with `factory`, once."""
        with self._lock:
            if self.tracking is None:
                self.tracking = factory()

    def hear_per_node(self, factory: Callable[[], ClusterEars]) -> ClusterEars:
        """Set this bus's per-primary ears with `factory`, once; return them."""
        with self._lock:
            if self.ears is None:
                self.ears = factory()
            return self.ears

    @property
    def tracks(self) -> bool:
        """Return whether reads that fill L1 must be tracked by Redis."""
        return self.mode == "tracking" and self._listen is not None

    @property
    def keeps_own_writes(self) -> bool:
        """Return whether a write may put its value in this process's L1.

        Not in tracking mode: Redis forgets every tracker of a key when it changes, so
        a written value would be held untracked; the next read fills it tracked.
        """
        return self.mode != "tracking"

    @property
    def channel(self) -> str:
        """Return the channel writes publish on ('' unless in broadcast mode)."""
        return self._base if self.mode == "broadcast" else ""

    @property
    def broadcast_channel(self) -> str:
        """Return the channel of broadcast mode, whatever the mode now."""
        return self._base

    # -- L1s -------------------------------------------------------------------------

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
        """Return the text that tells other processes about a change (broadcast mode)."""
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
        """Apply a change heard from Redis (our own broadcast messages and echoes ignored)."""
        if invalidation.sender == self.instance_id:
            return
        tracking = self.tracking
        if tracking is not None and not invalidation.sender:  # from Redis's tracking
            if invalidation.op == "keys":
                keys = tracking.heard(invalidation.keys)
                if not keys:
                    return
                invalidation = Invalidation("", "keys", keys)
            else:
                tracking.forget_held()
        for l1 in self.l1s():
            apply_invalidation(l1, invalidation)

    def filled(self, key: str) -> None:
        """Note a tracked read's value that L1 took (see `Tracking.held`)."""
        if self.tracking is not None:
            self.tracking.held(key)
        elif self.ears is not None:
            self.ears.held(key)

    def wrote(self, keys: Sequence[str], *, surely: bool = True) -> None:
        """Note keys this process changed in Redis (see `Tracking.expect_echo`)."""
        if self.tracking is not None:
            self.tracking.expect_echo(keys, surely=surely)
        elif self.ears is not None:
            self.ears.expect_echo(keys, surely=surely)

    def drop(self, keys: Iterable[str]) -> None:
        """Drop `keys` from every attached L1 (what a lost fill connection covered)."""
        keys = tuple(keys)
        for l1 in self.l1s():
            l1.invalidate(keys)

    def clear_all(self) -> None:
        """Clear every attached L1 (after a reconnect, when messages may be lost)."""
        if self.tracking is not None:
            self.tracking.forget_held()
        if self.ears is not None:
            self.ears.forget_held()
        for l1 in self.l1s():
            l1.clear()

    # -- hearing others ----------------------------------------------------------------

    def fills_allowed(self) -> bool:
        """Return whether L1 may take values now; starts the listener on first need."""
        if self.ears is not None:
            return self.ears.fills_allowed(self.mode)
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
        self.subscribed_at = self.last_message_at = self.last_error = None
        self.messages = self.reconnects = 0
        if self._listen is not None:
            self.healthy = False
        if self.tracking is not None:
            self.tracking.after_fork()
        if self.ears is not None:
            self.ears.after_fork()
        for l1 in self.l1s():
            with contextlib.suppress(Exception):  # at-fork hooks must not raise
                l1.after_fork()
