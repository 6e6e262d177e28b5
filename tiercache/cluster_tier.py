"""The L2 tier on a Redis Cluster: the policy's requests, grouped by node, one round trip each.

The policy yields the same requests on every topology. Here a command over many keys
(MGET, UNLINK, DEL, EXISTS) is split by key, each part goes to the node redis-py
says owns it (`RedisCluster.get_node_from_key`), and each node gets one pipelined
write on a connection of redis-py's pool for that node: every node is written to
before any is read, so a batch costs one round trip whichever the number of nodes.
Replies are folded back into the one the policy expects. MOVED and ASK replies are
run again through `RedisCluster.execute_command`, which follows them and learns the
new owner. Only what stays in one slot is atomic.

Each node has its own circuit breaker: a dead primary fails fast for its own slots
only, and a batch read answers its keys there as misses. `ClusterTopology` watches
the slot map; when a primary changes, every tier refreshes redis-py's map of slots.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio.cluster
import redis.exceptions as rex
from redis.cluster import RedisCluster

from tiercache.breaker import CircuitBreaker
from tiercache.cluster_bus import ClusterEars
from tiercache.cluster_fills import ClusterFill, Tracked
from tiercache.commands import SCRIPTS, Command, Fill, Request
from tiercache.errors import CacheError, CacheUnavailable, CircuitOpen
from tiercache.redis_tier import FILL_WAIT, AsyncRedisTier, RedisTier, error_from
from tiercache.topology_cluster import ClusterTopology

if TYPE_CHECKING:
    from tiercache.composite import Assembly

__all__ = [
    "AsyncClusterTier",
    "AsyncTier",
    "ClusterTier",
    "SyncTier",
    "aclose_tier",
    "async_tier_for",
    "tier_for",
]

#: Multi-key commands whose reply is a count: split per key, replies summed.
_COUNTED = frozenset({"UNLINK", "DEL", "EXISTS", "TOUCH"})
#: Commands sent alone: they name a node (or every one), not a key.
_PER_NODE = frozenset({"SCAN", "PING"})
#: A SCAN cursor is the primary's index above these bits and its own cursor below.
_CURSOR_BITS = 64
#: What redis-py raises when a call fails (RedisClusterException is no RedisError).
_FAILURES = (rex.RedisError, rex.RedisClusterException, OSError)
#: Errors that say a node is unreachable or sick, not that a command was wrong.
_OUTAGES = (rex.ConnectionError, rex.TimeoutError, OSError)

BreakerFor = Callable[[str], CircuitBreaker]


@dataclass(frozen=True)
class _Part:
    """One command of the policy as the commands sent for it, and how to fold replies."""

    commands: list[Command]
    fold: Callable[[list[object]], object]
    #: A batch read: a key of another type, or on a node that is down, is a miss.
    read: bool = False


def _first(replies: list[object]) -> object:
    return replies[0]


def _total(replies: list[object]) -> object:
    return sum(reply for reply in replies if isinstance(reply, int))


def _split(command: Command, slot_of: Callable[[Any], int]) -> _Part:
    """Return `command` as commands that each name one key (so one slot)."""
    name = str(command[0]).upper()
    keys = list(command[1:])
    if name == "MGET":
        return _Part([("GET", key) for key in keys], list, read=True)
    if name in _COUNTED and len(keys) > 1:
        return _Part([(name, key) for key in keys], _total)
    if name == "MSET" and len(keys) > 2:  # one MSET per slot: atomic there, not across
        by_slot: dict[int, list[Any]] = {}
        for i in range(0, len(keys), 2):
            by_slot.setdefault(slot_of(keys[i]), []).extend(keys[i : i + 2])
        return _Part([("MSET", *pairs) for pairs in by_slot.values()], _first)
    return _Part([command], _first)


def _key_of(command: Command) -> object | None:
    """Return the key that routes `command`, or None for a command without one."""
    name = str(command[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return command[3] if int(command[2]) > 0 else None
    if name in ("PUBLISH", "PING", "SCAN") or len(command) < 2:
        return None
    return command[1]


def _with_source(command: Command) -> Command:
    if command[0] != "EVALSHA":
        return command
    return ("EVAL", SCRIPTS[str(command[1])].source, *command[2:])


def _folded(parts: list[_Part], replies: list[object]) -> list[object]:
    """Return the policy's reply to each part, raising the first error reply."""
    out, at = [], 0
    for part in parts:
        mine = replies[at : at + len(part.commands)]
        at += len(part.commands)
        if part.read:
            mine = [None if _missing(reply) else reply for reply in mine]
        for reply in mine:
            if isinstance(reply, Exception):
                _raise(reply)
        out.append(part.fold(mine))
    return out


