"""The L1 tier: a bounded, thread-safe, in-process LRU with per-entry expiry."""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple

import cachetools

from tiercache.ports import HeldEntry

__all__ = ["MISSING", "MemoryTier"]


class _Missing:
    """Marks an absent entry; `None` is a value a Django user may cache."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class _Entry(NamedTuple):
    """What the tier keeps per key; times are on the tier's timer."""

    held: object
    expires_at: float | None
    size: int
    stored_at: float


class _LRU(cachetools.LRUCache[str, _Entry]):
    """An LRUCache that reports each entry it evicts, so the byte total stays true."""

    def __init__(self, maxsize: int, on_evict: Callable[[_Entry], None]) -> None:
        super().__init__(maxsize)
        self._on_evict = on_evict

    def popitem(self) -> tuple[str, _Entry]:
        key, entry = super().popitem()
        self._on_evict(entry)
        return key, entry


class MemoryTier:
    """Holds values for at most `default_ttl` seconds each, bounded by count and bytes.

    cachetools is not thread-safe, so every access takes the lock. A sequence number
    guards fills: a read that began before an invalidation of its key may not put
    what it read into the tier afterwards (see `begin_read` and `fill`).
    """

    def __init__(
        self,
        maxsize: int = 10_000,
        default_ttl: float | None = 60.0,
        *,
        max_bytes: int | None = None,
        timer: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        tombstones: int = 10_000,
    ) -> None:
        if maxsize <= 0:
            raise ValueError(f"maxsize must be positive, got {maxsize}")
        self.maxsize = maxsize
        self.default_ttl = default_ttl
        self.max_bytes = max_bytes
        self._timer = timer
        self._clock = clock  # wall-clock seconds, only to show entries to tooling
        self._lock = threading.Lock()
        self._bytes = 0
        #: Entries dropped to make room (by count or by bytes), since the tier was made.
        self.evictions = 0
        self._data = _LRU(maxsize, self._evicted)
        # Sequence guard: the last invalidation sequence of recently invalidated keys;
        # keys that fell out of the bounded map count as invalidated at `_floor`.
        self._seq = 0
        self._floor = 0
        self._tombstones: OrderedDict[str, int] = OrderedDict()
        self._tombstone_limit = tombstones

    def _evicted(self, entry: _Entry) -> None:
        self._bytes -= entry.size
        self.evictions += 1

    def __len__(self) -> int:
        return len(self._data)

    @property
    def bytes_used(self) -> int:
        """Return the summed size of the held entries, as their writers measured them."""
        return self._bytes

    def get(self, key: str) -> object:
        """Return what is held for `key`, or MISSING if absent or expired."""
        # `_live` inlined, with one lookup instead of `in` then `[]`: this is the L1 hit of
        # every read ("get hit (L1)" in benchmarks/), and a miss goes on to Redis anyway.
        with self._lock:
            try:
                entry = self._data[key]  # marks the key as used
            except KeyError:
                return MISSING
            if entry.expires_at is not None and entry.expires_at <= self._timer():
                self._remove(key)
                return MISSING
            return entry.held

    def get_many(self, keys: Iterable[str]) -> list[object]:
        """Return what is held for each of `keys` (MISSING where none), under one lock."""
        with self._lock:
            now = self._timer()
            entries = [self._live(key, now) for key in keys]
        return [MISSING if entry is None else entry.held for entry in entries]

    def get_with_ttl(self, key: str) -> tuple[object, float | None] | _Missing:
        """Return what is held for `key` and the seconds it has left (None: no expiry)."""
        with self._lock:
            now = self._timer()
            entry = self._live(key, now)
            if entry is None:
                return MISSING
            return entry.held, None if entry.expires_at is None else entry.expires_at - now

    def remaining_ttl(self, key: str) -> float | _Missing | None:
        """Return the seconds `key` has left (None: no expiry), or MISSING."""
        found = self.get_with_ttl(key)
        return found if isinstance(found, _Missing) else found[1]

    def entry(
        self, key: str, decode: Callable[[object], object] = lambda held: held
    ) -> HeldEntry | None:
        """Return how `key` is held, for tooling (`decode` turns what is held into the value).

        It neither marks the key as used nor drops it if expired: looking changes nothing.
        """
        with self._lock:
            found = self._data.get(key)
            now, wall = self._timer(), self._clock()
        if found is None or (found.expires_at is not None and found.expires_at <= now):
            return None
        value = decode(found.held)
        left = None if found.expires_at is None else found.expires_at - now
        return HeldEntry(
            key=key,
            value=value if isinstance(value, str) else repr(value),
            ttl=None if left is None else math.ceil(left),
            created_at=wall - (now - found.stored_at),
            expires_at=None if left is None else wall + left,
            value_type=type(value).__name__,
            size=found.size,
        )

    def begin_read(self) -> int:
        """Return a token to pass to `fill` once the slower tier has answered."""
        return self._seq

    def fill(self, key: str, held: object, ttl: float | None, since: int, size: int = 0) -> bool:
        """Store what a read fetched, unless `key` was invalidated after `since`."""
        with self._lock:
            if self._changed_since(key, since):
                return False
            self._put(key, held, ttl, size, self._timer())
            return True

    def fill_many(
        self, entries: Iterable[tuple[str, object, float | None, int]], since: int
    ) -> None:
        """`fill` each (key, held, ttl, size) under one lock: a batch read's fills."""
        with self._lock:
            tombstone_of, floor = self._tombstones.get, self._floor  # `_changed_since`
            self._put_many(
                [entry for entry in entries if tombstone_of(entry[0], floor) <= since],
                self._timer(),
            )

    def put_many_if_unchanged(
        self, entries: Iterable[tuple[str, object, int]], ttl: float | None, since: int
    ) -> None:
        """`put_if_unchanged` each (key, held, size) of a batch written with one TTL."""
        with self._lock:
            now = self._timer()
            self._seq += 1  # one invalidation for the whole batch
            for key, held, size in entries:
                raced = self._changed_since(key, since)
                self._tombstones[key] = self._seq
                self._tombstones.move_to_end(key)
                if raced:
                    self._remove(key)
                else:
                    self._put(key, held, ttl, size, now)
            self._trim_tombstones()

    def put(self, key: str, held: object, ttl: float | None, size: int = 0) -> None:
        """Store a value this process wrote; it supersedes any read in flight."""
        with self._lock:
            self._invalidate(key)
            self._put(key, held, ttl, size, self._timer())

    def put_if_unchanged(
        self, key: str, held: object, ttl: float | None, since: int, size: int = 0
    ) -> None:
        """Store a value written at `since`; drop the key if a newer write raced it."""
        self.put_many_if_unchanged(((key, held, size),), ttl, since)

    def expire(self, key: str, ttl: float | None) -> bool:
        """Give a held `key` a new TTL, keeping its value and size; return whether held."""
        with self._lock:
            now = self._timer()
            entry = self._live(key, now)
            if entry is None:
                return False
            self._invalidate(key)
            self._put(key, entry.held, ttl, entry.size, now)
            return True

    def invalidate(self, keys: Iterable[str]) -> int:
        """Drop `keys` and refuse fills of them begun earlier; return how many were held."""
        dropped = 0
        with self._lock:
            for key in keys:
                self._invalidate(key)
                dropped += self._remove(key)
        return dropped

    def invalidate_matching(self, pattern: re.Pattern[str]) -> int:
        """Drop every key that `pattern` matches in full; return how many."""
        with self._lock:
            # Refuse every fill begun before now: a matching key may be in flight.
            self._seq += 1
            self._floor = self._seq
            self._tombstones.clear()
            matching = [key for key in self._data if pattern.fullmatch(key)]
            for key in matching:
                self._remove(key)
        return len(matching)

    def clear(self) -> None:
        """Drop everything and refuse every fill begun before now."""
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self._seq += 1
            self._floor = self._seq
            self._tombstones.clear()

    def after_fork(self) -> None:
        """Start empty in a forked child, with a new lock (the parent's may stay held)."""
        self._lock = threading.Lock()
        self.clear()

    def update(self, key: str, change: Callable[[object], object]) -> object:
        """Atomically replace what is held for `key` by `change(held or MISSING)`."""
        with self._lock:
            now = self._timer()
            entry = self._live(key, now)
            new = change(MISSING if entry is None else entry.held)
            left = None
            if entry is not None and entry.expires_at is not None:
                left = entry.expires_at - now
            self._invalidate(key)
            self._put(key, new, left, 0 if entry is None else entry.size, now)
            return new

    def keys(self) -> list[str]:
        """Return the held keys (expired ones included until next touched)."""
        with self._lock:
            return list(self._data)

    # The helpers below expect the lock to be held.

    def _live(self, key: str, now: float) -> _Entry | None:
        """Return the unexpired entry of `key`, marked as used; drop it if expired."""
        data = self._data
        if key not in data:
            return None
        entry = data[key]  # an LRUCache lookup marks the key as used
        if entry.expires_at is not None and entry.expires_at <= now:
            self._remove(key)
            return None
        return entry

    def _changed_since(self, key: str, since: int) -> bool:
        return self._tombstones.get(key, self._floor) > since

    def _invalidate(self, key: str) -> None:
        self._seq += 1
        self._tombstones[key] = self._seq
        self._tombstones.move_to_end(key)
        self._trim_tombstones()

    def _trim_tombstones(self) -> None:
        while len(self._tombstones) > self._tombstone_limit:
            _, seq = self._tombstones.popitem(last=False)
            self._floor = max(self._floor, seq)

    def _remove(self, key: str) -> int:
        entry = self._data.pop(key, None)
        if entry is None:
            return 0
        self._bytes -= entry.size
        return 1

    def _put(self, key: str, held: object, ttl: float | None, size: int, now: float) -> None:
        self._put_many(((key, held, ttl, size),), now)

    def _put_many(
        self, entries: Iterable[tuple[str, object, float | None, int]], now: float
    ) -> None:
        # What the loop looks up is hoisted: it runs per key of every cold batch read
        # (benchmarks/, "get_many(100) cold").
        data, cap, max_bytes = self._data, self.default_ttl, self.max_bytes
        for key, held, asked, size in entries:
            ttl = cap if cap is not None and (asked is None or asked > cap) else asked
            if max_bytes is not None and size > max_bytes:
                self._remove(key)
                continue
            if key in data:
                self._bytes -= data[key].size  # replaced in place below
            # A full LRUCache makes room through `popitem`, which reports each eviction.
            data[key] = _Entry(held, None if ttl is None else now + ttl, size, now)
            self._bytes += size
            while max_bytes is not None and self._bytes > max_bytes:
                data.popitem()
