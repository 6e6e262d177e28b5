"""What the admin page, the checks and the command need from the cache backend."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.utils.module_loading import import_string

from django_tiercache.conf import BACKEND_PATH
from django_tiercache.inspection import KeyInspection
from django_tiercache.options import BackendOptions
from tiercache import CacheMetricsProtocol, CircuitBreaker, MemoryTier
from tiercache.topology_nodes import NodeStatus

__all__ = ["TieredBackend", "is_tiered_backend", "tiered_aliases", "tiered_cache"]

_METHODS = ("describe", "redis_health", "node_statuses", "flush_namespace")


class TieredBackend(Protocol):
    """`django_tiercache.backend.TieredCache` as seen by the tooling."""

    alias: str
    metrics: CacheMetricsProtocol
    l1: MemoryTier | None
    breaker: CircuitBreaker | None
    bus_healthy: bool
    options: BackendOptions

    def describe(self) -> dict[str, object]:
        """Return the configuration summary, passwords redacted."""
        ...

    def redis_health(self, nodes: Sequence[NodeStatus] | None = None) -> dict[str, object]:
        """Return reachable, latency_ms, version, used_memory, error (from `nodes`); never raise."""
        ...

    def node_statuses(self) -> list[NodeStatus]:
        """Return each Redis node: role, address, PING answer, breaker; never raise."""
        ...

    def flush_namespace(self, namespace: str) -> int:
        """Delete the namespace's keys (and every process's L1 copies); return how many."""
        ...

    def inspect(self, key: str, version: int | None = None) -> KeyInspection:
        """Return how `key` is held in this process's L1 and in Redis, changing neither."""
        ...


def is_tiered_backend(path: object) -> bool:
    """Return whether the dotted `path` names the tiered backend (or a work-alike)."""
    if path == BACKEND_PATH:
        return True
    if not isinstance(path, str):
        return False
    try:
        backend = import_string(path)
    except ImportError:
        return False
    return (
        isinstance(backend, type)
        and issubclass(backend, BaseCache)
        and all(callable(getattr(backend, name, None)) for name in _METHODS)
    )


def tiered_aliases() -> list[str]:
    """Return the `CACHES` aliases served by the tiered backend, in settings order."""
    return [
        alias
        for alias, config in settings.CACHES.items()
        if is_tiered_backend(config.get("BACKEND"))
    ]


def tiered_cache(alias: str) -> TieredBackend:
    """Return this thread's backend instance of `alias`."""
    return cast(TieredBackend, caches[alias])
