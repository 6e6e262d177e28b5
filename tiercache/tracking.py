"""Server-assisted tracking of the keys L1 holds: the fill connections of one Redis node.

Per process and node, the cache owns one invalidation connection (run by
`tiercache.listener.Listener` over `tiercache.redis_pubsub.TrackingSubscriber`) and a
few fill connections, each with `CLIENT TRACKING ON REDIRECT <invalidation id> OPTOUT`:
a fill connection only reads for L1 (and writes, which are never tracked), so every
read on it is tracked with no `CLIENT CACHING YES` before it. A read that will fill L1
goes to its key's fill connection (a key always to the same one, so Redis sends one
message per holding process); Redis then tells the invalidation connection when the
key changes, whoever changed it. Writes are plain commands on the ordinary pool. A
key counts as covered by its connection from before the read is sent, so that a drop
of everything a node vouched for also refuses reads still in flight.

What each loss clears (Redis forgets a connection's tracked keys when it closes, and
says nothing):
* a fill connection: the keys it read are dropped from every L1 of the bus, as soon as
  Redis is known to answer (at once after an error reply or when the listener finds it
  dead; after a connection error, at the next fill of that connection or the listener's
  next heartbeat tick, whichever comes first). While Redis is unreachable L1 keeps
  serving them, as it does every copy, until the invalidation connection is back;
* the invalidation connection: the whole bus (the listener clears it on resubscribe),
  and every fill connection is re-armed to the new id before it fills again.

A fill connection that is busy is not waited for: the read goes through the ordinary
pool and does not fill L1, so misses never queue behind one socket.

Own writes go through the ordinary pool, so Redis echoes an invalidation for a key this
process held. The writer has already dropped its copies; the echo would also drop the
copy a read made right after the write. So a write of a key known to be held
(`held`: filled, no invalidation heard since) expects exactly one echo, and that one
message is ignored (`expect_echo`, `heard`). The known-held set errs only towards
"not held": an unexpected echo costs one more read, never a stale copy.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import redis.exceptions as rex

from tiercache.commands import Command, Fill

_pack: Callable[[Command], bytes] | None
try:
    from hiredis import pack_command

    _pack = cast("Callable[[Command], bytes]", pack_command)  # its stub says a 1-tuple
except ImportError:  # redis-py packs then, more slowly
    _pack = None

if TYPE_CHECKING:
    from tiercache.topology import Nodes

__all__ = ["Claim", "Hearing", "Pending", "Received", "Tracking"]

#: Keys a fill connection remembers having read; past it, they are dropped from L1 and
#: forgotten (Redis keeps tracking them; an invalidation for them is then harmless).
COVERAGE_LIMIT = 100_000


@dataclass(eq=False)
class _Slot:
    """One fill connection, used by one caller at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    connection: Any = None
    #: The tracking generation the connection is armed for (-1: not armed).
    generation: int = -1
    #: The keys read through it since it was armed.
    covered: set[str] = field(default_factory=set)
    #: Keys a lost connection had read, to drop once Redis is known to answer.
    orphans: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Claim:
    """The fill connections a read holds, each with the keys it reads there."""

    fill: Fill
    groups: tuple[tuple[_Slot, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Pending:
    """A claimed read sent on its fill connections, its replies not read yet."""

    claim: Claim
    generation: int
    sent: list[tuple[_Slot, tuple[str, ...], Any, int]]


@dataclass(frozen=True)
class Received:
    """The replies of a tracked read: per key (error replies as values), and the write's."""

    values: dict[str, object]
    #: The keys whose reply is an error (WRONGTYPE, MOVED...).
    errors: list[str]
    written: object
    #: False when the invalidation connection resubscribed meanwhile: L1 must not keep it.
    tracked: bool


class Hearing(Protocol):
    """What hears a node's invalidations: a `LocalBus`, or one primary's share of it."""

    @property
    def instance_id(self) -> str:
        """Return this process's id."""
        ...

    def fills_allowed(self) -> bool:
        """Return whether the node's invalidation connection is subscribed (starting it)."""
        ...

    def drop(self, keys: Iterable[str]) -> None:
        """Drop `keys` from every L1 that hears this node."""
        ...


class Tracking:
    """The fill connections of one node, and the id their invalidations go to.

    `per_key`: read each key with its own GET (a cluster node: the keys of one read
    span many slots, and a multi-key command must stay in one).
    """

    def __init__(
        self, bus: Hearing, topology: Nodes, node: str, slots: int = 2, *, per_key: bool = False
    ) -> None:
        self.bus = bus
        self.topology = topology
        self.node = node
        self.per_key = per_key
        self._slots = [_Slot() for _ in range(max(1, slots))]
        #: Client id of the invalidation connection; None until it has subscribed.
        self.redirect_id: int | None = None
        #: Bumped on every (re)subscribe: fill connections re-arm before their next fill.
        self.generation = 0
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        #: Counters for metrics: tracked reads, fill connections lost, echoes ignored.
        self.fills = 0
        self.lost = 0
        self.echoes = 0
        # Keys filled into L1 through a tracked read and not invalidated since, and keys
        # whose next invalidation is the echo of our own write (see the module doc).
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._echoes: set[str] = set()

    @property
    def connections(self) -> int:
        """Return how many fill connections this node may open."""
        return len(self._slots)

    def redirect_to(self, client_id: int) -> None:
        """Send invalidations to `client_id` from now on (the listener just subscribed)."""
        self.redirect_id = client_id
        self.generation += 1
        self.forget_held()
        # The orphans stay: a cluster primary's ear drops only what it vouched for,
        # orphans included, right after this (a standalone bus clears every L1).

    def held(self, key: str) -> None:
        """Note that L1 took `key` from a tracked read that no invalidation raced."""
        with self._lock:
            if len(self._held) >= COVERAGE_LIMIT:
                self._held.clear()  # forgetting only costs an unexpected echo
            self._held.add(key)

    def expect_echo(self, keys: Iterable[str], *, surely: bool = True) -> None:
        """Note that this process wrote `keys`: Redis echoes one message for each held.

        `surely=False` (a write that failed, applied or not): expect nothing, forget.
        """
        held = self._held
        if not held:
            return
        with self._lock:
            for key in keys:
                if key in held:
                    held.remove(key)
                    if surely:
                        self._echoes.add(key)

    def heard(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """Return the invalidated keys that are not the echo of our own write."""
        with self._lock:
            echoes = self._echoes
            if not echoes:
                self._held.difference_update(keys)
                return keys
            news = tuple(key for key in keys if key not in echoes)
            echoes.difference_update(keys)
            self._held.difference_update(news)
        self.echoes += len(keys) - len(news)
        return news

    def forget_held(self) -> None:
        """Forget every held key and expected echo (a flush, or a lost connection)."""
        with self._lock:
            self._held.clear()
            self._echoes.clear()

    def usable(self) -> bool:
        """Return whether a tracked read may be sent now (not while deaf)."""
        hearing = self.bus.fills_allowed()  # starts the listener if it is not running
        return hearing and self.redirect_id is not None

    def _slot_of(self, key: str) -> _Slot:
        # hash() is stable within a process (all that "always the same one" needs).
        slots = self._slots
        return slots[hash(key) % len(slots)] if len(slots) > 1 else slots[0]

    def claim(self, fill: Fill, wait: float = 0.0) -> Claim | None:
        """Take the fill connections of `fill`'s keys, or None if one stays busy.

        With one connection to take, wait for it at most `wait` seconds: a fill round
        trip takes about as long as a pool one, so a short wait fills L1 where skipping
        would not, and the bound keeps a burst of misses from queueing behind it.
        """
        keys = fill.keys
        if len(keys) == 1 or len(self._slots) == 1:  # the usual case: one connection
            slot = self._slot_of(keys[0])
            free = slot.lock.acquire(timeout=wait) if wait > 0 else slot.lock.acquire(False)
            if not free:
                return None
            return Claim(fill, ((slot, keys),))
        grouped: dict[_Slot, list[str]] = {}
        for key in keys:
            grouped.setdefault(self._slot_of(key), []).append(key)
        taken: list[_Slot] = []
        for slot in grouped:
            if not slot.lock.acquire(blocking=False):
                for held in taken:
                    held.lock.release()
                return None
            taken.append(slot)
        return Claim(fill, tuple((slot, tuple(keys)) for slot, keys in grouped.items()))

    def run(self, claim: Claim) -> object:
        """Send a claimed read tracked and return its reply; release the connections.

        Raises redis-py's exceptions; a connection that failed is dropped with what it
        covered. A refused write or a WRONGTYPE read is raised as its error reply.
        """
        received = self.collect(self.dispatch(claim))
        fill = claim.fill
        if isinstance(received.written, rex.ResponseError):
            raise received.written
        values = [received.values.get(key) for key in fill.keys]
        for value in values:
            if isinstance(value, rex.ResponseError):
                raise value  # WRONGTYPE and the like: the connection is still in sync
        read = values if fill.command[0] == "MGET" else values[0]
        return read if fill.write is None else (received.written, read)

    @staticmethod
    def release(claim: Claim) -> None:
        """Give back the fill connections of `claim`."""
        for slot, _ in claim.groups:
            slot.lock.release()

    def dispatch(self, claim: Claim) -> Pending:
        """Send a claimed read (and its write) tracked; read the replies with `receive`.

        On failure the claim is released, the connections dropped, and redis-py's
        exception raised.
        """
        generation, redirect = self.generation, self.redirect_id
        fill = claim.fill
        sent: list[tuple[_Slot, tuple[str, ...], Any, int]] = []
        try:
            for slot, keys in claim.groups:
                # Covered before the read: a node-wide drop meanwhile names these keys too.
                self._cover(slot, keys)
                if slot.connection is None:
                    slot.connection = self.topology.open_connection(self.node)
                commands: list[Command] = []
                if slot.generation != generation:
                    commands += [
                        ("CLIENT", "SETNAME", f"tiercache-fill-{self.bus.instance_id}"),
                        # OPTOUT: every read here is for L1 and so tracked, with no
                        # `CLIENT CACHING YES` before it; writes are never tracked.
                        # NOLOOP: a write sent here (see `Fill.write`) is not echoed back.
                        ("CLIENT", "TRACKING", "ON", "REDIRECT", redirect or 0, "OPTOUT", "NOLOOP"),
                    ]
                if fill.write is not None:
                    commands.append(fill.write)
                setup = len(commands)
                if self.per_key:  # a cluster: one slot per command, never CROSSSLOT
                    commands += [("GET", key) for key in keys]
                else:
                    commands.append((fill.command[0], *keys))
                connection = slot.connection
                connection.send_packed_command(packed(connection, commands), check_health=False)
                sent.append((slot, keys, connection, setup))
        except BaseException as error:
            for slot, _ in claim.groups:
                self._lose(slot, answered=isinstance(error, rex.ResponseError))
            self.release(claim)
            raise
        return Pending(claim, generation, sent)

    def collect(self, pending: Pending) -> Received:
        """Read the replies of a sent read and release its connections.

        Raises redis-py's exceptions for a lost connection or a refused setup command;
        error replies to the read or the write are values.
        """
        claim = pending.claim
        values: dict[str, object] = {}
        errors: list[str] = []
        written: object = None
        try:
            for slot, keys, connection, setup in pending.sent:
                head = [_read(connection) for _ in range(setup)]
                if claim.fill.write is not None:
                    written = head.pop()  # in sync: its error is the caller's
                if self.per_key:
                    _read_each(connection, keys, values, errors)
                else:
                    reply = _read(connection)
                    data = reply if isinstance(reply, list) else [reply] * len(keys)
                    values.update(zip(keys, data, strict=False))
                    if isinstance(reply, rex.ResponseError):
                        errors += keys
                for reply in head:
                    if isinstance(reply, rex.ResponseError):
                        raise reply  # a refused CLIENT command: the connection is unusable
                slot.generation = pending.generation
                if slot.orphans:  # Redis answers: drop what a lost connection had read
                    orphans, slot.orphans = slot.orphans, set()
                    self.bus.drop(orphans)
        except BaseException as error:
            for slot, _ in claim.groups:
                self._lose(slot, answered=isinstance(error, rex.ResponseError))
            raise
        finally:
            self.release(claim)
        self.fills += 1
        # A resubscribe since the send: the read may be tracked for a dead connection.
        return Received(values, errors, written, tracked=self.generation == pending.generation)

    def _cover(self, slot: _Slot, keys: tuple[str, ...]) -> None:
        slot.covered.update(keys)
        if len(slot.covered) > COVERAGE_LIMIT:
            self.bus.drop(slot.covered - set(keys))
            slot.covered = set(keys)

    def _lose(self, slot: _Slot, *, answered: bool) -> None:
        """Drop a fill connection and the L1 copies of what it read (it tracks no more).

        `answered`: Redis is known to answer, so drop them now; otherwise they are
        dropped once it does (see the module doc).
        """
        connection, slot.connection = slot.connection, None
        slot.generation = -1
        slot.orphans |= slot.covered
        slot.covered = set()
        if connection is not None:
            with contextlib.suppress(rex.RedisError, OSError):
                connection.disconnect()
        self.forget_held()  # no echo comes for what Redis stopped tracking
        if answered:
            orphans, slot.orphans = slot.orphans, set()
            self.bus.drop(orphans)
        if connection is not None:
            self.lost += 1  # counted once its copies are gone (tests wait on it)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """Return the threads that run tracked reads for asyncio callers."""
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        len(self._slots), thread_name_prefix="tiercache-fill"
                    )
        return self._executor

    def check_idle(self) -> None:
        """Find fill connections that died while idle; drop what lost ones had read.

        The listener calls this while its own connection is up: Redis answers.
        """
        for slot in self._slots:
            if not slot.lock.acquire(blocking=False):
                continue  # in use: its user will see a failure
            try:
                if slot.generation >= 0:
                    try:
                        alive = not slot.connection.can_read(timeout=0)
                    except (rex.RedisError, OSError):
                        alive = False
                    if not alive:  # EOF, or data nobody asked for
                        self._lose(slot, answered=True)
                elif slot.orphans:
                    orphans, slot.orphans = slot.orphans, set()
                    self.bus.drop(orphans)
            finally:
                slot.lock.release()

    def vouched(self) -> set[str]:
        """Return every key read through this node's fill connections that L1 may hold."""
        keys: set[str] = set()
        for slot in self._slots:
            keys |= slot.covered  # one C call each: safe against a concurrent add
            keys |= slot.orphans
        return keys

    def forget(self) -> None:
        """Drop every fill connection and what it covered."""
        for slot in self._slots:
            with slot.lock:
                self._lose(slot, answered=True)

    def after_fork(self) -> None:
        """Start over in a forked child: the parent's connections are not ours to use."""
        self._slots = [_Slot() for _ in self._slots]
        self.redirect_id = None
        self.generation += 1
        self._executor = None
        self._executor_lock = threading.Lock()
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        self._held, self._echoes = set(), set()

    def close(self) -> None:
        """Close the fill connections."""
        self.forget()
        if self._executor is not None:
            self._executor.shutdown(wait=False)


def packed(connection: Any, commands: Iterable[Command]) -> list[bytes]:
    """Return `commands` encoded for `connection` as one buffer: one send, one segment.

    hiredis (a dependency, through `redis[hiredis]`) packs in C; redis-py's wrapper
    around it costs about 4 µs a command, and `pack_commands` re-chunks in Python.
    """
    if _pack is not None:
        return [b"".join([_pack(command) for command in commands])]
    return [b"".join(chunk for command in commands for chunk in connection.pack_command(*command))]


def _read_each(
    connection: Any, keys: tuple[str, ...], values: dict[str, object], errors: list[str]
) -> None:
    """Read one reply per key into `values`, noting the keys answered with an error.

    The loop of a cluster's batch read (one GET per key): no call per reply but
    redis-py's own.
    """
    read = connection.read_response
    for key in keys:
        try:
            values[key] = read()
        except rex.ResponseError as error:
            values[key] = error
            errors.append(key)


def _read(connection: Any) -> object:
    try:
        reply: object = connection.read_response()
    except rex.ResponseError as error:
        return error
    return reply
