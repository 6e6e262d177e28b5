"""The tier policy, written once as sans-IO flows for both the sync and async shells.

Each operation is a generator: it consults L1, yields the Redis requests it needs
(see `tiercache.commands`), receives their replies, or has a `CacheError` thrown in,
and returns a `Result`. `tiercache.drivers` runs flows over redis-py's sync or async
client; neither colour calls the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from types import GeneratorType
from typing import NamedTuple, Protocol, TypeVar, cast

from returns.result import Failure, Result, Success

from tiercache import commands, envelope
from tiercache.codecs import Codec
from tiercache.errors import CacheError, CorruptData, NotAnInteger, NotSerializable, ValueTooLarge
from tiercache.globs import glob_to_regex
from tiercache.memory import MISSING, MemoryTier
from tiercache.messages import Op
from tiercache.ports import CacheMetricsProtocol

__all__ = ["Flow", "Found", "InvalidationBus", "Outcome", "TierPolicy", "as_flow"]

T = TypeVar("T")
Flow = Generator[commands.Request, object, Result[T, CacheError]]
#: A flow, or its result when it needs no I/O: an L1 hit then builds no generator.
Outcome = Result[T, CacheError] | Flow[T]

_SCAN_COUNT = 1000
_DELETE_BATCH = 500
#: Largest value a tracked `set` reads back to keep in L1 (see `_write_tracked`); a larger
#: one is written alone and dropped from L1, rather than sent back over the wire.
_READ_BACK_LIMIT = 64 * 1024


class InvalidationBus(Protocol):
    """Where writes announce themselves to the L1s of this and other processes."""

    @property
    def channel(self) -> str:
        """Return the pub/sub channel, or '' when other processes are not told."""
        ...

    def message(self, op: Op, keys: Sequence[str] = (), pattern: str = "") -> str:
        """Return the text that tells other processes about a change."""
        ...

    def announce_locally(
        self, source: MemoryTier | None, op: Op, keys: Sequence[str] = (), pattern: str = ""
    ) -> None:
        """Apply a change to every other L1 of this process, synchronously."""
        ...

    def fills_allowed(self) -> bool:
        """Return whether L1 may be filled from L2 now (false while deaf to others)."""
        ...

    @property
    def tracks(self) -> bool:
        """Return whether reads that fill L1 must be tracked by Redis (`commands.Fill`)."""
        ...

    def filled(self, key: str) -> None:
        """Note that L1 took `key` from a tracked read."""
        ...

    def wrote(self, keys: Sequence[str], *, surely: bool = True) -> None:
        """Note keys this process changed in Redis (or may have: `surely=False`)."""
        ...

    @property
    def keeps_own_writes(self) -> bool:
        """Return whether a write may put its value in this process's L1."""
        ...


class Found(NamedTuple):
    """A value read with its life: what get_or_set needs to tell fresh from stale."""

    #: The value, or MISSING.
    value: object
    #: Its codec bytes as Redis holds them; None when L1 answered.
    raw: bytes | None
    #: Seconds it has left in the tier that answered; None: no expiry.
    left: float | None


def as_flow(outcome: Outcome[T]) -> Flow[T]:
    """Return `outcome` as a flow, to `yield from` it inside another flow."""
    if isinstance(outcome, GeneratorType):
        result: Result[T, CacheError] = yield from outcome
        return result
    return cast("Result[T, CacheError]", outcome)


def _not_an_integer(key: str, amount: int, overflow: bool) -> NotAnInteger:
    """Return why adding `amount` to `key` failed (Redis's error text tells which)."""
    if overflow:
        message = f"adding {amount} to the value of key {{key}} would overflow 64 bits"
    else:
        message = "value of key {key} is not an integer"
    return NotAnInteger(message, key=key)


def _ms(seconds: float | None) -> int:
    """Return a TTL in whole milliseconds for Redis, 0 meaning none."""
    return 0 if seconds is None else max(1, round(seconds * 1000))