def _missing(reply: object) -> bool:
    """Return whether a batch read's reply counts as a miss (unreadable, or node down)."""
    if isinstance(reply, rex.ClusterDownError | rex.TryAgainError):
        return True  # a slot without a primary, for now
    if isinstance(reply, rex.ResponseError):
        return str(reply).startswith("WRONGTYPE")
    return isinstance(reply, (*_OUTAGES, CircuitOpen))


def _scan_reply(index: int, count: int, reply: object) -> tuple[int, list[object]]:
    cursor, keys = reply if isinstance(reply, list | tuple) else (0, [])
    node_cursor = int(cursor)
    if node_cursor == 0:
        index += 1
        return (0 if index >= count else index << _CURSOR_BITS), list(keys)
    return (index << _CURSOR_BITS) | node_cursor, list(keys)


def _raise(error: BaseException) -> Any:
    """Raise `error` as the `CacheError` that names its cause."""
    if isinstance(error, CacheError):
        raise error
    if isinstance(error, rex.RedisClusterException):  # not a RedisError: no slot map
        raise CacheUnavailable(f"Redis Cluster is unreachable: {error}") from None
    if isinstance(error, rex.RedisError | OSError):
        raise error_from(error) from None
    raise error


def _written(split: ClusterFill, fill: Fill) -> tuple[object, Tracked]:
    """Return a tracked write-and-read's reply: (write's, read's) if tracked, else the write's."""
    written = split.written
    if isinstance(written, BaseException):
        _raise(written)
    [key] = fill.keys
    if key not in split.tracked:
        return written, False
    value = split.values[key]
    if isinstance(value, BaseException):
        _raise(value)
    return (written, value), True


def _answer(split: ClusterFill, untracked: dict[str, object]) -> tuple[object, Tracked]:
    """Return a tracked read's reply: one GET raises its error, a batch has misses."""
    if split.fill.command[0] != "GET":
        return split.answer(untracked)
    [key] = split.fill.keys
    value = split.values.get(key, untracked.get(key))
    if isinstance(value, BaseException):
        _raise(value)
    return value, key in split.tracked


