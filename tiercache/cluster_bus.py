"""Coherence on a Redis Cluster: server-assisted tracking per primary.

Each primary is heard like the one node of a standalone Redis: this process owns one
invalidation connection to it (its own `Listener` thread over a `TrackingSubscriber`)
and its own fill connections (`Tracking`). A `NodeEar` is one primary's share of the
bus: its listener's state, its tracking and its own-write echo bookkeeping. Health is
per primary: a deaf primary's keys do not fill L1, the others' do; when a primary's
invalidation connection comes back, the keys it vouched for are dropped from L1 (not
the whole L1).

`ClusterEars` keeps the ears in step with the slot map: on a topology change the ears
of the primaries that lost slots drop what they vouched for and start over, a node
that is no longer a primary loses its ear (and its listener), and a new primary gets
one on first need (a new primary has no tracking state of ours).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from tiercache.bus import apply_invalidation
from tiercache.errors import CacheError
from tiercache.messages import Invalidation

if TYPE_CHECKING:
    from tiercache.bus import LocalBus, Mode
    from tiercache.topology_cluster import ClusterTopology
    from tiercache.tracking import Tracking

__all__ = ["ClusterEars", "NodeEar"]


class NodeEar:
    """What this process hears from one primary (a `listener.Audience`)."""

    def __init__(self, ears: ClusterEars, node: str) -> None:
        self._ears = ears
        self.bus = ears.bus
        self.node = node
        self.location = f"{ears.bus.location} node {node}"
        self._healthy = False
        self.subscribed_at: float | None = None
        self.last_message_at: float | None = None
        self.messages = 0
        self.reconnects = 0
        self.last_error: str | None = None
        #: Set right after construction (a `Tracking` needs its ear).
        self.tracking: Tracking
        #: Starts this ear's listener (set by the composition root).
        self.start: Callable[[], None] = lambda: None

    @property
    def instance_id(self) -> str:
        """Return this process's id (fill connections are named with it)."""
        return self.bus.instance_id

    @property
    def healthy(self) -> bool:
        """Return whether the invalidation connection is subscribed."""
        return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self._healthy = value
        self._ears.health_changed()

    def fills_allowed(self) -> bool:
        """Return whether this primary's keys may fill L1; start its listener if needed."""
        if not self._healthy:
            self.start()
        return self._healthy

    def usable(self) -> Tracking | None:
        """Return the tracking of this primary if a tracked read may be sent now."""
        tracking = self.tracking
        return tracking if tracking.usable() else None

    def drop(self, keys: Iterable[str]) -> None:
        """Drop `keys` from every L1 of the bus."""
        self.bus.drop(keys)

    def clear_all(self) -> None:
        """Drop what this primary vouched for: its listener may have missed messages."""
        self.tracking.forget_held()
        self.bus.drop(self.tracking.vouched())

    def receive(self, invalidation: Invalidation) -> None:
        """Apply what this primary (or, in broadcast, another process) says changed."""
        if invalidation.sender:  # broadcast, after a fallback
            self.bus.receive(invalidation)
        elif invalidation.op == "keys":
            keys = self.tracking.heard(invalidation.keys)
            if keys:
                changed = Invalidation("", "keys", keys)
                for l1 in self.bus.l1s():
                    apply_invalidation(l1, changed)
        else:  # FLUSHALL on this primary: all it vouched for is gone
            self.clear_all()

    def fall_back(self, reason: str) -> None:
        """Switch the whole bus to broadcast: this primary refuses tracking."""
        self.bus.fall_back(reason)

    def forget(self) -> None:
        """Drop what this primary vouched for and its fill connections (it lost slots)."""
        self.tracking.forget_held()
        self.tracking.forget()

    def after_fork(self) -> None:
        """Start over in a forked child: not subscribed, no connections."""
        self._healthy = False
        self.subscribed_at = self.last_message_at = self.last_error = None
        self.messages = self.reconnects = 0
        self.tracking.after_fork()


