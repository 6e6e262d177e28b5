"""`TieredCache` and `AsyncTieredCache`: the two shells over one set of flows."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import GeneratorType
from typing import Any, cast

from returns.result import Failure, Result

from tiercache import registry
from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.cluster_tier import (
    AsyncClusterTier,
    AsyncTier,
    SyncTier,
    aclose_tier,
    async_tier_for,
    tier_for,
)
from tiercache.codecs import TextCodec
from tiercache.commands import Request, operation_of
from tiercache.composite import Assembly, assemble
from tiercache.drivers import drive, drive_async
from tiercache.errors import CacheError
from tiercache.keys import check_ttl
from tiercache.memory import MemoryTier
from tiercache.metrics import CacheMetrics
from tiercache.operations import CacheOperations
from tiercache.options import CacheOptions
from tiercache.ports import CacheMetricsProtocol, JSONObject
from tiercache.redis_tier import AsyncRedisTier
from tiercache.stampede import Loading, Plan, Stampede, aload, load, make_plan
from tiercache.topology_nodes import NodeStatus, anode_statuses, node_statuses

__all__ = ["AsyncTieredCache", "TieredCache"]


class _Shell:
    """What both colours share: assembly, and the parts exposed for tooling."""

    def __init__(self, options: CacheOptions, metrics: CacheMetricsProtocol | None = None) -> None:
        self._latency: Callable[[str, float], None] | None = None
        self.metrics: CacheMetricsProtocol = metrics if metrics is not None else CacheMetrics()
        self._assembly: Assembly = assemble(options, TextCodec(), self.metrics)
        self._ops = CacheOperations(
            self._assembly.policy,
            self._assembly.stampede,
            key_prefix=options.key_prefix,
            namespace_separator=options.namespace_separator,
            default_ttl=options.default_ttl,
        )

    @classmethod
    def from_url(
        cls,
        url: str | None,
        *,
        l1_maxsize: int | None = CacheOptions.l1_maxsize,
        l1_ttl: float | None = CacheOptions.l1_ttl,
        metrics: CacheMetricsProtocol | None = None,
        **options: Any,
    ) -> Any:
        """Build a cache on Redis at `url` (None: L1 only; `l1_maxsize=0`: L2 only).

        Other keyword options are the fields of `CacheOptions`.
        """
        return cls(CacheOptions(url, l1_maxsize, l1_ttl, **options), metrics)

    @property
    def options(self) -> CacheOptions:
        """Return the options this cache was built with."""
        return self._assembly.options

    @property
    def l1(self) -> MemoryTier | None:
        """Return the L1 tier, if any."""
        return self._assembly.policy.l1

    @property
    def breaker(self) -> CircuitBreaker | None:
        """Return the circuit breaker guarding L2, if any."""
        return self._assembly.breaker

    @property
    def bus(self) -> LocalBus:
        """Return the invalidation bus that keeps this cache's L1 coherent."""
        return self._assembly.bus

    @property
    def stampede(self) -> Stampede:
        """Return the get_or_set guard (its counters feed the metrics)."""
        return self._assembly.stampede

    def _loading(
        self,
        key: str,
        ttl: int | None,
        *,
        lock: bool,
        stale_ttl: float | None,
        fail_safe: float | None,
        jitter: float | None,
    ) -> Loading | Failure[CacheError]:
        """Return the get_or_set flow of `key`, or the Failure its arguments deserve."""
        options = self.options
        bad = check_ttl(ttl, key) if ttl is not None else None
        plan: Plan | CacheError = bad or make_plan(
            options.default_ttl if ttl is None else ttl,
            lock=lock,
            stale_ttl=stale_ttl,
            fail_safe=fail_safe,
            jitter=options.ttl_jitter if jitter is None else jitter,
        )
        return self._ops.get_or_set(key, plan)

    def on_latency(self, observe: Callable[[str, float], None]) -> None:
        """Call `observe(operation, seconds)` after each Redis round trip (exporters)."""
        self._latency = observe

    def __repr__(self) -> str:
        size = self.options.l1_maxsize or 0
        return f"<{type(self).__name__} l1={size} l2={self.options.location!r}>"


