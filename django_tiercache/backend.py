"""`TieredCache`: tiercache as a Django cache backend (`CACHES[alias]["BACKEND"]`).

Each operation is written once as a flow (`_get`, `_set`, ...); the sync methods and
their native `a*` twins only drive it, then `_settle` turns failures into Django's
fail-open answers.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, TypeVar

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, default_key_func
from django.core.exceptions import ImproperlyConfigured
from returns.result import Failure, Result, Success

from django_tiercache.backbone import Backbone, backbone_for
from django_tiercache.extended import DjangoRedisAPI
from django_tiercache.inspection import KeyInspection, inspect_key
from django_tiercache.metrics import AliasMetrics
from django_tiercache.options import BackendOptions, parse_options
from tiercache.breaker import CircuitBreaker
from tiercache.bus import LocalBus
from tiercache.drivers import drive, drive_async
from tiercache.errors import CacheError, LoaderFailed, NotAnInteger, NotSerializable
from tiercache.globs import escape_glob
from tiercache.keys import KeyMemo, namespace_of
from tiercache.memory import MISSING, MemoryTier
from tiercache.options import CacheOptions
from tiercache.policy import Flow, TierPolicy
from tiercache.stampede import Loading, aload, load, make_plan
from tiercache.topology_nodes import NodeStatus, node_statuses

__all__ = ["TieredCache"]

T = TypeVar("T")
Timeout = float | int | None | object

# Django's memcached-compatibility warnings are slow to compute; this finds, in one
# C-level search, the keys that may need one.
_MAYBE_WARN = re.compile(r"[\x00-\x20\x7f]")
_MEMCACHE_MAX_KEY_LENGTH = 250


def _alias_of(location: object, params: Mapping[str, Any]) -> str:
    """Return the CACHES alias whose settings built this backend (Django doesn't say)."""
    for alias, conf in getattr(settings, "CACHES", {}).items():
        rest = {k: v for k, v in conf.items() if k not in ("BACKEND", "LOCATION")}
        if conf.get("LOCATION", "") == location and rest == dict(params):
            return str(alias)
    return str(location) if location else "memory"


class TieredCache(DjangoRedisAPI):
    """A Django cache: in-process L1 ahead of Redis, failing open when Redis fails.

    Django's cache API plus django-redis's extended one (see `DjangoRedisAPI`).
    """

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(params)
        # Nothing else is built until first use: Django builds every cache before the
        # system checks run, and a bad setting must reach the user as a check message.
        self._server = server
        self._params = params
        # Key function, prefix and version are fixed per instance, so resolving a key
        # once is enough (Django makes an instance per thread: no lock needed).
        self._keys = KeyMemo(self._make)

    @cached_property
    def alias(self) -> str:
        """Return the CACHES alias of this backend."""
        return _alias_of(self._server, self._params)

    @cached_property
    def options(self) -> BackendOptions:
        """Return the parsed settings; raise `ImproperlyConfigured` naming a bad one."""
        return parse_options(self.alias, self._server, self._params.get("OPTIONS"))

    @cached_property
    def _backbone(self) -> Backbone:
        options = self.options
        return backbone_for(self.alias, options)

    @cached_property
    def _policy(self) -> TierPolicy:
        return self._backbone.policy

    @cached_property
    def _prefix(self) -> str:
        return self.options.core.key_prefix

    @cached_property
    def _separator(self) -> str:
        return self.options.core.namespace_separator

    # -- what tooling reads ----------------------------------------------------------

    @property
    def metrics(self) -> AliasMetrics:
        """Return the metrics of this alias (summed over processes by its pusher)."""
        return self._backbone.metrics

    @property
    def l1(self) -> MemoryTier | None:
        """Return the in-process tier, if any."""
        return self._policy.l1

    @property
    def breaker(self) -> CircuitBreaker | None:
        """Return the circuit breaker guarding Redis, if any."""
        return self._backbone.assembly.breaker

    @property
    def bus_healthy(self) -> bool:
        """Return whether this process hears other processes' invalidations."""
        return self._backbone.assembly.bus.healthy

    def describe(self) -> dict[str, object]:
        """Return a summary of the configuration, safe to show (no password)."""
        core = self.options.core
        return {
            "alias": self.alias,
            "location": core.location,
            "topology": _topology_name(core),
            "l1_maxsize": core.l1_maxsize,
            "l1_ttl": core.l1_ttl,
            "redis_prefix": self._prefix,
            "key_prefix": self.key_prefix,
            "version": self.version,
            "default_timeout": self.default_timeout,
            "serializer": self.options.SERIALIZER,
            "invalidation": core.invalidation,
            "connect_timeout": core.connect_timeout,
            "socket_timeout": core.socket_timeout,
            "max_value_bytes": core.max_value_bytes,
        }

    def redis_health(self, nodes: Sequence[NodeStatus] | None = None) -> dict[str, object]:
        """Return ping latency, version and memory of Redis; never raises.

        Redis is reachable when every node the cache sends commands to (each one with a
        breaker) answered its PING in `nodes` (`node_statuses()`, asked now if not
        given): one round of PINGs serves the node table and this, so a node that does
        not answer costs one timeout, not two. The latency is the slowest of theirs.
        INFO is asked only then.
        """
        health: dict[str, object] = {
            "reachable": False,
            "latency_ms": None,
            "version": None,
            "used_memory": None,
            "error": None,
        }
        if self._backbone.sync_tier is None:
            health["error"] = "no Redis configured (L1 only)"
            return health
        served = [
            node for node in (self.node_statuses() if nodes is None else nodes) if node.breaker
        ]
        silent = [node for node in served if not node.healthy]
        if silent or not served:
            health["error"] = (
                "; ".join(f"{node.address}: {node.error}" for node in silent) or "no primary found"
            )
            return health
        health["latency_ms"] = max(node.latency_ms or 0.0 for node in served)
        try:
            info = self._backbone.execute(("INFO",))
        except CacheError as error:
            health["error"] = str(error)
            return health
        health["reachable"] = True
        if isinstance(info, dict):
            health["version"] = info.get("redis_version")
            health["used_memory"] = info.get("used_memory_human")
        return health

    def node_statuses(self) -> list[NodeStatus]:
        """Return each Redis node with its role, PING answer and breaker; never raises.

        Every node is asked at once, within the cache's timeouts (none: L1 only).
        """
        backbone = self._backbone
        if backbone.sync_tier is None:
            return []
        return node_statuses(backbone.sync_tier, backbone.assembly.breaker_for)

    def flush_namespace(self, namespace: str) -> int:
        """Delete every key of `namespace` (default key function) in all tiers; return how many.

        Raise the `CacheError` if Redis could not do it (unlike the cache API, which
        fails open).
        """
        glob = (
            escape_glob(self._prefix + self.key_prefix)
            + ":*:"
            + escape_glob(namespace + self._separator)
            + "*"
        )
        result = drive(self._policy.delete_matching(glob, namespace), self._sync)
        if isinstance(result, Failure):
            raise result.failure()  # an operator's action: say it failed, never "0 deleted"
        return result.unwrap()

    def inspect(self, key: Any, version: int | None = None) -> KeyInspection:
        """Return how `key` is held in this process's L1 and in Redis, changing neither."""
        redis_key = self._prefix + self.make_key(key, version)
        return inspect_key(
            str(key), redis_key, l1=self.l1, codec=self._backbone.codec, execute=self._sync
        )

    # -- keys, timeouts, failures ----------------------------------------------------

    def validate_key(self, key: str) -> None:
        if len(key) > _MEMCACHE_MAX_KEY_LENGTH or _MAYBE_WARN.search(key):
            super().validate_key(key)

    def _key(self, key: Any, version: int | None) -> str:
        made = self.make_key(key, version)
        self.validate_key(made)
        return self._prefix + made

    def _resolve(self, key: Any, version: int | None) -> tuple[str, str]:
        """Return the Redis key and the namespace of `key`, memoised for plain keys."""
        if version is None and type(key) is str:
            resolved = self._keys[key]
            if resolved is not None:
                return resolved
        return self._key(key, version), self._namespace(key)

    def _make(self, key: str) -> tuple[str, str] | None:
        """Resolve a str `key` of the current version; None if it warns (never memoised)."""
        if self.key_func is default_key_func:  # Django's own, inlined (tests swap it)
            made = f"{self.key_prefix}:{self.version}:{key}"
        else:
            made = self.make_key(key, None)
        if len(made) > _MEMCACHE_MAX_KEY_LENGTH or _MAYBE_WARN.search(made):
            return None  # `validate_key` must warn on every call
        return self._prefix + made, namespace_of(key, self._separator)

    def _namespace(self, key: Any) -> str:
        return namespace_of(key if type(key) is str else str(key), self._separator)

    def get_backend_timeout(self, timeout: Timeout = DEFAULT_TIMEOUT) -> float | None:
        """Return seconds to keep a value: None forever, 0 means delete now (as Django)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else max(0, int(timeout))  # type: ignore[call-overload]

    def _callers_key(self, stored: str) -> str:
        """Return the key a caller wrote for the Redis key `stored`, to name it in errors.

        Only Django's own key function can be read backwards; with another, errors
        name the key that function made.
        """
        head = self._prefix + self.key_prefix + ":"
        if self.key_func is default_key_func and stored.startswith(head):
            _version, _, key = stored[len(head) :].partition(":")
            return key
        return stored

    def _settle(self, result: Result[T, CacheError], operation: str, fallback: T) -> T:
        """Return a success's value; raise for a caller's mistake; else log and fall back."""
        if type(result) is Success:  # not isinstance: an ABC check, on every L1 hit
            value: T = result.unwrap()
            return value
        error = result.failure()
        if error.key is not None:
            error.named(self._callers_key(error.key))
        if isinstance(error, NotSerializable):
            raise pickle.PicklingError(str(error))
        if isinstance(error, NotAnInteger):  # incr/decr of a value that is not an int
            raise TypeError(str(error))
        self._backbone.log_failure(operation, error)
        return fallback

    # -- flows, written once for both colours ----------------------------------------

    def _set(
        self,
        key: Any,
        value: Any,
        timeout: Timeout,
        version: int | None,
        *,
        only_if_absent: bool = False,
        only_if_present: bool = False,
    ) -> Flow[bool]:
        if only_if_absent and only_if_present:
            raise ValueError(f"set() of key {key!r}: nx and xx exclude each other")
        full, namespace = self._resolve(key, version)
        seconds = self.get_backend_timeout(timeout)
        condition = {"only_if_absent": only_if_absent, "only_if_present": only_if_present}
        if seconds != 0:
            return (yield from self._policy.set(full, namespace, value, seconds, **condition))
        # Timeout 0 means "expired at once": nothing stays, but `add` (and nx/xx) still
        # report whether the condition held, as Django's Redis backend does; a value the
        # condition kept out stays as it was.
        if only_if_absent or only_if_present:
            stored = yield from self._policy.set(full, namespace, value, 1, **condition)
            if not (isinstance(stored, Success) and stored.unwrap()):
                return stored
        removed = yield from self._policy.delete([full], namespace)
        return removed.map(lambda _: True)

    def _touch(self, key: Any, timeout: Timeout, version: int | None) -> Flow[bool]:
        full, namespace = self._resolve(key, version)
        seconds = self.get_backend_timeout(timeout)
        if seconds == 0:
            removed = yield from self._policy.delete([full], namespace)
            return removed.map(bool)
        return (yield from self._policy.expire(full, namespace, seconds))

    def _delete(self, key: Any, version: int | None) -> Flow[bool]:
        full, namespace = self._resolve(key, version)
        removed = yield from self._policy.delete([full], namespace)
        return removed.map(bool)

    def _get_many(self, keys: Iterable[Any], version: int | None) -> Flow[dict[Any, Any]]:
        keys = list(dict.fromkeys(keys))  # each key once, in the caller's order
        resolve = self._resolve
        pairs = [resolve(key, version) for key in keys]
        found = yield from self._policy.get_many(pairs)
        return found.map(
            lambda hits: {
                key: hits[full] for key, (full, _) in zip(keys, pairs, strict=True) if full in hits
            }
        )

    def _has_key(self, key: Any, version: int | None) -> Flow[bool]:
        return self._policy.exists(*self._resolve(key, version))

    def _set_many(
        self, data: Mapping[Any, Any], timeout: Timeout, version: int | None
    ) -> Flow[list[Any]]:
        if not data:
            return Success([])
        seconds = self.get_backend_timeout(timeout)
        items = [(*self._resolve(key, version), value) for key, value in data.items()]
        if seconds == 0:
            removed = yield from self._policy.delete([full for full, _, _ in items], items[0][1])
            return removed.map(lambda _: [])
        return (yield from self._policy.set_many(items, seconds))

    def _delete_many(self, keys: Iterable[Any], version: int | None) -> Flow[int]:
        fulls = [self._key(key, version) for key in keys]
        if not fulls:
            return Success(0)
        return (yield from self._policy.delete(fulls, self._namespace(next(iter(keys)))))

    def _clear(self) -> Flow[int]:
        return self._policy.delete_matching(escape_glob(self._prefix) + "*", "default")

    @staticmethod
    def _incremented(total: int | None, key: Any) -> int:
        if total is None:
            raise ValueError(f"Key '{key}' not found.")
        return total

    # -- the sync API ----------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        # `_resolve`'s memo inlined: this is every L1 hit, and a call is a tenth of one.
        resolved = self._keys[key] if version is None and type(key) is str else None
        if resolved is None:
            resolved = self._resolve(key, version)
        value = self._policy.lookup(*resolved)  # an L1 hit: no flow, driver or Result
        if value is MISSING:
            value = self._settle(drive(self._policy.get(*resolved), self._sync), "get", MISSING)
        return default if value is MISSING else value

    def set(  # type: ignore[override]  # returns a bool, as django-redis's does
        self,
        key: Any,
        value: Any,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        """Store `value`; with `nx` only if `key` is absent, `xx` only if present (django-redis).

        Return whether it was stored (Django's API returns None; django-redis a bool).
        """
        flow = self._set(key, value, timeout, version, only_if_absent=nx, only_if_present=xx)
        return self._settle(drive(flow, self._sync), "set", False)

    def add(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._settle(
            drive(self._set(key, value, timeout, version, only_if_absent=True), self._sync),
            "add",
            False,
        )

    def touch(
        self, key: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._settle(drive(self._touch(key, timeout, version), self._sync), "touch", False)

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._settle(drive(self._delete(key, version), self._sync), "delete", False)

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return self._settle(drive(self._get_many(keys, version), self._sync), "get_many", {})

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._settle(drive(self._has_key(key, version), self._sync), "has_key", False)

    def incr(
        self,
        key: Any,
        delta: int = 1,
        version: int | None = None,
        *,
        ignore_key_check: bool = False,
    ) -> int:
        """Add `delta`; a missing key raises ValueError unless `ignore_key_check` (then 0)."""
        flow = self._incr(key, delta, version, not ignore_key_check)
        return self._incremented(self._settle(drive(flow, self._sync), "incr", None), key)

    def set_many(
        self,
        data: Mapping[Any, Any],
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        return self._settle(
            drive(self._set_many(data, timeout, version), self._sync), "set_many", list(data)
        )

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        keys = list(keys)
        self._settle(drive(self._delete_many(keys, version), self._sync), "delete_many", 0)

    def clear(self) -> None:
        self._settle(drive(self._clear(), self._sync), "clear", 0)

    # -- the native async API --------------------------------------------------------

    async def aget(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        resolved = self._resolve(key, version)
        value = self._policy.lookup(*resolved)
        if value is MISSING:
            found = await drive_async(self._policy.get(*resolved), self._async)
            value = self._settle(found, "get", MISSING)
        return default if value is MISSING else value

    async def aset(  # type: ignore[override]  # returns a bool, as django-redis's does
        self,
        key: Any,
        value: Any,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        nx: bool = False,
        xx: bool = False,
    ) -> bool:
        """Store `value`; with `nx` only if `key` is absent, `xx` only if present; stored?"""
        flow = self._set(key, value, timeout, version, only_if_absent=nx, only_if_present=xx)
        return self._settle(await drive_async(flow, self._async), "set", False)

    async def aadd(
        self, key: Any, value: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._settle(
            await drive_async(
                self._set(key, value, timeout, version, only_if_absent=True), self._async
            ),
            "add",
            False,
        )

    async def atouch(
        self, key: Any, timeout: Timeout = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        return self._settle(
            await drive_async(self._touch(key, timeout, version), self._async), "touch", False
        )

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        return self._settle(
            await drive_async(self._delete(key, version), self._async), "delete", False
        )

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        return self._settle(
            await drive_async(self._get_many(keys, version), self._async), "get_many", {}
        )

    async def ahas_key(self, key: Any, version: int | None = None) -> bool:
        return self._settle(
            await drive_async(self._has_key(key, version), self._async), "has_key", False
        )

    async def aincr(
        self,
        key: Any,
        delta: int = 1,
        version: int | None = None,
        *,
        ignore_key_check: bool = False,
    ) -> int:
        """Add `delta`; a missing key raises ValueError unless `ignore_key_check` (then 0)."""
        flow = self._incr(key, delta, version, not ignore_key_check)
        return self._incremented(
            self._settle(await drive_async(flow, self._async), "incr", None), key
        )

    async def adecr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return await self.aincr(key, -delta, version)

    async def aset_many(
        self,
        data: Mapping[Any, Any],
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> list[Any]:
        return self._settle(
            await drive_async(self._set_many(data, timeout, version), self._async),
            "set_many",
            list(data),
        )

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        keys = list(keys)
        self._settle(
            await drive_async(self._delete_many(keys, version), self._async), "delete_many", 0
        )

    async def aclear(self) -> None:
        self._settle(await drive_async(self._clear(), self._async), "clear", 0)

    # Cached: every call, an L1 hit included, hands its driver the executor.
    @cached_property
    def _sync(self) -> Callable[..., object] | None:
        return self._backbone.sync_executor

    @cached_property
    def _async(self) -> Callable[..., Any] | None:
        return self._backbone.async_executor

    # -- get_or_set: one computation per missing key (see tiercache.stampede) -----------

    @property
    def bus(self) -> LocalBus:
        """Return the invalidation bus that keeps this alias's L1 coherent."""
        return self._backbone.assembly.bus

    def _loading(self, key: Any, timeout: Timeout, version: int | None) -> Loading:
        full, namespace = self._resolve(key, version)
        options = self.options
        plan = make_plan(
            self.get_backend_timeout(timeout),
            lock=options.GET_OR_SET_LOCK,
            stale_ttl=options.STALE_TTL,
            fail_safe=options.FAIL_SAFE_MAX_AGE,
            jitter=options.core.ttl_jitter,
        )
        if isinstance(plan, CacheError):
            raise ImproperlyConfigured(f"django_tiercache OPTIONS: {plan}")
        return self._backbone.assembly.stampede.flow(full, namespace, plan)

    def _loaded(self, result: Result[object, CacheError]) -> Any:
        if isinstance(result, Failure):
            cause = result.failure().__cause__
            if isinstance(result.failure(), LoaderFailed) and isinstance(cause, Exception):
                raise cause  # Django lets the callable's exception through
        return self._settle(result, "get_or_set", None)

    def get_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Return the cached value, or compute `default` (a value or a callable) and cache it.

        Concurrent callers of a missing key wait for one computation in this process (in
        the whole fleet with GET_OR_SET_LOCK); see STALE_TTL and FAIL_SAFE_MAX_AGE.
        """
        loader = default if callable(default) else lambda: default
        return self._loaded(load(self._loading(key, timeout, version), self._sync, loader))

    async def aget_or_set(
        self,
        key: Any,
        default: Any,
        timeout: Timeout = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> Any:
        """Return the cached value, or compute `default` once and cache it (as in Django,
        a callable is called, not awaited)."""

        async def loader() -> object:
            return default() if callable(default) else default

        flow = self._loading(key, timeout, version)
        return self._loaded(await aload(flow, self._async, loader))


def _topology_name(core: CacheOptions) -> str:
    if core.url is None:
        return "none (L1 only)"
    return "cluster" if core.cluster else "sentinel" if core.sentinels else "standalone"