class TierPolicy:
    """Read-through and write-through over an optional L1 and an optional L2."""

    def __init__(
        self,
        *,
        l1: MemoryTier | None,
        has_l2: bool,
        codec: Codec,
        bus: InvalidationBus,
        metrics: CacheMetricsProtocol | None = None,
        max_value_bytes: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if l1 is None and not has_l2:
            raise ValueError("a cache needs at least one tier: give an L1 size or a Redis URL")
        self.l1 = l1
        self.has_l2 = has_l2
        self.codec = codec
        self.bus = bus
        self.metrics = metrics
        self.max_value_bytes = max_value_bytes
        # Wall-clock seconds: value envelopes carry absolute expiry times that every
        # host must read alike (see `tiercache.envelope`).
        self._clock = clock

    # -- metrics ---------------------------------------------------------------------

    def _hit(self, namespace: str, tier: str) -> None:
        if self.metrics is not None:
            self.metrics.record_hit(namespace, tier)

    def _miss(self, namespace: str) -> None:
        if self.metrics is not None:
            self.metrics.record_miss(namespace)

    def _error(self, namespace: str, error: CacheError) -> None:
        if self.metrics is not None:
            self.metrics.record_error(namespace, type(error).__name__)

    def failed(self, namespace: str, error: CacheError) -> Failure[CacheError]:
        """Count `error` against `namespace` and return it as a `Failure`."""
        self._error(namespace, error)
        return Failure(error)

    # -- helpers ---------------------------------------------------------------------

    def _decode(self, key: str, namespace: str, raw: object) -> object:
        """Return the value of a Redis reply, or MISSING (counted) if it is corrupt."""
        if not isinstance(raw, bytes):
            return MISSING
        try:
            return self.codec.loads(key, raw)
        except CorruptData as error:
            error.key = key
            self._error(namespace, error)
            return MISSING

    def _header(self, ttl: float | None) -> bytes:
        """Return the envelope digits of a value written now to live `ttl` seconds."""
        return envelope.stamp(None if ttl is None else int(self._clock() * 1000) + _ms(ttl))

    def _encode(self, key: str, value: object) -> bytes:
        try:
            raw = self.codec.dumps(key, value)
        except NotSerializable as error:
            raise NotSerializable(f"value for key {{key}}: {error}", key=key) from None
        if self.max_value_bytes is not None and len(raw) > self.max_value_bytes:
            raise ValueTooLarge(
                f"value for key {{key}} is {len(raw)} bytes, over the limit of "
                f"{self.max_value_bytes}",
                key=key,
            )
        return raw

    def _seconds_left(self, pttl: object) -> float | None:
        """Return what a PTTL reply means for L1: None for no expiry, 0.0 for gone."""
        if isinstance(pttl, int) and pttl > 0:
            return pttl / 1000
        return None if pttl == -1 else 0.0

    def _ask_ttls(self, keys: list[str]) -> Generator[commands.Request, object, list[float | None]]:
        """Return the seconds each of `keys` has left, asking Redis (for bare values).

        A failure only means L1 is not filled, so it returns 0.0 for every key.
        """
        try:
            if len(keys) == 1:
                pttls = [(yield ("PTTL", keys[0]))]
            else:
                reply = yield [("PTTL", key) for key in keys]
                pttls = reply if isinstance(reply, list) else []
        except CacheError:
            return [0.0] * len(keys)
        return [self._seconds_left(pttl) for pttl in pttls] + [0.0] * (len(keys) - len(pttls))

    def _fill(
        self, key: str, value: object, raw: bytes, left: float | None, since: int, *, tracked: bool
    ) -> None:
        """Put what L2 answered into L1, for no longer than L2 keeps it."""
        if self.l1 is not None and (left is None or left > 0):
            filled = self.l1.fill(key, self.codec.to_l1(value, raw), left, since, len(raw))
            if filled and tracked:
                self.bus.filled(key)

    def _write(
        self, request: list[commands.Command], op: Op, keys: Sequence[str] = (), pattern: str = ""
    ) -> Generator[commands.Request, object, list[object]]:
        """Send the write commands of `request` and return their replies.

        In broadcast mode one PUBLISH of the whole change rides in the same round trip;
        otherwise the writes go alone (in tracking mode Redis tells the holders itself).
        """
        channel = self.bus.channel
        if channel:
            request = [*request, ("PUBLISH", channel, self.bus.message(op, keys, pattern))]
        if len(request) == 1:
            return [(yield request[0])]
        replies = yield request
        return replies if isinstance(replies, list) else [replies]

    def _write_tracked(
        self, command: commands.Command, key: str, wrapped: bytes
    ) -> Generator[commands.Request, object, tuple[object, bool]]:
        """Write one key through its fill connection and read it back tracked.

        Return (the write's reply, whether L1 may keep the written value). Redis forgets
        every tracker of a key when it changes; reading it back in the same round trip
        tracks it again, so this process's L1 keeps what it wrote, and the fill
        connection's NOLOOP spares us the echo. A busy fill connection (or a deaf
        process) sends the write alone through the pool, and L1 then drops the key.
        """
        request = commands.Fill(("GET", key), write=command)
        reply, tracked = self._tracked(request, (yield request))
        if not tracked:
            self.bus.wrote((key,) if reply else ())
            return reply, False
        stored, current = reply if isinstance(reply, tuple) else (None, None)
        if current == wrapped and self.bus.fills_allowed():
            self.bus.filled(key)
            return stored, True
        return stored, False

    def _read_request(self, command: commands.Command) -> commands.Request:
        """Return how to send a read whose answer fills L1 (tracked, in tracking mode)."""
        return commands.Fill(command) if self.l1 is not None and self.bus.tracks else command

    @staticmethod
    def _tracked(request: commands.Request, reply: object) -> tuple[object, bool]:
        """Return a read's reply, and whether L1 may keep what it says."""
        answer, tracked = TierPolicy._tracked_keys(request, reply)
        return answer, tracked is True

    @staticmethod
    def _tracked_keys(
        request: commands.Request, reply: object
    ) -> tuple[object, bool | frozenset[str]]:
        """Return a read's reply, and whether L1 may keep it: all of it, none, or these keys.

        A batch read over many nodes (a cluster) may be tracked on some of them only.
        """
        if isinstance(request, commands.Fill):
            answer, tracked = reply if isinstance(reply, tuple) else (reply, False)
            return answer, tracked if isinstance(tracked, frozenset) else tracked is True
        return reply, True

    def _announce(self, op: Op, keys: Sequence[str] = (), pattern: str = "") -> None:
        """Tell this process's other L1s, once the change is in the shared tier."""
        self.bus.announce_locally(self.l1, op, keys, pattern)

    def _changed(self, keys: Sequence[str], *, surely: bool = True) -> None:
        """Drop `keys` from every L1 of this process once their change reached Redis.

        Invalidating before the change is not enough: a read that overlapped it may
        have seen the old value and would fill it; this refuses or drops that fill.
        `surely=False`: a failed write, which may or may not have been applied.
        """
        self.bus.wrote(keys, surely=surely)
        if self.l1 is not None:
            self.l1.invalidate(keys)
        self._announce("keys", keys)

    # -- reads -----------------------------------------------------------------------

    def lookup(self, key: str, namespace: str) -> object:
        """Return the value L1 holds for `key` (counted as a hit), or MISSING.

        The one L1 lookup of every shell: a hit is a plain value, with no `Result`,
        flow or driver to build ("get hit (L1)" in benchmarks/). A miss is not
        counted here: the shell goes on to `get`, which counts it.
        """
        l1 = self.l1
        if l1 is None:
            return MISSING
        held = l1.get(key)
        if held is MISSING:
            return MISSING
        metrics = self.metrics
        if metrics is not None:
            metrics.record_hit(namespace, "l1")
        return self.codec.from_l1(held)

    def get(self, key: str, namespace: str, grace: float | None = None) -> Outcome[object]:
        """Return the value of `key`, or MISSING: the one read path of every shell.

        An L1 hit (see `lookup`) answers at once with a `Success`, building no flow;
        anything else is a flow. With `grace` (get_or_set's stale window) the answer
        is a `Found` instead, and L1 answers only for a copy with more than `grace`
        seconds left (or when there is no L2): a copy about to go stale may be fresh
        in Redis.
        """
        l1 = self.l1
        if l1 is not None:
            if grace is None:
                value = self.lookup(key, namespace)
                if value is not MISSING:
                    return Success(value)
            else:
                found = l1.get_with_ttl(key)
                if isinstance(found, tuple):
                    held, left = found
                    if left is None or left > grace or not self.has_l2:
                        self._hit(namespace, "l1")
                        return Success(Found(self.codec.from_l1(held), None, left))
        return self._read(key, namespace, found=grace is not None)

    def _read(self, key: str, namespace: str, *, found: bool) -> Flow[object]:
        """GET `key` from L2 and fill L1; return the value, or a `Found` if `found`."""
        if not self.has_l2:
            return self._missed(namespace, found)
        l1 = self.l1
        since = l1.begin_read() if l1 is not None else 0
        request = self._read_request(("GET", key))
        try:
            stored, tracked = self._tracked(request, (yield request))
        except CorruptData as error:
            return self.failed(namespace, CorruptData(f"key {{key}}: {error}", key=key))
        except CacheError as error:
            return self.failed(namespace, error)
        if not isinstance(stored, bytes):
            return self._missed(namespace, found)
        raw, left = envelope.unwrap(stored, self._clock() * 1000)
        value = self._decode(key, namespace, raw)
        if value is MISSING:
            return self._missed(namespace, found)
        self._hit(namespace, "l2")
        fill = l1 is not None and tracked and self.bus.fills_allowed()
        if left is envelope.UNKNOWN:
            if not (fill or found):
                return Success(value)
            [left] = yield from self._ask_ttls([key])
        if fill:
            self._fill(key, value, raw, left, since, tracked=isinstance(request, commands.Fill))
        if not found:
            return Success(value)
        return Success(Found(value, raw, None if left is None else max(left, 0.0)))

    def _missed(self, namespace: str, found: bool) -> Success[object]:
        self._miss(namespace)
        return Success(Found(MISSING, None, None) if found else MISSING)

    def get_many(self, keys: Sequence[tuple[str, str]]) -> Flow[dict[str, object]]:
        """Return the values found for (key, namespace) pairs, keyed by key.

        One L1 lock for the lookups, one MGET for the rest, one L1 lock for the fills.
        """
        found: dict[str, object] = {}
        l1 = self.l1
        wanted = list(keys)
        if l1 is not None:
            held_values = l1.get_many([key for key, _ in keys])
            wanted = []
            for (key, namespace), held in zip(keys, held_values, strict=True):
                if held is MISSING:
                    wanted.append((key, namespace))
                else:
                    self._hit(namespace, "l1")
                    found[key] = self.codec.from_l1(held)
        if not wanted:
            return Success(found)
        if not self.has_l2:
            for _, namespace in wanted:
                self._miss(namespace)
            return Success(found)
        since = l1.begin_read() if l1 is not None else 0
        request = self._read_request(("MGET", *[key for key, _ in wanted]))
        try:
            reply, tracked = self._tracked_keys(request, (yield request))
        except CacheError as error:
            return self.failed(wanted[0][1], error)
        if not isinstance(reply, list) or len(reply) != len(wanted):
            reply = [None] * len(wanted)
        fill = l1 is not None and bool(tracked) and self.bus.fills_allowed()
        keep = (tracked if isinstance(tracked, frozenset) else None) if fill else frozenset()
        fills, bare = self._decode_batch(wanted, reply, found, keep)
        if bare:
            lefts = yield from self._ask_ttls([key for key, _, _ in bare])
            for (key, value, raw), seconds in zip(bare, lefts, strict=True):
                if seconds is None or seconds > 0:
                    fills.append((key, self.codec.to_l1(value, raw), seconds, len(raw)))
        if fills and l1 is not None:
            l1.fill_many(fills, since)
        return Success(found)

    def _decode_batch(
        self,
        wanted: list[tuple[str, str]],
        reply: Sequence[object],
        found: dict[str, object],
        keep: frozenset[str] | None,
    ) -> tuple[list[tuple[str, object, float | None, int]], list[tuple[str, object, bytes]]]:
        """Put the value of each (key, namespace) read into `found`, counting hits and misses.

        Return the L1 fills (key, held, ttl, size) of the keys L1 may keep (`keep`; None:
        all), and the bare values among them (key, value, raw), whose TTL only PTTL knows.
        Per key, this loop is most of a cold batch's cost in Python, so the metrics and
        codec callables are looked up once, before it.
        """
        now_ms = self._clock() * 1000
        fills: list[tuple[str, object, float | None, int]] = []
        bare: list[tuple[str, object, bytes]] = []
        metrics = self.metrics
        hit = metrics.record_hit if metrics is not None else None
        miss = metrics.record_miss if metrics is not None else None
        loads, to_l1 = self.codec.loads, self.codec.to_l1
        unwrap, unknown = envelope.unwrap, envelope.UNKNOWN
        for (key, namespace), stored in zip(wanted, reply, strict=True):
            if type(stored) is not bytes:
                if miss is not None:
                    miss(namespace)
                continue
            raw, left = unwrap(stored, now_ms)
            try:
                value = loads(key, raw)
            except CorruptData as error:
                error.key = key
                self._error(namespace, error)
                if miss is not None:
                    miss(namespace)
                continue
            if hit is not None:
                hit(namespace, "l2")
            found[key] = value
            if keep is not None and key not in keep:
                continue
            if left is unknown:
                bare.append((key, value, raw))
            elif left is None or left > 0:
                fills.append((key, to_l1(value, raw), left, len(raw)))
        return fills, bare

    def exists(self, key: str, namespace: str) -> Flow[bool]:
        """Return whether `key` holds a value in any tier."""
        if self.l1 is not None and self.l1.get(key) is not MISSING:
            return Success(True)
        if not self.has_l2:
            return Success(False)
        try:
            reply = yield ("EXISTS", key)
        except CacheError as error:
            return self.failed(namespace, error)
        return Success(reply == 1)

    def ttl(self, key: str, namespace: str) -> Flow[float | object | None]:
        """Return the seconds `key` has left, None for no expiry, or MISSING."""
        if not self.has_l2:
            assert self.l1 is not None
            return Success(self.l1.remaining_ttl(key))
        try:
            reply = yield ("PTTL", key)
        except CacheError as error:
            return self.failed(namespace, error)
        if reply == -2 or not isinstance(reply, int):
            return Success(MISSING)
        return Success(None if reply == -1 else reply / 1000)

    def ping(self) -> Flow[bool]:
        """Return True when every configured tier answers."""
        if not self.has_l2:
            return Success(True)
        try:
            reply = yield ("PING",)
        except CacheError as error:
            return Failure(error)
        return Success(bool(reply))

    # -- writes ----------------------------------------------------------------------

    def set(
        self,
        key: str,
        namespace: str,
        value: object,
        ttl: float | None,
        *,
        only_if_absent: bool = False,
        only_if_present: bool = False,
    ) -> Flow[bool]:
        """Store `value` for `ttl` seconds (None: no expiry); return whether it was stored.

        `only_if_absent` is Redis's NX, `only_if_present` its XX.
        """
        try:
            raw = self._encode(key, value)
        except CacheError as error:
            error.key = key
            return self.failed(namespace, error)
        l1 = self.l1
        if not self.has_l2:
            assert l1 is not None
            held = l1.get(key) is not MISSING
            if (only_if_absent and held) or (only_if_present and not held):
                return Success(False)
            l1.put(key, self.codec.to_l1(value, raw), ttl, len(raw))
            self._announce("keys", (key,))
            return Success(True)
        since = l1.begin_read() if l1 is not None else 0
        wrapped = envelope.wrap(raw, self._header(ttl))
        command: commands.Command = ("SET", key, wrapped)
        if ttl is not None:
            command += ("PX", _ms(ttl))
        if only_if_absent:
            command += ("NX",)
        elif only_if_present:
            command += ("XX",)
        keep = l1 is not None and self.bus.fills_allowed()
        try:
            if l1 is not None and self.bus.tracks and len(wrapped) <= _READ_BACK_LIMIT:
                stored, keep = yield from self._write_tracked(command, key, wrapped)
            else:
                [stored, *_] = yield from self._write([command], "keys", (key,))
                self.bus.wrote((key,) if stored else ())
                keep = keep and self.bus.keeps_own_writes
        except CacheError as error:
            self._changed((key,), surely=False)  # a timed-out write may still have happened
            return self.failed(namespace, error)
        if l1 is not None:
            if stored and keep:
                l1.put_if_unchanged(key, self.codec.to_l1(value, raw), ttl, since, len(raw))
            else:
                # Another value won, we may be deaf to others, or (tracking) nothing
                # tracks the key for us any more: the next read fills it, tracked.
                l1.invalidate((key,))
        if stored:
            self._announce("keys", (key,))
        return Success(bool(stored))

    def set_many(
        self, items: Sequence[tuple[str, str, object]], ttl: float | None
    ) -> Flow[list[str]]:
        """Store (key, namespace, value) triples in one round trip; return failed keys."""
        encoded: list[tuple[str, object, bytes]] = []
        for key, namespace, value in items:
            try:
                encoded.append((key, value, self._encode(key, value)))
            except CacheError as error:
                error.key = key
                return self.failed(namespace, error)
        if not encoded:
            return Success([])
        keys = [key for key, _, _ in encoded]
        l1 = self.l1
        if not self.has_l2:
            assert l1 is not None
            for key, value, raw in encoded:
                l1.put(key, self.codec.to_l1(value, raw), ttl, len(raw))
            self._announce("keys", keys)
            return Success([])
        since = l1.begin_read() if l1 is not None else 0
        header, wrap = self._header(ttl), envelope.wrap
        writes: list[commands.Command]
        if ttl is None:
            pairs = [part for key, _, raw in encoded for part in (key, wrap(raw, header))]
            writes = [("MSET", *pairs)]
        else:
            px = _ms(ttl)
            writes = [("SET", key, wrap(raw, header), "PX", px) for key, _, raw in encoded]
        try:
            yield from self._write(writes, "keys", keys)
        except CacheError as error:
            self._changed(keys, surely=False)  # a timed-out write may still have happened
            return self.failed(items[0][1], error)
        self.bus.wrote(keys)
        if l1 is not None and self.bus.keeps_own_writes and self.bus.fills_allowed():
            held = [(key, self.codec.to_l1(value, raw), len(raw)) for key, value, raw in encoded]
            l1.put_many_if_unchanged(held, ttl, since)
        elif l1 is not None:
            l1.invalidate(keys)
        self._announce("keys", keys)
        return Success([])

    def delete(self, keys: Sequence[str], namespace: str) -> Flow[int]:
        """Remove `keys` from every tier; return how many existed."""
        l1 = self.l1
        held = l1.invalidate(keys) if l1 is not None else 0
        self._announce("keys", keys)
        if not self.has_l2:
            return Success(held)
        removed = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = list(keys[start : start + _DELETE_BATCH])
            try:
                [reply, *_] = yield from self._write([("UNLINK", *batch)], "keys", batch)
            except CacheError as error:
                self._changed(keys, surely=False)
                return self.failed(namespace, error)
            removed += reply if isinstance(reply, int) else 0
        self._changed(keys)
        return Success(removed)

    def expire(self, key: str, namespace: str, ttl: float | None) -> Flow[bool]:
        """Give `key` a new TTL (None: keep it forever); return whether the key exists."""
        l1 = self.l1
        if not self.has_l2:
            assert l1 is not None
            return Success(l1.expire(key, ttl))
        if l1 is not None:
            l1.invalidate((key,))
        millis = -1 if ttl is None else _ms(ttl)
        expire = commands.evalsha(commands.EXPIRE, [key], millis, self._header(ttl))
        try:
            [reply, *_] = yield from self._write([expire], "keys", (key,))
        except CacheError as error:
            self._changed((key,), surely=False)
            return self.failed(namespace, error)
        self._changed((key,))
        return Success(reply == 1)

    def increment(
        self, key: str, namespace: str, amount: int, *, must_exist: bool = False
    ) -> Flow[int | None]:
        """Add `amount` atomically; return the new value, or None if absent and must exist."""
        l1 = self.l1
        if not self.has_l2:
            assert l1 is not None
            try:
                return Success(self._increment_l1(l1, key, amount, must_exist))
            except CacheError as error:
                return self.failed(namespace, error)
        if l1 is not None:
            l1.invalidate((key,))
        add: commands.Command = ("INCRBY", key, amount)
        if must_exist:
            add = commands.evalsha(commands.INCREMENT_EXISTING, [key], amount)
        try:
            [reply, *_] = yield from self._write([add], "keys", (key,))
        except NotAnInteger as error:
            return self.failed(namespace, _not_an_integer(key, amount, "overflow" in str(error)))
        except CorruptData as error:
            return self.failed(namespace, CorruptData(f"key {{key}}: {error}", key=key))
        except CacheError as error:
            self._changed((key,), surely=False)
            return self.failed(namespace, error)
        self._changed((key,))
        return Success(reply if isinstance(reply, int) else None)

    def _increment_l1(self, l1: MemoryTier, key: str, amount: int, must_exist: bool) -> int | None:
        def change(held: object) -> object:
            current = 0 if held is MISSING else self.codec.to_int(self.codec.from_l1(held))
            if current is None:
                raise _not_an_integer(key, amount, overflow=False)
            if not -(2**63) <= current + amount < 2**63:  # Redis's INCRBY range
                raise _not_an_integer(key, amount, overflow=True)
            return self.codec.to_l1(self.codec.from_int(current + amount), b"")

        if must_exist and l1.get(key) is MISSING:
            return None
        return self.codec.to_int(self.codec.from_l1(l1.update(key, change)))

    def scan(
        self, glob: str, cursor: int = 0, count: int | None = None
    ) -> Flow[tuple[int, list[str]]]:
        """Return the next cursor (0: done) and a batch of keys matching the Redis glob `glob`.

        One SCAN step, never KEYS; without L2, L1's keys in one step.
        """
        if not self.has_l2:
            l1, pattern = self.l1, glob_to_regex(glob)
            assert l1 is not None
            held = l1.keys()  # a snapshot taken under L1's lock
            live = [key for key in held if pattern.fullmatch(key) and l1.get(key) is not MISSING]
            return Success((0, live))
        try:
            reply = yield ("SCAN", cursor, "MATCH", glob, "COUNT", count or _SCAN_COUNT)
        except CacheError as error:
            return Failure(error)
        next_cursor, batch = reply if isinstance(reply, list | tuple) else (0, [])
        keys = [key.decode() if isinstance(key, bytes) else str(key) for key in batch]
        return Success((int(next_cursor), keys))

    def delete_matching(self, glob: str, namespace: str, count: int | None = None) -> Flow[int]:
        """Remove every key matching the Redis glob `glob`; return how many.

        `count` is the SCAN batch size hint (None: the default).
        """
        held = self.l1.invalidate_matching(glob_to_regex(glob)) if self.l1 is not None else 0
        self._announce("pattern", pattern=glob)
        if not self.has_l2:
            return Success(held)
        removed = 0
        cursor: int = 0
        try:
            while True:
                reply = yield ("SCAN", cursor, "MATCH", glob, "COUNT", count or _SCAN_COUNT)
                cursor, batch = reply if isinstance(reply, list | tuple) else (0, [])
                cursor = int(cursor)
                if batch:
                    unlinked = yield ("UNLINK", *batch)
                    removed += unlinked if isinstance(unlinked, int) else 0
                if cursor == 0:
                    break
            if self.bus.channel:  # tracking mode: the UNLINKs told the holders
                yield from self._write([], "pattern", pattern=glob)
        except CacheError as error:
            return self.failed(namespace, error)
        finally:
            # Again now it is done, for reads that overlapped the deletes (see `_changed`).
            if self.l1 is not None:
                self.l1.invalidate_matching(glob_to_regex(glob))
            self._announce("pattern", pattern=glob)
        return Success(removed)
