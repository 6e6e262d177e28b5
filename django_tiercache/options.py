"""The backend's OPTIONS: every key, its default and its meaning, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["OPTION_DEFAULTS", "BackendOptions", "parse_options"]


@dataclass(frozen=True)
class BackendOptions:
    """`CACHES[alias]["OPTIONS"]`, with upper-case keys as in settings."""

    #: Most entries the in-process L1 holds; 0 turns L1 off.
    L1_MAXSIZE: int = 10_000
    #: Longest an entry lives in L1, in seconds (also capped by its Redis TTL).
    L1_TTL: float = 60.0
    #: Optional bound on the summed size of L1's values, in bytes.
    L1_MAX_BYTES: int | None = None
    #: Seconds to wait for a TCP connection to Redis, and for each reply.
    CONNECT_TIMEOUT: float = 0.25
    SOCKET_TIMEOUT: float = 0.5
    #: Connections per process in the pool (None: redis-py's default).
    MAX_CONNECTIONS: int | None = None
    #: Largest value accepted, in bytes once serialised.
    MAX_VALUE_BYTES: int | None = 8 * 1024 * 1024
    #: Dotted path of the serializer class.
    SERIALIZER: str = "django_tiercache.serializers.SignedPickleSerializer"
    #: Key that signs pickles (None: settings.SECRET_KEY).
    SIGNING_KEY: str | None = None
    #: Compress values of at least COMPRESS_MIN_BYTES: "zlib", "gzip", "lzma", "lz4", "zstd".
    COMPRESSOR: str | None = None
    COMPRESS_MIN_BYTES: int = 1024
    #: Log every Redis failure answered as a miss at ERROR ("Exception ignored", as
    #: django-redis does), instead of one warning per kind of failure every few seconds.
    LOG_IGNORED_EXCEPTIONS: bool = False
    #: Prefix of this cache's keys in Redis; `clear()` deletes only keys under it.
    REDIS_PREFIX: str = "dj:"
    #: Text before the first separator of a key is its namespace ("user:1" -> "user").
    NAMESPACE_SEPARATOR: str = ":"
    #: Tell other processes about writes so they drop their L1 copies.
    INVALIDATION: bool = True
    #: Consecutive Redis failures that open the circuit, and seconds before a probe.
    BREAKER_THRESHOLD: int = 3
    BREAKER_RESET: float = 2.0
    #: Seconds of pub/sub silence before the listener PINGs, and that it waits for the pong.
    HEARTBEAT_INTERVAL: float = 1.0
    #: get_or_set: a Redis lock makes one process in the fleet compute a missing value.
    GET_OR_SET_LOCK: bool = False
    #: get_or_set: lifetime of that lock, and the longest other processes wait on it.
    LOCK_TIMEOUT: float = 10.0
    #: get_or_set: after its timeout, serve a value this many seconds more while one
    #: caller recomputes it (stale-while-revalidate; 0: off).
    STALE_TTL: float = 0.0
    #: get_or_set: after its timeout, serve a value this many seconds more when the
    #: callable raises or Redis is down (fail-safe; 0: off).
    FAIL_SAFE_MAX_AGE: float = 0.0
    #: get_or_set: shorten each timeout by a random fraction up to this (0: off).
    TTL_JITTER: float = 0.0
    #: Seconds between each process adding its metric counters into Redis.
    METRICS_PUSH_INTERVAL: float = 5.0


OPTION_DEFAULTS: dict[str, object] = {f.name: f.default for f in fields(BackendOptions)}


def parse_options(options: Mapping[str, Any] | None) -> BackendOptions:
    """Return the options, or raise `ImproperlyConfigured` naming an unknown or bad key."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown django_tiercache OPTIONS key(s): {', '.join(unknown)}. "
            f"Known keys: {', '.join(OPTION_DEFAULTS)}."
        )
    for name, value in options.items():
        default = OPTION_DEFAULTS[name]
        if default is not None and value is not None and not _same_kind(default, value):
            raise ImproperlyConfigured(
                f"django_tiercache OPTIONS[{name!r}] must be a {type(default).__name__}, "
                f"got {value!r}"
            )
    return BackendOptions(**options)


def _same_kind(default: object, value: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, type(default)) and not isinstance(value, bool)