class TieredCache(_Shell):
    """The synchronous tiered cache; implements `SyncCacheProtocol`."""

    def __init__(self, options: CacheOptions, metrics: CacheMetricsProtocol | None = None) -> None:
        super().__init__(options, metrics)
        self._tier: SyncTier | None = None
        topology = self._assembly.topology
        if topology is not None:
            assert self.breaker is not None
            self._tier = tier_for(self._assembly)

    def _execute(self, request: Request) -> object:
        assert self._tier is not None
        observe = self._latency
        if observe is None:
            return self._tier.execute(request)
        started = time.perf_counter()
        try:
            return self._tier.execute(request)
        finally:
            observe(operation_of(request), time.perf_counter() - started)

    @property
    def _executor(self) -> Any:
        return self._execute if self._tier is not None else None

    def get(self, key: str) -> Result[str | None, CacheError]:
        """Return the value of `key`, or None on a miss."""
        found = self._ops.get(key)
        if isinstance(found, GeneratorType):
            return drive(found, self._executor)
        # An L1 hit (or a refused key): no driver call. 2.03 -> 1.68 µs a hit, timeit.
        return found  # type: ignore[return-value]  # not a generator: a Result

    def get_json(self, key: str) -> Result[JSONObject | None, CacheError]:
        """Return the JSON object stored at `key`, or None on a miss."""
        return drive(self._ops.get_json(key), self._executor)

    def set(self, key: str, value: str, ttl: int | None = None) -> Result[None, CacheError]:
        """Store `value` at `key` for `ttl` seconds."""
        return drive(self._ops.set(key, value, ttl), self._executor)

    def set_json(
        self, key: str, value: Mapping[str, object], ttl: int | None = None
    ) -> Result[None, CacheError]:
        """Store a dict as JSON at `key` for `ttl` seconds."""
        return drive(self._ops.set_json(key, value, ttl), self._executor)

    def delete(self, key: str) -> Result[bool, CacheError]:
        """Remove `key`; False if it did not exist."""
        return drive(self._ops.delete(key), self._executor)

    def exists(self, key: str) -> Result[bool, CacheError]:
        """Return whether `key` holds a value."""
        return drive(self._ops.exists(key), self._executor)

    def expire(self, key: str, seconds: int) -> Result[bool, CacheError]:
        """Give `key` a new TTL; False if there is no such key."""
        return drive(self._ops.expire(key, seconds), self._executor)

    def ttl(self, key: str) -> Result[int | None, CacheError]:
        """Return the seconds `key` has left; None if no TTL or no key."""
        return drive(self._ops.ttl(key), self._executor)

    def increment(self, key: str, amount: int = 1) -> Result[int, CacheError]:
        """Add `amount` atomically (a missing key starts at 0)."""
        return drive(self._ops.increment(key, amount), self._executor)

    def decrement(self, key: str, amount: int = 1) -> Result[int, CacheError]:
        """Subtract `amount` atomically (a missing key starts at 0)."""
        return drive(self._ops.decrement(key, amount), self._executor)

    def flush(self) -> Result[None, CacheError]:
        """Remove every key of this cache (its prefix), in every tier."""
        return drive(self._ops.flush(), self._executor)

    def ping(self) -> Result[bool, CacheError]:
        """Return True when every tier answers."""
        return drive(self._ops.ping(), self._executor)

    def delete_pattern(self, pattern: str) -> Result[int, CacheError]:
        """Remove every key matching the glob `pattern`; return how many."""
        return drive(self._ops.delete_pattern(pattern), self._executor)

    def get_many(self, keys: Iterable[str]) -> Result[dict[str, str | None], CacheError]:
        """Return the value (or None) of every key, with one L2 round trip."""
        return drive(self._ops.get_many(keys), self._executor)

    def set_many(
        self, mapping: Mapping[str, str], ttl: int | None = None
    ) -> Result[None, CacheError]:
        """Store every item with one L2 round trip."""
        return drive(self._ops.set_many(mapping, ttl), self._executor)

    def get_or_set(
        self,
        key: str,
        loader: Callable[[], str],
        ttl: int | None = None,
        *,
        lock: bool = False,
        stale_ttl: float | None = None,
        fail_safe: float | None = None,
        jitter: float | None = None,
    ) -> Result[str, CacheError]:
        """Return the value of `key`, calling `loader` once (per process) when it is missing.

        `lock`: also once across processes, with a lock in Redis. `stale_ttl`: after `ttl`,
        serve the old value this long while one caller refreshes it. `fail_safe`: after
        `ttl`, serve the old value this long when `loader` raises or Redis is down.
        `jitter`: shorten `ttl` by a random fraction up to this. A loader that raises,
        with no stale value allowed, gives `Failure(LoaderFailed)`.
        """
        flow = self._loading(
            key, ttl, lock=lock, stale_ttl=stale_ttl, fail_safe=fail_safe, jitter=jitter
        )
        if isinstance(flow, Failure):
            return flow
        return cast("Result[str, CacheError]", load(flow, self._executor, loader))

    def node_statuses(self) -> list[NodeStatus]:
        """Return each Redis node with its role, its answer to a PING and its breaker.

        All nodes are asked at once: this takes at most the connect + socket timeouts.
        An L1-only cache has none. See `tiercache.topology_nodes`.
        """
        if self._tier is None:
            return []
        return node_statuses(self._tier, self._assembly.breaker_for)

    def close(self) -> None:
        """Release this cache's connections."""
        if self._tier is not None:
            self._tier.close()


