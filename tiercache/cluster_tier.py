"""The L2 tier on a Redis Cluster: the policy's requests on redis-py's `RedisCluster`.

The policy yields the same requests on every topology. A command over many keys
(MGET, UNLINK, a batch script) is split by slot here and every part goes into one
redis-py cluster pipeline, which sends one round trip per node; the replies are
folded back into the one the policy expects. Only a batch within one slot is atomic.
SCAN walks every primary in turn behind one cursor. The routing is redis-py's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions as rex
from redis.cluster import RedisCluster

from tiercache.breaker import CircuitBreaker
from tiercache.commands import SCRIPTS, Command, Request
from tiercache.errors import CircuitOpen
from tiercache.redis_tier import AsyncRedisTier, RedisTier, error_from
from tiercache.topology import Topology
from tiercache.topology_cluster import ClusterTopology

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
#: A SCAN cursor is the primary's index above these bits and its own cursor below.
_CURSOR_BITS = 64


@dataclass(frozen=True)
class _Part:
    """One command of the policy as the commands sent for it, and how to fold replies."""

    commands: list[Command]
    fold: Callable[[list[object]], object]
    #: MGET answers nil for a key of another type, where its GETs answer WRONGTYPE.
    wrongtype_is_nil: bool = False


def _first(replies: list[object]) -> object:
    return replies[0]


def _total(replies: list[object]) -> object:
    return sum(reply for reply in replies if isinstance(reply, int))


def _split(command: Command, slot_of: Callable[[Any], int]) -> _Part:
    """Return `command` as commands that each stay in one slot."""
    name = str(command[0]).upper()
    keys = list(command[1:])
    if name == "MGET" and len(keys) > 1:
        return _Part([("GET", key) for key in keys], list, wrongtype_is_nil=True)
    if name in _COUNTED and len(keys) > 1:
        return _Part([(name, key) for key in keys], _total)
    if name == "EVALSHA" and int(command[2]) > 1:
        return _split_script(command, slot_of)
    return _Part([command], _first)


def _split_script(command: Command, slot_of: Callable[[Any], int]) -> _Part:
    """Split a batch script by slot; its replies are summed, or put back in key order."""
    sha, count = command[1], int(command[2])
    keys, argv = list(command[3 : 3 + count]), list(command[3 + count :])
    per_key = SCRIPTS[str(sha)].per_key_args
    shared = argv[count:] if per_key else argv
    groups: dict[int, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(slot_of(key), []).append(position)
    order = list(groups.values())
    commands: list[Command] = [
        (
            "EVALSHA",
            sha,
            len(positions),
            *[keys[i] for i in positions],
            *([argv[i] for i in positions] if per_key else []),
            *shared,
        )
        for positions in order
    ]

    def fold(replies: list[object]) -> object:
        if all(isinstance(reply, int) for reply in replies):
            return _total(replies)
        out: list[object] = [None] * count
        for positions, reply in zip(order, replies, strict=True):
            for position, value in zip(positions, reply or [], strict=False):  # type: ignore[call-overload]
                out[position] = value
        return out

    return _Part(commands, fold)


def _with_sources(commands: Sequence[Command]) -> list[Command]:
    return [
        ("EVAL", SCRIPTS[str(c[1])].source, *c[2:]) if c[0] == "EVALSHA" else c for c in commands
    ]


def _folded(parts: list[_Part], replies: list[object]) -> list[object]:
    """Return the policy's reply to each part, raising the first error reply."""
    out, at = [], 0
    for part in parts:
        mine = replies[at : at + len(part.commands)]
        at += len(part.commands)
        if part.wrongtype_is_nil:
            mine = [None if _wrong_type(reply) else reply for reply in mine]
        for reply in mine:
            if isinstance(reply, Exception):
                raise reply
        out.append(part.fold(mine))
    return out


def _wrong_type(reply: object) -> bool:
    return isinstance(reply, rex.ResponseError) and str(reply).startswith("WRONGTYPE")


def _scan_target(cursor: int, primaries: list[Any]) -> tuple[int, Any, int]:
    index = cursor >> _CURSOR_BITS
    return index, primaries[index], cursor & ((1 << _CURSOR_BITS) - 1)


def _scan_reply(index: int, count: int, reply: object) -> tuple[int, list[object]]:
    cursors, keys = reply if isinstance(reply, list | tuple) else (0, [])
    if isinstance(cursors, dict):  # redis-py gives the cursor per node, here one node
        cursors = next(iter(cursors.values()), 0)
    node_cursor = int(cursors)
    if node_cursor == 0:
        index += 1
        return (0 if index >= count else index << _CURSOR_BITS), list(keys)
    return (index << _CURSOR_BITS) | node_cursor, list(keys)


def _is_scan(command: Command) -> bool:
    return str(command[0]).upper() in ("SCAN", "PING")


class _ClusterBoundary:
    def __init__(self, topology: ClusterTopology, breaker: CircuitBreaker) -> None:
        self.topology = topology
        self.breaker = breaker

    def _check_breaker(self) -> None:
        if not self.breaker.allow():
            raise CircuitOpen("Redis circuit is open after repeated failures; not trying")

    def _fail(self, exc: rex.RedisError | OSError) -> Any:
        error = error_from(exc)
        if isinstance(exc, rex.ClusterError | rex.RedisClusterException | rex.ConnectionError):
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        raise error from None