class _Plan:
    """The commands of one request, split by slot, with the node of each."""

    def __init__(self, commands: Sequence[Command], client: Any) -> None:
        self.parts = [_split(c, client.keyslot) for c in commands]
        self.flat = [c for part in self.parts for c in part.commands]
        default = None
        self.nodes: list[Any] = []
        for command in self.flat:
            key = _key_of(command)
            if key is None:
                default = default or client.get_default_node()
                self.nodes.append(default)
            else:
                self.nodes.append(client.get_node_from_key(key))

    def phases(self) -> list[list[int]]:
        """Return the commands in the order they may go: a PUBLISH after the writes.

        The nodes answer in any order; an invalidation that overtook its write would
        let another process re-read, and keep, the old value.
        """
        writes = [i for i, c in enumerate(self.flat) if str(c[0]).upper() != "PUBLISH"]
        publishes = [i for i, c in enumerate(self.flat) if str(c[0]).upper() == "PUBLISH"]
        return [phase for phase in (writes, publishes) if phase]

    def with_sources(self, indices: Sequence[int]) -> None:
        """Send the scripts at `indices` with their source next time (NOSCRIPT)."""
        for i in indices:
            self.flat[i] = _with_source(self.flat[i])

    def by_node(self, indices: Sequence[int]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i in indices:
            groups.setdefault(str(self.nodes[i].name), []).append(i)
        return groups


class _Breakers:
    """One breaker per node."""

    def __init__(self, topology: ClusterTopology, breaker_for: BreakerFor) -> None:
        self._topology = topology
        self._breaker_for = breaker_for

    def allow(self, node: str) -> bool:
        return self._breaker_for(node).allow()

    def closed(self, node: str) -> CircuitOpen:
        return CircuitOpen(f"Redis node {node} circuit is open after repeated failures")

    def answered(self, node: str) -> None:
        self._breaker_for(node).record_success()

    def report(self, split: ClusterFill) -> None:
        """Tell the breakers of a tracked read's primaries how they did."""
        for node in split.answered:
            self.answered(node)
        for node in split.failed:
            self._breaker_for(node).record_failure()
            self._topology.suspect()

    def lost(self, node: str, unanswered: list[int], replies: list[object], exc: Exception) -> None:
        """Record that `node` failed; its unanswered commands get `exc` as their reply."""
        for i in unanswered:
            replies[i] = exc
        self._breaker_for(node).record_failure()
        self._topology.suspect()  # its replica may take over: find out soon


class ClusterTier:
    """Runs requests on a sync `RedisCluster`, from any thread."""

    def __init__(
        self, topology: ClusterTopology, breaker_for: BreakerFor, ears: ClusterEars | None = None
    ) -> None:
        self.topology = topology
        self._ears = ears
        self._breakers = _Breakers(topology, breaker_for)
        self._client: RedisCluster | None = None
        self._generation = topology.generation
        self._lock = threading.Lock()
        topology.watch()

    @property
    def client(self) -> RedisCluster:
        """Return the redis-py cluster client (django-redis's `get_client`)."""
        return self._cluster()

    def _cluster(self) -> RedisCluster:
        with self._lock:
            if self._client is None:
                self._client = self.topology.sync_client()
                self._generation = self.topology.generation
            elif self._generation != (generation := self.topology.generation):
                self._client.nodes_manager.initialize()  # a primary changed: new slot map
                self._generation = generation  # only once refreshed: else try again next call
            return self._client

    def execute(self, request: Request) -> object:
        """Run one command, a pipeline or a tracked read; raise `CacheError` on trouble."""
        if isinstance(request, Fill):
            return self._fill(request)
        commands = [request] if isinstance(request, tuple) else request
        try:
            client = self._cluster()
        except _FAILURES as exc:
            _raise(exc)
        replies: list[object] = []
        batch = [c for c in commands if str(c[0]).upper() not in _PER_NODE]
        answered = iter(self._batch(client, batch) if batch else [])
        for command in commands:
            name = str(command[0]).upper()
            if name == "PING":
                replies.append(self._ping(client))
            elif name == "SCAN":
                replies.append(self._scan(client, command))
            else:
                replies.append(next(answered))
        return replies[0] if isinstance(request, tuple) else replies

    def _fill(self, fill: Fill) -> tuple[object, Tracked]:
        """Run a tracked read on the fill connections of its keys' primaries."""
        split = (
            ClusterFill(fill, self._ears, self._breakers.allow, FILL_WAIT) if self._ears else None
        )
        if split is None or not split.claims:
            return self.execute(fill.write or fill.command), False
        split.dispatch()
        try:
            plain = self._read(split.plain)
        finally:
            split.collect()
            self._breakers.report(split)
        if fill.write is not None:
            if split.moved:  # not applied there: redis-py follows the slot
                return self.execute(fill.write), False
            return _written(split, fill)
        if split.moved:
            self.topology.suspect()
        return _answer(split, {**plain, **self._read(split.again)})

    def _read(self, keys: list[str]) -> dict[str, object]:
        """Return what a plain batch read of `keys` finds (misses for a node that is down)."""
        if not keys:
            return {}
        reply = self.execute(("MGET", *keys))
        return dict(zip(keys, reply if isinstance(reply, list) else [], strict=False))

    def _batch(self, client: RedisCluster, commands: list[Command]) -> list[object]:
        plan = _Plan(commands, client)
        replies: list[object] = [None] * len(plan.flat)
        for phase in plan.phases():
            for i, reply in zip(phase, self._send(plan, phase), strict=True):
                replies[i] = reply
            again = [i for i in phase if isinstance(replies[i], rex.NoScriptError)]
            if again:
                plan.with_sources(again)
                for i, reply in zip(again, self._send(plan, again), strict=True):
                    replies[i] = reply
            for i in phase:
                if isinstance(replies[i], rex.MovedError | rex.AskError):  # not applied
                    try:
                        replies[i] = client.execute_command(*plan.flat[i])
                    except _FAILURES as exc:
                        replies[i] = exc
        return _folded(plan.parts, replies)

    def _send(self, plan: _Plan, indices: Sequence[int]) -> list[object]:
        """Send the commands at `indices`, one pipelined write per node; return replies."""
        replies: list[object] = [None] * len(plan.flat)
        sent: list[tuple[str, Any, Any, list[int]]] = []
        for name, mine in plan.by_node(indices).items():
            if not self._breakers.allow(name):
                for i in mine:
                    replies[i] = self._breakers.closed(name)
                continue
            pool = plan.nodes[mine[0]].redis_connection.connection_pool
            connection = None
            try:
                connection = pool.get_connection()
                connection.send_packed_command(
                    connection.pack_commands([plan.flat[i] for i in mine])
                )
            except _OUTAGES as exc:
                if connection is not None:  # a reply may be half read: never reuse as is
                    connection.disconnect()
                    pool.release(connection)
                self._breakers.lost(name, mine, replies, exc)
                continue
            sent.append((name, pool, connection, mine))
        for name, pool, connection, mine in sent:
            callbacks = plan.nodes[mine[0]].redis_connection.response_callbacks
            done = 0
            try:
                for i in mine:
                    try:
                        reply = connection.read_response()
                        callback = callbacks.get(str(plan.flat[i][0]).upper())
                        replies[i] = reply if callback is None else callback(reply)
                    except rex.ResponseError as error:
                        replies[i] = error
                    done += 1
            except _OUTAGES as exc:
                connection.disconnect()
                pool.release(connection)
                self._breakers.lost(name, mine[done:], replies, exc)
                continue
            pool.release(connection)
            self._breakers.answered(name)
        return [replies[i] for i in indices]

    def _one(self, client: RedisCluster, node: Any, command: Command) -> object:
        plan = _Plan([], client)
        plan.flat, plan.nodes, plan.parts = [command], [node], [_Part([command], _first)]
        (reply,) = self._send(plan, [0])
        if isinstance(reply, BaseException):
            _raise(reply)
        return reply

    def _ping(self, client: RedisCluster) -> object:
        return all(self._one(client, node, ("PING",)) for node in client.get_primaries())

    def _scan(self, client: RedisCluster, command: Command) -> object:
        primaries = sorted(client.get_primaries(), key=lambda node: str(node.name))
        cursor = int(command[1])
        index = cursor >> _CURSOR_BITS
        own = cursor & ((1 << _CURSOR_BITS) - 1)
        reply = self._one(client, primaries[index], ("SCAN", own, *command[2:]))
        return _scan_reply(index, len(primaries), reply)

    def close(self) -> None:
        """Close the cluster client and its connections."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class AsyncClusterTier:
    """Runs requests on an asyncio `RedisCluster`, bound to one event loop."""

    def __init__(
        self, topology: ClusterTopology, breaker_for: BreakerFor, ears: ClusterEars | None = None
    ) -> None:
        self.topology = topology
        self._ears = ears
        self._breakers = _Breakers(topology, breaker_for)
        self._client = topology.async_client()
        self._generation: int | None = None
        topology.watch()

    @property
    def client(self) -> redis.asyncio.cluster.RedisCluster:
        """Return the redis-py asyncio cluster client (django-redis's `aget_client`)."""
        return self._client

    async def _cluster(self) -> redis.asyncio.cluster.RedisCluster:
        client, generation = self._client, self.topology.generation
        if self._generation is None:
            await client.initialize()
        elif self._generation != generation:
            await client.nodes_manager.initialize()  # a primary changed: new slot map
        self._generation = generation  # only once refreshed: else try again next call
        return client

    async def execute(self, request: Request) -> object:
        """Run one command, a pipeline or a tracked read (see `ClusterTier`)."""
        if isinstance(request, Fill):
            return await self._fill(request)
        commands = [request] if isinstance(request, tuple) else request
        try:
            client = await self._cluster()
        except _FAILURES as exc:
            _raise(exc)
        replies: list[object] = []
        batch = [c for c in commands if str(c[0]).upper() not in _PER_NODE]
        answered = iter(await self._batch(client, batch) if batch else [])
        for command in commands:
            name = str(command[0]).upper()
            if name == "PING":
                replies.append(await self._ping(client))
            elif name == "SCAN":
                replies.append(await self._scan(client, command))
            else:
                replies.append(next(answered))
        return replies[0] if isinstance(request, tuple) else replies

    async def _fill(self, fill: Fill) -> tuple[object, Tracked]:
        """Run a tracked read; its fill connections on a worker thread (see `AsyncRedisTier`)."""
        ears = self._ears
        split = ClusterFill(fill, ears, self._breakers.allow, 0.0) if ears else None
        if ears is None or split is None or not split.claims:
            return await self.execute(fill.write or fill.command), False
        tracked = asyncio.get_running_loop().run_in_executor(ears.executor, split.run)
        try:
            plain = await self._read(split.plain)
        finally:
            await tracked
            self._breakers.report(split)
        if fill.write is not None:
            if split.moved:
                return await self.execute(fill.write), False
            return _written(split, fill)
        if split.moved:
            self.topology.suspect()
        return _answer(split, {**plain, **await self._read(split.again)})

    async def _read(self, keys: list[str]) -> dict[str, object]:
        """Return what a plain batch read of `keys` finds (see `ClusterTier._read`)."""
        if not keys:
            return {}
        reply = await self.execute(("MGET", *keys))
        return dict(zip(keys, reply if isinstance(reply, list) else [], strict=False))

    async def _batch(self, client: Any, commands: list[Command]) -> list[object]:
        plan = _Plan(commands, client)
        replies: list[object] = [None] * len(plan.flat)
        for phase in plan.phases():
            for i, reply in zip(phase, await self._send(plan, phase), strict=True):
                replies[i] = reply
            again = [i for i in phase if isinstance(replies[i], rex.NoScriptError)]
            if again:
                plan.with_sources(again)
                for i, reply in zip(again, await self._send(plan, again), strict=True):
                    replies[i] = reply
            for i in phase:
                if isinstance(replies[i], rex.MovedError | rex.AskError):  # not applied
                    try:
                        replies[i] = await client.execute_command(*plan.flat[i])
                    except _FAILURES as exc:
                        replies[i] = exc
        return _folded(plan.parts, replies)

    async def _send(self, plan: _Plan, indices: Sequence[int]) -> list[object]:
        """Send the commands at `indices`, one pipelined write per node; return replies."""
        replies: list[object] = [None] * len(plan.flat)
        sent: list[tuple[str, Any, Any, list[int]]] = []
        for name, mine in plan.by_node(indices).items():
            if not self._breakers.allow(name):
                for i in mine:
                    replies[i] = self._breakers.closed(name)
                continue
            node = plan.nodes[mine[0]]
            connection = None
            try:
                connection = node.acquire_connection()
                await connection.send_packed_command(
                    connection.pack_commands([plan.flat[i] for i in mine])
                )
            except _OUTAGES as exc:
                if connection is not None:
                    await connection.disconnect(nowait=True)
                    node.release(connection)
                self._breakers.lost(name, mine, replies, exc)
                continue
            sent.append((name, node, connection, mine))
        for name, node, connection, mine in sent:
            done = 0
            try:
                for i in mine:
                    try:
                        reply = await connection.read_response()
                        callback = node.response_callbacks.get(str(plan.flat[i][0]).upper())
                        replies[i] = reply if callback is None else callback(reply)
                    except rex.ResponseError as error:
                        replies[i] = error
                    done += 1
            except _OUTAGES as exc:
                await connection.disconnect(nowait=True)
                node.release(connection)
                self._breakers.lost(name, mine[done:], replies, exc)
                continue
            except BaseException:  # a cancellation may leave a reply half read
                await connection.disconnect(nowait=True)
                node.release(connection)
                raise
            node.release(connection)
            self._breakers.answered(name)
        return [replies[i] for i in indices]

    async def _one(self, client: Any, node: Any, command: Command) -> object:
        plan = _Plan([], client)
        plan.flat, plan.nodes, plan.parts = [command], [node], [_Part([command], _first)]
        (reply,) = await self._send(plan, [0])
        if isinstance(reply, BaseException):
            _raise(reply)
        return reply

    async def _ping(self, client: Any) -> object:
        return all([await self._one(client, node, ("PING",)) for node in client.get_primaries()])

    async def _scan(self, client: Any, command: Command) -> object:
        primaries = sorted(client.get_primaries(), key=lambda node: str(node.name))
        cursor = int(command[1])
        index = cursor >> _CURSOR_BITS
        own = cursor & ((1 << _CURSOR_BITS) - 1)
        reply = await self._one(client, primaries[index], ("SCAN", own, *command[2:]))
        return _scan_reply(index, len(primaries), reply)

    async def aclose(self) -> None:
        """Close the cluster client and its connections."""
        await self._client.aclose()


SyncTier = RedisTier | ClusterTier
AsyncTier = AsyncRedisTier | AsyncClusterTier


def tier_for(assembly: Assembly) -> SyncTier:
    """Return the sync L2 tier of an assembled cache, for its topology."""
    topology, breaker = assembly.topology, assembly.breaker
    assert topology is not None
    assert breaker is not None
    if isinstance(topology, ClusterTopology):
        return ClusterTier(topology, assembly.breaker_for, assembly.bus.ears)
    return RedisTier(topology, breaker, assembly.bus.tracking)


def async_tier_for(assembly: Assembly) -> AsyncTier:
    """Return an asyncio L2 tier of an assembled cache, for the running event loop only."""
    topology, breaker = assembly.topology, assembly.breaker
    assert topology is not None
    assert breaker is not None
    if isinstance(topology, ClusterTopology):
        return AsyncClusterTier(topology, assembly.breaker_for, assembly.bus.ears)
    return AsyncRedisTier(topology, breaker, assembly.bus.tracking)


async def aclose_tier(tier: AsyncTier) -> None:
    """Close an asyncio L2 tier (for `registry.per_loop`)."""
    await tier.aclose()
