"""The L1 tier: a bounded, thread-safe, in-process LRU with per-entry expiry."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

import cachetools

__all__ = ["MISSING", "MemoryTier"]


class _Missing:
    """Marks an absent entry; `None` is a value a Django user may cache."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


# An entry is a plain tuple (held, expires_at or None, size): building one is a single
# bytecode, where a NamedTuple's constructor is a Python-level call on every fill.
_Entry = tuple[object, float | None, int]
_HELD: Final = 0
_EXPIRES_AT: Final = 1
_SIZE: Final = 2


class _LRU(cachetools.LRUCache[str, _Entry]):
    """An LRUCache that reports every entry it drops, so the byte total stays true.

    The hot paths (`lookup`, `touch`, `store`, `discard`) work on cachetools' own dict
    and order directly where its internals allow (both C-implemented, keeping its size
    accounting true) instead of going through the mapping API's Python-level calls: an
    insertion into a full L1 costs one `popitem` of the order, not eight method calls.
    """

    def __init__(self, maxsize: int, on_drop: Callable[[_Entry], None]) -> None:
        super().__init__(maxsize)
        self._on_drop = on_drop
        self._capacity = maxsize
        data = getattr(self, "_Cache__data", None)
        order = getattr(self, "_LRUCache__order", None)
        self._fast: tuple[dict[str, _Entry], OrderedDict[str, None]] | None = None
        self.lookup: Callable[[str], _Entry | None] = self.get
        self.touch: Callable[[str], object] = self.get  # `get` marks the key as used
        if (
            isinstance(data, dict)
            and isinstance(order, OrderedDict)
            and hasattr(self, "_Cache__currsize")
        ):
            self._fast = (data, order)
            self.lookup, self.touch = data.get, order.move_to_end

    def store(self, key: str, entry: _Entry) -> None:
        """Insert or replace `key`, dropping the least recently used entries to make room."""
        if self._fast is None:
            old = self.pop(key, None)
            if old is not None:
                self._on_drop(old)
            self[key] = entry  # evictions go through `popitem`, which reports them
            return
        data, order = self._fast
        old = data.pop(key, None)
        if old is not None:
            del order[key]
            self._on_drop(old)
        else:
            capacity = self._capacity  # `maxsize` is a property: a call per read
            while len(data) >= capacity:
                oldest, _ = order.popitem(last=False)
                self._on_drop(data.pop(oldest))
        data[key] = entry
        order[key] = None
        self._Cache__currsize = len(data)

    def discard(self, key: str) -> _Entry | None:
        """Remove `key` if present; return its entry (the caller accounts for it)."""
        if self._fast is None:
            return self.pop(key, None)
        data, order = self._fast
        entry = data.pop(key, None)
        if entry is not None:
            del order[key]
            self._Cache__currsize = len(data)
        return entry

    def popitem(self) -> tuple[str, _Entry]:
        key, entry = super().popitem()
        self._on_drop(entry)
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
        tombstones: int = 10_000,
    ) -> None:
        if maxsize <= 0:
            raise ValueError(f"maxsize must be positive, got {maxsize}")
        self.maxsize = maxsize
        self.default_ttl = default_ttl
        self.max_bytes = max_bytes
        self._timer = timer
        self._lock = threading.Lock()
        self._bytes = 0
        self._data = _LRU(maxsize, self._dropped)
        self._lookup = self._data.lookup
        self._touch = self._data.touch
        # Sequence guard: the last invalidation sequence of recently invalidated keys;
        # keys that fell out of the bounded map count as invalidated at `_floor`.
        self._seq = 0
        self._floor = 0
        self._tombstones: OrderedDict[str, int] = OrderedDict()
        self._tombstone_limit = tombstones

    def _dropped(self, entry: _Entry) -> None:
        self._bytes -= entry[_SIZE]

    def __len__(self) -> int:
        return len(self._data)

    @property
    def bytes_used(self) -> int:
        """Return the summed size of the held entries, as their writers measured them."""
        return self._bytes

    def get(self, key: str) -> object:
        """Return what is held for `key`, or MISSING if absent or expired."""
        with self._lock:
            entry = self._lookup(key)
            if entry is None:
                return MISSING
            if entry[1] is not None and entry[1] <= self._timer():
                self._remove(key)
                return MISSING
            self._touch(key)
            return entry[0]

    def get_many(self, keys: Iterable[str]) -> list[object]:
        """Return what is held for each of `keys` (MISSING where none), under one lock."""
        found: list[object] = []
        with self._lock:
            lookup, touch, now = self._lookup, self._touch, self._timer()
            for key in keys:
                entry = lookup(key)
                if entry is None:
                    found.append(MISSING)
                elif entry[1] is not None and entry[1] <= now:
                    self._remove(key)
                    found.append(MISSING)
                else:
                    touch(key)
                    found.append(entry[0])
        return found

    def remaining_ttl(self, key: str) -> float | _Missing | None:
        """Return the seconds `key` has left (None: no expiry), or MISSING."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return MISSING
            if entry[_EXPIRES_AT] is None:
                return None
            left = entry[_EXPIRES_AT] - self._timer()
            if left <= 0:
                self._remove(key)
                return MISSING
            return left

    def begin_read(self) -> int:
        """Return a token to pass to `fill` once the slower tier has answered."""
        return self._seq

    def fill(self, key: str, held: object, ttl: float | None, since: int, size: int = 0) -> bool:
        """Store what a read fetched, unless `key` was invalidated after `since`."""
        with self._lock:
            if self._changed_since(key, since):
                return False
            self._put(key, held, ttl, size)
            return True

    def fill_many(
        self, entries: Iterable[tuple[str, object, float | None, int]], since: int
    ) -> None:
        """`fill` each (key, held, ttl, size) under one lock: a batch read's fills."""
        with self._lock:
            now = self._timer()
            tombstones, floor, put = self._tombstones, self._floor, self._put_at
            for key, held, ttl, size in entries:
                if tombstones.get(key, floor) <= since:
                    put(key, held, ttl, size, now)

    def put_many_if_unchanged(
        self, entries: Iterable[tuple[str, object, int]], ttl: float | None, since: int
    ) -> None:
        """`put_if_unchanged` each (key, held, size) of a batch written with one TTL."""
        with self._lock:
            now = self._timer()
            self._seq += 1  # one invalidation for the whole batch
            seq, tombstones, floor = self._seq, self._tombstones, self._floor
            for key, held, size in entries:
                raced = tombstones.get(key, floor) > since
                tombstones[key] = seq
                tombstones.move_to_end(key)
                if raced:
                    self._remove(key)
                else:
                    self._put_at(key, held, ttl, size, now)
            self._trim_tombstones()

    def put(self, key: str, held: object, ttl: float | None, size: int = 0) -> None:
        """Store a value this process wrote; it supersedes any read in flight."""
        with self._lock:
            self._invalidate(key)
            self._put(key, held, ttl, size)

    def put_if_unchanged(
        self, key: str, held: object, ttl: float | None, since: int, size: int = 0
    ) -> None:
        """Store a value written at `since`; drop the key if a newer write raced it."""
        self.put_many_if_unchanged(((key, held, size),), ttl, since)

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
            entry = self._data.get(key)
            now = self._timer()
            alive = entry is not None and (entry[_EXPIRES_AT] is None or entry[_EXPIRES_AT] > now)
            new = change(entry[_HELD] if entry is not None and alive else MISSING)
            left = None
            if entry is not None and alive and entry[_EXPIRES_AT] is not None:
                left = entry[_EXPIRES_AT] - now
            self._invalidate(key)
            self._put(key, new, left if alive else None, entry[_SIZE] if entry else 0)
            return new

    def keys(self) -> list[str]:
        """Return the held keys (expired ones included until next touched)."""
        with self._lock:
            return list(self._data)

    # The helpers below expect the lock to be held.

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
        entry = self._data.discard(key)
        if entry is None:
            return 0
        self._bytes -= entry[_SIZE]
        return 1

    def _put(self, key: str, held: object, ttl: float | None, size: int) -> None:
        self._put_at(key, held, ttl, size, self._timer())

    def _put_at(self, key: str, held: object, ttl: float | None, size: int, now: float) -> None:
        if self.default_ttl is not None:
            ttl = self.default_ttl if ttl is None or ttl > self.default_ttl else ttl
        if self.max_bytes is not None and size > self.max_bytes:
            self._remove(key)
            return
        # `store` replaces an older entry itself, reporting it so the byte total stays true.
        self._data.store(key, (held, None if ttl is None else now + ttl, size))
        self._bytes += size
        while self.max_bytes is not None and self._bytes > self.max_bytes:
            self._data.popitem()
