"""What all instances of one cache alias share in a process: tiers, bus, clients.

Django builds a backend instance per thread and per async context; they must share
one L1 (or hit rates collapse) and one connection pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_tiercache.aggregation import RedisCounterStore
from django_tiercache.codec import DjangoCodec
from django_tiercache.compression import CompressingSerializer
from django_tiercache.conf import app_settings
from django_tiercache.metrics import AliasMetrics
from django_tiercache.options import BackendOptions, invalidation_conflict
from django_tiercache.serializers import Serializer
from django_tiercache.workers import probe_of
from tiercache import registry
from tiercache.cluster_tier import AsyncTier, SyncTier, aclose_tier, async_tier_for, tier_for
from tiercache.commands import Request, operation_of
from tiercache.composite import Assembly, assemble
from tiercache.errors import CacheError, CacheUnavailable

__all__ = ["Backbone", "backbone_for", "signing_keys"]

logger = logging.getLogger("django_tiercache")

_LOG_EVERY = 10.0  # seconds between two log lines about the same kind of failure


class Backbone:
    """The shared parts of one alias: policy, codec, sync tier, async tiers per loop."""

    def __init__(self, alias: str, options: BackendOptions, keys: tuple[str, ...]) -> None:
        self.alias = alias
        self.options = options
        self.codec = DjangoCodec(_serializer(options, keys))
        self.metrics = AliasMetrics(alias, push_interval=options.METRICS_PUSH_INTERVAL)
        if conflict := invalidation_conflict(alias, options):
            raise ImproperlyConfigured(conflict)
        try:
            self.assembly: Assembly = assemble(self.options.core, self.codec, self.metrics)
        except ValueError as error:  # redis-py refuses the URL's query, e.g. "?socket_timeout=x"
            raise ImproperlyConfigured(
                f"CACHES[{alias!r}]['LOCATION'] {options.core.location!r}: {error}"
            ) from None
        self.policy = self.assembly.policy
        self.sync_tier: SyncTier | None = None
        if self.assembly.topology is not None:
            assert self.assembly.breaker is not None
            self.sync_tier = tier_for(self.assembly)
            # The counters travel through this cache's own tier: its timeouts, its breaker.
            node = self.options.core.location
            self.metrics.connect(
                RedisCounterStore(
                    self.sync_tier.execute,
                    f"{app_settings().METRICS_KEY_PREFIX}{{{options.core.key_prefix}{alias}}}",
                ),
                lambda: probe_of(self.assembly, node),
            )
        self._loop_key = ("django_tiercache", object())
        self._last_logged: dict[str, float] = {}

    def execute(self, request: Request) -> object:
        """Run a request on the sync client, timing it into the metrics."""
        assert self.sync_tier is not None
        started = time.perf_counter()
        try:
            return self.sync_tier.execute(request)
        finally:
            self.metrics.record_latency("l2", operation_of(request), time.perf_counter() - started)

    async def execute_async(self, request: Request) -> object:
        """Run a request on the client of the running event loop, timing it."""
        tier = self.async_tier()
        started = time.perf_counter()
        try:
            return await tier.execute(request)
        finally:
            self.metrics.record_latency("l2", operation_of(request), time.perf_counter() - started)

    def async_tier(self) -> AsyncTier:
        """Return the async tier of the running event loop (made on first use)."""
        return registry.per_loop(self._loop_key, self._async_tier, aclose_tier)

    def _async_tier(self) -> AsyncTier:
        return async_tier_for(self.assembly)

    @property
    def sync_executor(self) -> Callable[[Request], object] | None:
        """Return the sync executor, or None for an L1-only cache."""
        return self.execute if self.sync_tier is not None else None

    @property
    def async_executor(self) -> Callable[[Request], Any] | None:
        """Return the async executor, or None for an L1-only cache."""
        return self.execute_async if self.sync_tier is not None else None

    def log_failure(self, operation: str, error: CacheError) -> None:
        """Log a failure, at most once per kind every few seconds (no flooding)."""
        if self.options.LOG_IGNORED_EXCEPTIONS:  # every one, as django-redis does
            logger.error("Exception ignored", exc_info=error)
            return
        kind = type(error).__name__
        now = time.monotonic()
        if now - self._last_logged.get(kind, -_LOG_EVERY) < _LOG_EVERY:
            return
        self._last_logged[kind] = now
        if isinstance(error, CacheUnavailable):
            logger.warning(
                "cache %r: %s failed (%s: %s); serving without Redis",
                self.alias,
                operation,
                kind,
                error,
            )
        else:  # the key or the value is at fault, not Redis
            logger.warning("cache %r: %s skipped (%s: %s)", self.alias, operation, kind, error)

    def close(self) -> None:
        """Release the sync connection pool."""
        if self.sync_tier is not None:
            self.sync_tier.close()


def signing_keys(options: BackendOptions) -> tuple[str, ...]:
    """Return the key that signs, then the keys that still verify (a rotation's old keys)."""
    if options.SIGNING_KEY:  # '' counts as unset, as it always has
        return (options.SIGNING_KEY,)
    return (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))


def _serializer(options: BackendOptions, keys: tuple[str, ...]) -> Serializer:
    factory = import_string(options.SERIALIZER)
    serializer: Serializer = factory(keys[0], keys[1:])
    if options.COMPRESSOR:  # each value names its algorithm: any of them reads back
        return CompressingSerializer(serializer, options.COMPRESSOR, options.COMPRESS_MIN_BYTES)
    return serializer


def backbone_for(alias: str, options: BackendOptions) -> Backbone:
    """Return the process-wide backbone of an alias, building it once.

    Keyed by everything that shapes it and its metrics: a second cache on the same Redis
    with other options gets its own.
    """
    keys = signing_keys(options)  # part of the identity: a rotation makes a new backbone
    return registry.shared(
        ("django_tiercache", alias, options, keys, app_settings().METRICS_KEY_PREFIX),
        lambda: Backbone(alias, options, keys),
        close=Backbone.close,
    )
