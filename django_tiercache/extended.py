"""django-redis's extended cache API on `TieredCache`, sync and native async.

Each method has django-redis 7's signature and meaning (`ttl` is 0 for a missing key,
None for no expiry; `delete_pattern` returns how many keys went), and fails open like
the rest of the backend. Every write goes through the tier policy, so no L1 copy (in
this process or another) outlives the change. `get_client()` and `lock()` hand out
redis-py itself: those raise redis-py's exceptions, as with django-redis.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, get_key_func
from returns.result import Failure, Result

from tiercache.drivers import drive, drive_async
from tiercache.errors import CacheError, NotAnInteger
from tiercache.globs import escape_glob
from tiercache.keys import namespace_of
from tiercache.memory import MISSING
from tiercache.policy import Flow, as_flow

if TYPE_CHECKING:
    import redis
    import redis.asyncio
    from redis.asyncio.lock import Lock as AsyncLock
    from redis.lock import Lock

    from django_tiercache.backbone import Backbone
    from tiercache.policy import TierPolicy

__all__ = ["ClientView", "DjangoRedisAPI"]

T = TypeVar("T")
Expiry = float | int | timedelta | None | object  # relative; None: never; or DEFAULT_TIMEOUT
When = datetime | int | float  # an absolute time: a datetime, or Unix seconds (or ms)
_GLOB_CHARS = frozenset("*?[]\\")


def default_reverse_key(key: str) -> str:
    """Return the caller's key inside a key made by Django's default key function."""
    return key.split(":", 2)[2]


def _whole(left: object, unit: int) -> int | None:
    """Return a TTL as django-redis does: None for no expiry, 0 for no key."""
    if left is MISSING or left is None:
        return 0 if left is MISSING else None
    assert isinstance(left, float | int)
    return max(0, round(left * unit))


def _seconds_until(key: Any, when: When, unit: int) -> float:
    """Return the seconds from now to `when` (a datetime, or a Unix time in 1/unit s)."""
    if isinstance(when, datetime):
        return when.timestamp() - time.time()
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"expiry time for key {key!r} must be a datetime or a number, not {when!r}")
    return when / unit - time.time()


class ClientView:
    """What code written for django-redis reaches through `cache.client`.

    `django_redis.get_redis_connection(alias)` calls `caches[alias].client.get_client()`,
    so it works with this backend too.
    """

    def __init__(self, cache: DjangoRedisAPI) -> None:
        self._cache = cache

    def get_client(
        self, write: bool = True, tried: object = None
    ) -> redis.Redis | redis.cluster.RedisCluster:
        """Return the raw redis-py client (one primary: `write` makes no difference)."""
        return self._cache.get_client(write=write)

    @property
    def _serializer(self) -> object:
        """Return the serializer in use (django-redis code reads `cache.client._serializer`)."""
        return self._cache._backbone.codec.serializer

    def close(self, **kwargs: Any) -> None:
        """Keep the connections: they are pooled per process (Django calls this per request)."""


class DjangoRedisAPI(BaseCache):
    """Base of `TieredCache`: django-redis's methods beyond Django's cache API."""

    if TYPE_CHECKING:  # provided by TieredCache

        @property
        def _policy(self) -> TierPolicy: ...
        @property
        def _backbone(self) -> Backbone: ...
        @property
        def _prefix(self) -> str: ...

        def _resolve(self, key: Any, version: int | None) -> tuple[str, str]: ...
        def _settle(self, result: Result[T, CacheError], operation: str, fallback: T) -> T: ...

    #: django-redis's flag, for code that reads it: tiercache always fails open.
    _ignore_exceptions = True

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._reverse_key: Callable[[str], str] = (
            get_key_func(params["REVERSE_KEY_FUNCTION"])
            if params.get("REVERSE_KEY_FUNCTION")
            else default_reverse_key
        )

    @property
    def _log_ignored_exceptions(self) -> bool:
        """Return whether each failure is logged (django-redis's flag; our option)."""
        return self._backbone.options.LOG_IGNORED_EXCEPTIONS

    # -- running flows ---------------------------------------------------------------

    def _run(self, flow: Flow[T], operation: str, fallback: T) -> T:
        return self._settle(drive(flow, self._backbone.sync_executor), operation, fallback)

    async def _arun(self, flow: Flow[T], operation: str, fallback: T) -> T:
        return self._settle(
            await drive_async(flow, self._backbone.async_executor), operation, fallback
        )

    # -- TTLs --------------------------------------------------------------------------

    def _left(self, key: Any, version: int | None) -> Flow[float | object | None]:
        return self._policy.ttl(*self._resolve(key, version))

    def ttl(self, key: Any, version: int | None = None) -> int | None:
        """Return the whole seconds `key` has left: None if it never expires, 0 if absent."""
        return _whole(self._run(self._left(key, version), "ttl", MISSING), 1)

    async def attl(self, key: Any, version: int | None = None) -> int | None:
        """Return the whole seconds `key` has left: None if it never expires, 0 if absent."""
        return _whole(await self._arun(self._left(key, version), "ttl", MISSING), 1)

    def pttl(self, key: Any, version: int | None = None) -> int | None:
        """Return the milliseconds `key` has left: None if it never expires, 0 if absent."""
        return _whole(self._run(self._left(key, version), "pttl", MISSING), 1000)

    async def apttl(self, key: Any, version: int | None = None) -> int | None:
        """Return the milliseconds `key` has left: None if it never expires, 0 if absent."""
        return _whole(await self._arun(self._left(key, version), "pttl", MISSING), 1000)

    def _expire(self, key: Any, seconds: float | None, version: int | None) -> Flow[bool]:
        """Give `key` `seconds` more (None: no expiry; 0 or less: delete it, as Redis does)."""
        full, namespace = self._resolve(key, version)
        if seconds is not None and seconds <= 0:
            removed = yield from self._policy.delete([full], namespace)
            return removed.map(bool)
        return (yield from self._policy.expire(full, namespace, seconds))

    def _seconds(self, key: Any, timeout: Expiry, unit: int) -> float | None:
        """Return a relative timeout (in 1/unit s, or a timedelta) in seconds."""
        if timeout is DEFAULT_TIMEOUT:
            return self.default_timeout  # the cache's TIMEOUT, in seconds whatever the unit
        if timeout is None:
            return None
        if isinstance(timeout, timedelta):
            return timeout.total_seconds()
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(
                f"timeout for key {key!r} must be a number or a timedelta, not {timeout!r}"
            )
        return timeout / unit

    def expire(self, key: Any, timeout: Expiry, version: int | None = None) -> bool:
        """Make `key` expire in `timeout` seconds; return False if there is no such key."""
        return self._run(
            self._expire(key, self._seconds(key, timeout, 1), version), "expire", False
        )

    async def aexpire(self, key: Any, timeout: Expiry, version: int | None = None) -> bool:
        """Make `key` expire in `timeout` seconds; return False if there is no such key."""
        flow = self._expire(key, self._seconds(key, timeout, 1), version)
        return await self._arun(flow, "expire", False)

    def pexpire(self, key: Any, timeout: Expiry, version: int | None = None) -> bool:
        """Make `key` expire in `timeout` milliseconds; False if there is no such key."""
        flow = self._expire(key, self._seconds(key, timeout, 1000), version)
        return self._run(flow, "pexpire", False)

    async def apexpire(self, key: Any, timeout: Expiry, version: int | None = None) -> bool:
        """Make `key` expire in `timeout` milliseconds; False if there is no such key."""
        flow = self._expire(key, self._seconds(key, timeout, 1000), version)
        return await self._arun(flow, "pexpire", False)

    def expire_at(self, key: Any, when: When, version: int | None = None) -> bool:
        """Make `key` expire at `when` (a datetime or Unix seconds); False if absent."""
        return self._run(
            self._expire(key, _seconds_until(key, when, 1), version), "expire_at", False
        )

    async def aexpire_at(self, key: Any, when: When, version: int | None = None) -> bool:
        """Make `key` expire at `when` (a datetime or Unix seconds); False if absent."""
        flow = self._expire(key, _seconds_until(key, when, 1), version)
        return await self._arun(flow, "expire_at", False)

    def pexpire_at(self, key: Any, when: When, version: int | None = None) -> bool:
        """Make `key` expire at `when` (a datetime or Unix milliseconds); False if absent."""
        flow = self._expire(key, _seconds_until(key, when, 1000), version)
        return self._run(flow, "pexpire_at", False)

    async def apexpire_at(self, key: Any, when: When, version: int | None = None) -> bool:
        """Make `key` expire at `when` (a datetime or Unix milliseconds); False if absent."""
        flow = self._expire(key, _seconds_until(key, when, 1000), version)
        return await self._arun(flow, "pexpire_at", False)

    def persist(self, key: Any, version: int | None = None) -> bool:
        """Remove the expiry of `key`; return False if it had none or does not exist."""
        return self._run(self._expire(key, None, version), "persist", False)

    async def apersist(self, key: Any, version: int | None = None) -> bool:
        """Remove the expiry of `key`; return False if it had none or does not exist."""
        return await self._arun(self._expire(key, None, version), "persist", False)

    # -- incr beyond 64 bits -----------------------------------------------------------

    def _incr(
        self, key: Any, delta: int, version: int | None, must_exist: bool
    ) -> Flow[int | None]:
        """Add `delta` atomically; past Redis's 64-bit range, read-add-write (as django-redis)."""
        full, namespace = self._resolve(key, version)
        policy = self._policy
        added = yield from policy.increment(full, namespace, delta, must_exist=must_exist)
        if not (isinstance(added, Failure) and isinstance(added.failure(), NotAnInteger)):
            return added
        found = yield from as_flow(policy.get(full, namespace))
        if isinstance(found, Failure):
            return found
        value = found.unwrap()
        if value is MISSING:  # gone meanwhile: start again from nothing
            return (yield from policy.increment(full, namespace, delta, must_exist=must_exist))
        if type(value) is not int:
            return added  # not a number at all: the caller's mistake
        left = yield from policy.ttl(full, namespace)
        if isinstance(left, Failure):
            return left
        seconds = left.unwrap()
        if seconds is MISSING:  # expired meanwhile
            return (yield from policy.increment(full, namespace, delta, must_exist=must_exist))
        assert seconds is None or isinstance(seconds, float | int)
        total = value + delta
        stored = yield from policy.set(full, namespace, total, seconds)
        return stored.map(lambda _: total)

    # -- patterns ----------------------------------------------------------------------

    def _glob(self, pattern: str, version: int | None, prefix: str | None = None) -> str:
        """Return the Redis glob of the caller's `pattern` (prefix and version escaped)."""
        made = self.key_func(
            pattern,
            escape_glob(self.key_prefix if prefix is None else prefix),
            escape_glob(str(self.version if version is None else version)),
        )
        return escape_glob(self._prefix) + str(made)

    @staticmethod
    def _pattern_namespace(pattern: str) -> str:
        """Return the namespace a pattern's metrics count under (never the pattern itself)."""
        namespace = namespace_of(pattern)
        return "default" if _GLOB_CHARS & set(namespace) or namespace == pattern else namespace

    def _delete_pattern(
        self, pattern: str, version: int | None, prefix: str | None, itersize: int | None
    ) -> Flow[int]:
        glob = self._glob(pattern, version, prefix)
        return self._policy.delete_matching(glob, self._pattern_namespace(pattern), itersize)

    def delete_pattern(
        self,
        pattern: str,
        version: int | None = None,
        prefix: str | None = None,
        itersize: int | None = None,
    ) -> int:
        """Delete the keys matching the glob `pattern` (SCAN in batches of `itersize`); count."""
        flow = self._delete_pattern(pattern, version, prefix, itersize)
        return self._run(flow, "delete_pattern", 0)

    async def adelete_pattern(
        self,
        pattern: str,
        version: int | None = None,
        prefix: str | None = None,
        itersize: int | None = None,
    ) -> int:
        """Delete the keys matching the glob `pattern` (SCAN in batches of `itersize`); count."""
        flow = self._delete_pattern(pattern, version, prefix, itersize)
        return await self._arun(flow, "delete_pattern", 0)

    def _caller_key(self, full: str) -> str:
        return str(self._reverse_key(full[len(self._prefix) :]))

    def iter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> Iterator[str]:
        """Yield the caller's keys matching the glob `search`, one SCAN batch at a time."""
        glob, cursor = self._glob(search, version), 0
        while True:
            step = self._policy.scan(glob, cursor, itersize)
            cursor, batch = self._run(step, "iter_keys", (0, []))
            yield from map(self._caller_key, batch)
            if cursor == 0:
                return

    async def aiter_keys(
        self, search: str, itersize: int | None = None, version: int | None = None
    ) -> AsyncIterator[str]:
        """Yield the caller's keys matching the glob `search`, one SCAN batch at a time."""
        glob, cursor = self._glob(search, version), 0
        while True:
            step = self._policy.scan(glob, cursor, itersize)
            cursor, batch = await self._arun(step, "iter_keys", (0, []))
            for full in batch:
                yield self._caller_key(full)
            if cursor == 0:
                return

    def keys(self, search: str, version: int | None = None) -> list[str]:
        """Return the caller's keys matching the glob `search` (SCAN, never KEYS)."""
        return list(dict.fromkeys(self.iter_keys(search, version=version)))

    async def akeys(self, search: str, version: int | None = None) -> list[str]:
        """Return the caller's keys matching the glob `search` (SCAN, never KEYS)."""
        return list(dict.fromkeys([key async for key in self.aiter_keys(search, version=version)]))

    # -- redis-py itself ---------------------------------------------------------------

    def get_client(
        self, key: Any = None, *, write: bool = True
    ) -> redis.Redis | redis.cluster.RedisCluster:
        """Return the raw redis-py client (data structures, pipelines; no L1, no fail-open)."""
        tier = self._backbone.sync_tier
        if tier is None:
            raise NotImplementedError("this cache has no Redis LOCATION (L1 only)")
        return tier.client

    async def aget_client(
        self, key: Any = None, *, write: bool = True
    ) -> redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster:
        """Return the raw asyncio redis-py client of the running event loop."""
        if self._backbone.sync_tier is None:
            raise NotImplementedError("this cache has no Redis LOCATION (L1 only)")
        return self._backbone.async_tier().client

    @cached_property
    def client(self) -> ClientView:
        """Return what django-redis code reaches as `cache.client` (`get_client`, `close`)."""
        return ClientView(self)

    def lock(
        self,
        key: Any,
        *,
        version: int | None = None,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        thread_local: bool = True,
    ) -> Lock:
        """Return a redis-py `Lock` named by `key` under this cache's prefix."""
        lock: Lock = self.get_client().lock(
            self._resolve(key, version)[0],
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
            thread_local=thread_local,
        )
        return lock

    async def alock(
        self,
        key: Any,
        *,
        version: int | None = None,
        timeout: float | None = None,
        sleep: float = 0.1,
        blocking: bool = True,
        blocking_timeout: float | None = None,
        thread_local: bool = True,
    ) -> AsyncLock:
        """Return a redis-py asyncio `Lock` named by `key` under this cache's prefix."""
        client = await self.aget_client()
        return client.lock(
            self._resolve(key, version)[0],
            timeout=timeout,
            sleep=sleep,
            blocking=blocking,
            blocking_timeout=blocking_timeout,
            thread_local=thread_local,
        )

    def close(self, **kwargs: Any) -> None:
        """Keep the shared pool open: Django calls this after every request."""
        self.client.close(**kwargs)

    async def aclose(self, **kwargs: Any) -> None:
        """Keep the shared pools open: Django calls this after every request."""
        self.client.close(**kwargs)