class ClusterEars:
    """The ears of one bus on a cluster, one per primary, kept in step with the slot map."""

    def __init__(
        self,
        bus: LocalBus,
        topology: ClusterTopology,
        make: Callable[[ClusterEars, str], NodeEar],
        stop: Callable[[NodeEar], None],
        threads: int = 2,
    ) -> None:
        self.bus = bus
        self.topology = topology
        self._make = make
        self._stop = stop
        self._threads = threads
        self._lock = threading.Lock()
        self._ears: dict[str, NodeEar] = {}
        self._executor: ThreadPoolExecutor | None = None

    # -- the ears ----------------------------------------------------------------------

    def ears(self) -> list[NodeEar]:
        """Return the ears of the primaries heard now."""
        return list(self._ears.values())

    def ear(self, node: str) -> NodeEar | None:
        """Return the ear of primary `node`, made on first need; None if not a primary.

        A node named from a slot map that changed meanwhile may be a replica now: it
        gets no ear (and no listener), and its keys are read untracked until the
        tiers route them to their new primary.
        """
        ear = self._ears.get(node)
        if ear is None and node in self.topology.primaries():
            with self._lock:
                ear = self._ears.get(node)
                if ear is None:
                    ear = self._ears[node] = self._make(self, node)
        return ear

    def start_all(self) -> None:
        """Start hearing every primary (each listener waits for its first subscribe)."""
        for node in self.topology.primaries():
            with self._lock:
                ear = self._ears.get(node)
                if ear is None:
                    ear = self._ears[node] = self._make(self, node)
            ear.start()

    def health_changed(self) -> None:
        """Keep the bus's `healthy` true only while every primary is heard."""
        self.bus.healthy = bool(self._ears) and all(ear.healthy for ear in self.ears())

    def fills_allowed(self, mode: Mode) -> bool:
        """Return whether L1 may fill: per primary in tracking mode, all heard otherwise.

        In tracking mode each tracked read says itself whether its primary was heard.
        """
        if mode == "tracking":
            return True
        ears = self.ears()
        if not ears:
            self.start_all()
            ears = self.ears()
        allowed = [ear.fills_allowed() for ear in ears]  # starts every deaf one
        return bool(allowed) and all(allowed)

    def changed(self, lost: set[str]) -> None:
        """A slot moved: the primaries that lost one start over; former primaries go."""
        primaries = set(self.topology.primaries())
        with self._lock:
            gone = [self._ears.pop(node) for node in list(self._ears) if node not in primaries]
        for ear in gone:
            self._stop(ear)
            ear.forget()
            ear.tracking.close()
        for node in lost & set(self._ears):
            self._ears[node].forget()
        self.health_changed()

    # -- own-write echoes, by the key's primary ----------------------------------------

    def by_node(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Return `keys` grouped by the primary that owns each; `CacheError` if unknown."""
        keys = list(keys)
        groups: defaultdict[str, list[str]] = defaultdict(list)
        for key, node in zip(keys, self.topology.nodes_of(keys), strict=True):
            groups[node].append(key)
        return groups

    def held(self, key: str) -> None:
        """Note a tracked read's value that L1 took, with the key's primary."""
        try:
            ear = self._ears.get(self.topology.node_of(key))
        except CacheError:  # no slot map now: not noting it only costs an extra drop
            return
        if ear is not None:
            ear.tracking.held(key)

    def expect_echo(self, keys: Iterable[str], *, surely: bool = True) -> None:
        """Note keys this process wrote, each with its primary (see `Tracking.expect_echo`)."""
        try:
            groups = self.by_node(keys)
        except CacheError:  # no slot map: forget rather than expect a wrong echo
            self.forget_held()
            return
        for node, mine in groups.items():
            ear = self._ears.get(node)
            if ear is not None:
                ear.tracking.expect_echo(mine, surely=surely)

    def forget_held(self) -> None:
        """Forget every held key and expected echo, on every primary."""
        for ear in self.ears():
            ear.tracking.forget_held()

    # -- lifetime ----------------------------------------------------------------------

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Return the threads that run tracked reads for asyncio callers."""
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        self._threads, thread_name_prefix="tiercache-fill"
                    )
        return self._executor

    def after_fork(self) -> None:
        """Start over in a forked child: the parent's connections and threads are not ours."""
        self._lock = threading.Lock()
        self._executor = None
        for ear in self.ears():
            ear.after_fork()

    def close(self) -> None:
        """Close every primary's fill connections, and stop watching the slot map."""
        for ear in self.ears():
            ear.tracking.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.topology.close()
