"""A tracked read on a Redis Cluster: its keys by primary, on each primary's fill connections.

A `Fill` names keys that may live on every primary. `ClusterFill` groups them by the
primary that owns each (`ClusterTopology.node_of`, redis-py's routing, remembered per
key), claims the fill connections of each primary whose invalidation connection is
subscribed, sends to all of them before reading any (one round trip overall), and
folds the replies back. Keys it could not read tracked (a deaf or busy primary, an
open breaker, a MOVED or ASK reply, a lost fill connection) are read through the tier's
ordinary path, and L1 does not keep them: the answer says which keys were tracked.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.exceptions as rex

from tiercache.cluster_bus import ClusterEars
from tiercache.commands import Fill
from tiercache.errors import CacheError
from tiercache.tracking import Claim, Pending, Tracking

__all__ = ["ClusterFill", "Tracked"]

#: What a tier answers about the keys of a read: all tracked, none, or these.
Tracked = bool | frozenset[str]


class ClusterFill:
    """One `Fill` split by primary: what goes tracked, and what the tier reads plainly."""

    def __init__(
        self,
        fill: Fill,
        ears: ClusterEars,
        allow: Callable[[str], bool],
        wait: float,
    ) -> None:
        self.fill = fill
        self.claims: list[tuple[str, Tracking, Claim]] = []
        #: Keys to read through the ordinary path, untracked (known before the send).
        self.plain: list[str] = []
        #: Keys to read again untracked once the tracked replies are in (MOVED, ASK,
        #: a fill connection lost before its reply).
        self.again: list[str] = []
        self.values: dict[str, object] = {}
        #: Keys whose value is an error (a miss in a batch read).
        self.errors: list[str] = []
        self.tracked: set[str] = set()
        #: The write's reply (with `fill.write`), or the error that it may have met.
        self.written: object = None
        #: Nodes that answered, and those that failed, for their breakers.
        self.answered: list[str] = []
        self.failed: list[str] = []
        self._pending: list[tuple[str, Tracking, Pending]] = []
        try:
            groups = ears.by_node(fill.keys)
        except CacheError:  # no slot map now: read through redis-py, which finds one
            self.plain = list(fill.keys)
            return
        for node, keys in groups.items():
            claimed = self._claim(ears, node, Fill(("MGET", *keys), fill.write), allow, wait)
            if claimed is None:
                self.plain += keys
            else:
                self.claims.append((node, *claimed))

    @staticmethod
    def _claim(
        ears: ClusterEars, node: str, fill: Fill, allow: Callable[[str], bool], wait: float
    ) -> tuple[Tracking, Claim] | None:
        """Take `node`'s fill connections for `fill`, if it is heard and its breaker allows."""
        ear = ears.ear(node)
        tracking = ear.usable() if ear is not None else None
        if tracking is None:
            return None
        claim = tracking.claim(fill, wait)
        if claim is not None and not allow(node):
            tracking.release(claim)
            return None
        return None if claim is None else (tracking, claim)

    def run(self) -> None:
        """Send to every claimed primary, then read every reply (blocking)."""
        self.dispatch()
        self.collect()

    def dispatch(self) -> None:
        """Send the read to every claimed primary."""
        for node, tracking, claim in self.claims:
            try:
                self._pending.append((node, tracking, tracking.dispatch(claim)))
            except (rex.RedisError, OSError) as error:
                self._lost(node, claim.fill.keys, error)

    def collect(self) -> None:
        """Read the replies of every primary sent to; release every fill connection."""
        pending, self._pending = self._pending, []
        for node, tracking, sent in pending:
            try:
                received = tracking.collect(sent)
            except (rex.RedisError, OSError) as error:
                self._lost(node, sent.claim.fill.keys, error)
                continue
            self.answered.append(node)
            if self.fill.write is not None:
                self.written = received.written
            values = received.values
            self.values.update(values)
            if received.tracked:
                self.tracked.update(values)
            for key in received.errors:
                if isinstance(values[key], rex.MovedError | rex.AskError):
                    self.again.append(key)  # not read: the slot is elsewhere now
                    del self.values[key]
                    self.tracked.discard(key)
                else:
                    self.errors.append(key)

    @property
    def moved(self) -> bool:
        """Return whether a primary said a key's slot is elsewhere now."""
        return bool(self.again) or isinstance(self.written, rex.MovedError | rex.AskError)

    def _lost(self, node: str, keys: tuple[str, ...], error: BaseException) -> None:
        if self.fill.write is not None:
            self.written = error  # it may have been applied: never send a write twice
        elif isinstance(error, rex.ConnectionError) and not isinstance(error, rex.TimeoutError):
            self.again += keys  # a stale connection, maybe: the ordinary path tells
            return
        else:
            self.values.update(dict.fromkeys(keys, error))
            self.errors += keys
        self.failed.append(node)

    def answer(self, untracked: dict[str, object]) -> tuple[object, Tracked]:
        """Return the reply of a batch read and which keys L1 may keep.

        `untracked`: what the ordinary path read for `plain` and `again`. A key whose
        read failed is a miss, as in every batch read of a cluster.
        """
        found = self.values
        if untracked:
            found = {**untracked, **found}
        if self.errors:
            found = {**found, **dict.fromkeys(self.errors)}
        values = list(map(found.get, self.fill.keys))
        tracked = self.tracked
        everything = len(tracked) == len(self.fill.keys)
        return values, (True if everything else frozenset(tracked) if tracked else False)