class AsyncTieredCache(_Shell):
    """The asyncio tiered cache; implements `CacheProtocol`."""

    def __init__(self, options: CacheOptions, metrics: CacheMetricsProtocol | None = None) -> None:
        super().__init__(options, metrics)
        # redis.asyncio connections belong to the loop that opened them: one tier per
        # loop, closed when the loop ends (see `registry.per_loop`).
        self._loop_key = ("tiercache", object())
        self._executor = self._execute if options.url is not None else None

    def _make_tier(self) -> AsyncTier:
        topology = self._assembly.topology
        assert topology is not None
        assert self.breaker is not None
        return async_tier_for(self._assembly)

    async def _execute(self, request: Request) -> object:
        tier = registry.per_loop(self._loop_key, self._make_tier, aclose_tier)
        observe = self._latency
        if observe is None:
            return await tier.execute(request)
        started = time.perf_counter()
        try:
            return await tier.execute(request)
        finally:
            observe(operation_of(request), time.perf_counter() - started)

    async def get(self, key: str) -> Result[str | None, CacheError]:
        """Return the value of `key`, or None on a miss."""
        found = self._ops.get(key)
        if isinstance(found, GeneratorType):
            return await drive_async(found, self._executor)
        # An L1 hit (or a refused key): no driver coroutine. 2.14 -> 1.73 µs a hit.
        return found  # type: ignore[return-value]  # not a generator: a Result

    async def get_json(self, key: str) -> Result[JSONObject | None, CacheError]:
        """Return the JSON object stored at `key`, or None on a miss."""
        return await drive_async(self._ops.get_json(key), self._executor)

    async def set(self, key: str, value: str, ttl: int | None = None) -> Result[None, CacheError]:
        """Store `value` at `key` for `ttl` seconds."""
        return await drive_async(self._ops.set(key, value, ttl), self._executor)

    async def set_json(
        self, key: str, value: Mapping[str, object], ttl: int | None = None
    ) -> Result[None, CacheError]:
        """Store a dict as JSON at `key` for `ttl` seconds."""
        return await drive_async(self._ops.set_json(key, value, ttl), self._executor)

    async def delete(self, key: str) -> Result[bool, CacheError]:
        """Remove `key`; False if it did not exist."""
        return await drive_async(self._ops.delete(key), self._executor)

    async def exists(self, key: str) -> Result[bool, CacheError]:
        """Return whether `key` holds a value."""
        return await drive_async(self._ops.exists(key), self._executor)

    async def expire(self, key: str, seconds: int) -> Result[bool, CacheError]:
        """Give `key` a new TTL; False if there is no such key."""
        return await drive_async(self._ops.expire(key, seconds), self._executor)

    async def ttl(self, key: str) -> Result[int | None, CacheError]:
        """Return the seconds `key` has left; None if no TTL or no key."""
        return await drive_async(self._ops.ttl(key), self._executor)

    async def increment(self, key: str, amount: int = 1) -> Result[int, CacheError]:
        """Add `amount` atomically (a missing key starts at 0)."""
        return await drive_async(self._ops.increment(key, amount), self._executor)

    async def decrement(self, key: str, amount: int = 1) -> Result[int, CacheError]:
        """Subtract `amount` atomically (a missing key starts at 0)."""
        return await drive_async(self._ops.decrement(key, amount), self._executor)

    async def flush(self) -> Result[None, CacheError]:
        """Remove every key of this cache (its prefix), in every tier."""
        return await drive_async(self._ops.flush(), self._executor)

    async def ping(self) -> Result[bool, CacheError]:
        """Return True when every tier answers."""
        return await drive_async(self._ops.ping(), self._executor)

    async def delete_pattern(self, pattern: str) -> Result[int, CacheError]:
        """Remove every key matching the glob `pattern`; return how many."""
        return await drive_async(self._ops.delete_pattern(pattern), self._executor)

    async def get_many(self, keys: Iterable[str]) -> Result[dict[str, str | None], CacheError]:
        """Return the value (or None) of every key, with one L2 round trip."""
        return await drive_async(self._ops.get_many(keys), self._executor)

    async def set_many(
        self, mapping: Mapping[str, str], ttl: int | None = None
    ) -> Result[None, CacheError]:
        """Store every item with one L2 round trip."""
        return await drive_async(self._ops.set_many(mapping, ttl), self._executor)

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[str]],
        ttl: int | None = None,
        *,
        lock: bool = False,
        stale_ttl: float | None = None,
        fail_safe: float | None = None,
        jitter: float | None = None,
    ) -> Result[str, CacheError]:
        """Return the value of `key`, awaiting `loader` once (per process) when it is missing.

        The options are those of `TieredCache.get_or_set`.
        """
        flow = self._loading(
            key, ttl, lock=lock, stale_ttl=stale_ttl, fail_safe=fail_safe, jitter=jitter
        )
        if isinstance(flow, Failure):
            return flow
        return cast("Result[str, CacheError]", await aload(flow, self._executor, loader))

    async def node_statuses(self) -> list[NodeStatus]:
        """Return what `TieredCache.node_statuses()` does, PINGing on this event loop.

        All nodes are asked at once on redis.asyncio connections of their own: the loop
        is never blocked, and this takes at most the connect + socket timeouts.
        """
        if self._executor is None:
            return []
        tier = registry.per_loop(self._loop_key, self._make_tier, aclose_tier)
        return await anode_statuses(tier, self._assembly.breaker_for)

    async def aclose(self) -> None:
        """Release this cache's connections on the running loop (others close with theirs)."""
        tier = registry.pop_per_loop(self._loop_key)
        if isinstance(tier, AsyncRedisTier | AsyncClusterTier):
            await tier.aclose()
