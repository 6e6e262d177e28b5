"""Every setting of a tiered cache, declared once with its default."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tiercache.settings import RedisSettings, redact_url

__all__ = ["CacheOptions"]


@dataclass(frozen=True)
class CacheOptions:
    """How a tiered cache is built. `url=None` means L1 only; `l1_maxsize=0`, L2 only."""

    #: The Redis URL; left out of repr() because it may carry a password (see `location`).
    url: str | None = field(default=None, repr=False)
    #: Most entries L1 holds (0 or None: no L1).
    l1_maxsize: int | None = 10_000
    #: Longest an entry lives in L1, in seconds (also capped by its Redis TTL).
    l1_ttl: float | None = 60.0
    #: Optional bound on the summed size of L1's values, in bytes.
    l1_max_bytes: int | None = None
    #: Prepended to every key in Redis; `flush` and `delete_pattern` never leave it.
    key_prefix: str = "tc:"
    #: A key's namespace is the text before the first separator ("user:1" -> "user").
    namespace_separator: str = ":"
    #: TTL in seconds for writes that give none (None: no expiry).
    default_ttl: int | None = None
    #: Largest value accepted, in bytes once serialised.
    max_value_bytes: int | None = 1024 * 1024
    connect_timeout: float = 0.25
    socket_timeout: float = 0.5
    max_connections: int | None = None
    #: Tell other processes about writes so they drop their L1 copies.
    invalidation: bool = True
    #: Consecutive L2 failures that open the circuit, and seconds before a probe.
    breaker_threshold: int = 3
    breaker_reset: float = 2.0
    #: Seconds of pub/sub silence before the listener PINGs, and that it waits for the pong.
    heartbeat_interval: float = 1.0
    #: get_or_set(lock=True): lifetime of the Redis lock, and the longest others wait on it.
    lock_timeout: float = 10.0
    #: get_or_set shortens each TTL by a random fraction up to this, so keys written
    #: together do not expire together (0: off).
    ttl_jitter: float = 0.0
    timer: Callable[[], float] = field(default=time.monotonic, compare=False)
    #: Wall-clock seconds, for the absolute expiry each value carries in Redis.
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if self.url is not None and urlsplit(self.url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                f"unsupported cache URL {redact_url(self.url)!r}: "
                "use redis://, rediss:// or unix://"
            )
        if self.l1_maxsize is not None and self.l1_maxsize < 0:
            raise ValueError(f"l1_maxsize must be >= 0, got {self.l1_maxsize}")
        if not self.has_l1 and self.url is None:
            raise ValueError("a cache needs at least one tier: give l1_maxsize or a Redis url")

    @property
    def has_l1(self) -> bool:
        """Return whether an L1 tier is configured."""
        return bool(self.l1_maxsize)

    @property
    def location(self) -> str:
        """Return the Redis URL with its password hidden (safe to log and show)."""
        return redact_url(self.url) if self.url else "memory"

    def redis_settings(self) -> RedisSettings:
        """Return the connection settings of the L2 tier."""
        assert self.url is not None
        return RedisSettings(
            self.url, self.connect_timeout, self.socket_timeout, self.max_connections
        )

    def channel(self) -> str:
        """Return the pub/sub channel of this Redis database ('' when invalidation is off)."""
        if not self.invalidation or self.url is None:
            return ""
        database = urlsplit(self.url).path.strip("/") or "0"
        return f"tiercache:invalidate:{database}"
