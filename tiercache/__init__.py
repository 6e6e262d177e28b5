"""tiercache: an in-process L1 ahead of a Redis L2, every call returning a Result."""

from tiercache.breaker import CircuitBreaker
from tiercache.cache import AsyncTieredCache, TieredCache
from tiercache.errors import (
    CacheError,
    CacheReadOnly,
    CacheTimeout,
    CacheUnavailable,
    CircuitOpen,
    CorruptData,
    DomainError,
    InvalidKey,
    InvalidTTL,
    LoaderFailed,
    NotAnInteger,
    NotSerializable,
    ValueTooLarge,
)
from tiercache.health import ResilienceStats, resilience_stats
from tiercache.memory import MemoryTier
from tiercache.metrics import CacheMetrics
from tiercache.options import CacheOptions
from tiercache.ports import (
    CacheEntry,
    CacheMetricsProtocol,
    CacheProtocol,
    JSONObject,
    NamespaceStats,
    SyncCacheProtocol,
)

__all__ = [
    "AsyncTieredCache",
    "CacheEntry",
    "CacheError",
    "CacheMetrics",
    "CacheMetricsProtocol",
    "CacheOptions",
    "CacheProtocol",
    "CacheReadOnly",
    "CacheTimeout",
    "CacheUnavailable",
    "CircuitBreaker",
    "CircuitOpen",
    "CorruptData",
    "DomainError",
    "InvalidKey",
    "InvalidTTL",
    "JSONObject",
    "LoaderFailed",
    "MemoryTier",
    "NamespaceStats",
    "NotAnInteger",
    "NotSerializable",
    "ResilienceStats",
    "SyncCacheProtocol",
    "TieredCache",
    "ValueTooLarge",
    "resilience_stats",
]
__version__ = "0.1.0"