class ClusterTier(_ClusterBoundary):
    """Runs requests on a sync `RedisCluster`, from any thread."""

    def __init__(self, topology: ClusterTopology, breaker: CircuitBreaker) -> None:
        super().__init__(topology, breaker)
        self._client: RedisCluster | None = None

    def _cluster(self) -> RedisCluster:
        if self._client is None:
            self._client = self.topology.sync_client()
        return self._client

    def execute(self, request: Request) -> object:
        """Run one command or a pipeline; raise `CacheError` on trouble."""
        self._check_breaker()
        commands = [request] if isinstance(request, tuple) else request
        try:
            replies = [self._one(c) if _is_scan(c) else None for c in commands]
            rest = [c for c in commands if not _is_scan(c)]
            if rest:
                answered = iter(self._pipelined(rest))
                replies = [
                    next(answered) if not _is_scan(c) else r
                    for c, r in zip(commands, replies, strict=True)
                ]
        except (rex.RedisError, OSError) as exc:
            self._fail(exc)
        self.breaker.record_success()
        return replies[0] if isinstance(request, tuple) else replies

    def _one(self, command: Command) -> object:
        client = self._cluster()
        if str(command[0]).upper() == "PING":
            reply = client.execute_command("PING", target_nodes=RedisCluster.PRIMARIES)
            return all(reply.values()) if isinstance(reply, dict) else bool(reply)
        primaries = sorted(client.get_primaries(), key=lambda node: str(node.name))
        index, node, cursor = _scan_target(int(command[1]), primaries)
        reply = client.execute_command("SCAN", cursor, *command[2:], target_nodes=node)
        return _scan_reply(index, len(primaries), reply)

    def _pipelined(self, commands: list[Command]) -> list[object]:
        client = self._cluster()
        parts = [_split(c, client.keyslot) for c in commands]
        flat = [c for part in parts for c in part.commands]
        replies = self._send(flat)
        stale = [i for i, reply in enumerate(replies) if isinstance(reply, rex.NoScriptError)]
        if stale:
            again = self._send(_with_sources([flat[i] for i in stale]))
            for i, reply in zip(stale, again, strict=True):
                replies[i] = reply
        return _folded(parts, replies)

    def _send(self, commands: list[Command]) -> list[object]:
        pipe = self._cluster().pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))

    def close(self) -> None:
        """Close the cluster client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


class AsyncClusterTier(_ClusterBoundary):
    """Runs requests on an asyncio `RedisCluster`, bound to one event loop."""

    def __init__(self, topology: ClusterTopology, breaker: CircuitBreaker) -> None:
        super().__init__(topology, breaker)
        self._client = topology.async_client()

    async def execute(self, request: Request) -> object:
        """Run one command or a pipeline; raise `CacheError` on trouble."""
        self._check_breaker()
        commands = [request] if isinstance(request, tuple) else request
        try:
            replies = [await self._one(c) if _is_scan(c) else None for c in commands]
            rest = [c for c in commands if not _is_scan(c)]
            if rest:
                answered = iter(await self._pipelined(rest))
                replies = [
                    next(answered) if not _is_scan(c) else r
                    for c, r in zip(commands, replies, strict=True)
                ]
        except (rex.RedisError, OSError) as exc:
            self._fail(exc)
        self.breaker.record_success()
        return replies[0] if isinstance(request, tuple) else replies

    async def _one(self, command: Command) -> object:
        client = self._client
        if str(command[0]).upper() == "PING":
            reply = await client.execute_command("PING", target_nodes=RedisCluster.PRIMARIES)
            return all(reply.values()) if isinstance(reply, dict) else bool(reply)
        await client.initialize()
        primaries = sorted(client.get_primaries(), key=lambda node: str(node.name))
        index, node, cursor = _scan_target(int(command[1]), primaries)
        reply = await client.execute_command("SCAN", cursor, *command[2:], target_nodes=node)
        return _scan_reply(index, len(primaries), reply)

    async def _pipelined(self, commands: list[Command]) -> list[object]:
        parts = [_split(c, self._client.keyslot) for c in commands]
        flat = [c for part in parts for c in part.commands]
        replies = await self._send(flat)
        stale = [i for i, reply in enumerate(replies) if isinstance(reply, rex.NoScriptError)]
        if stale:
            again = await self._send(_with_sources([flat[i] for i in stale]))
            for i, reply in zip(stale, again, strict=True):
                replies[i] = reply
        return _folded(parts, replies)

    async def _send(self, commands: list[Command]) -> list[object]:
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        """Close the cluster client and its connections."""
        await self._client.aclose()


SyncTier = RedisTier | ClusterTier
AsyncTier = AsyncRedisTier | AsyncClusterTier


def tier_for(topology: Topology | ClusterTopology, breaker: CircuitBreaker) -> SyncTier:
    """Return the sync L2 tier of `topology`."""
    if isinstance(topology, ClusterTopology):
        return ClusterTier(topology, breaker)
    return RedisTier(topology, breaker)


def async_tier_for(topology: Topology | ClusterTopology, breaker: CircuitBreaker) -> AsyncTier:
    """Return an asyncio L2 tier of `topology`, for the running event loop only."""
    if isinstance(topology, ClusterTopology):
        return AsyncClusterTier(topology, breaker)
    return AsyncRedisTier(topology, breaker)


async def aclose_tier(tier: AsyncTier) -> None:
    """Close an asyncio L2 tier (for `registry.per_loop`)."""
    await tier.aclose()
