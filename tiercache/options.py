"""Every setting of a tiered cache, declared once with its default."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tiercache.bus import Mode, mode_of
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
    #: How L1 copies learn of writes made elsewhere: "tracking" (Redis tells the
    #: processes that hold a key), "broadcast" (every write is published to every
    #: process; for servers that refuse CLIENT TRACKING), or off (False, None, "off").
    #: True means "tracking".
    invalidation: bool | str | None = "tracking"
    #: Connections per process and Redis node that read what L1 keeps (tracked reads).
    fill_connections: int = 1
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
    #: `url` names one seed node of a Redis Cluster (which has database 0 only).
    cluster: bool = False
    #: (host, port) of each Sentinel; `url`'s host is then the service name.
    sentinels: Sequence[tuple[str, int]] | None = None
    #: Keywords for the connections to the Sentinels themselves (password, ssl...).
    sentinel_kwargs: Mapping[str, Any] | None = field(default=None, compare=False)

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
        mode_of(self.invalidation)  # raises ValueError naming the bad value
        if type(self.fill_connections) is not int or self.fill_connections < 1:
            raise ValueError(f"fill_connections must be an int >= 1, got {self.fill_connections!r}")
        if self.sentinels is not None:
            object.__setattr__(self, "sentinels", _sentinel_addresses(self.sentinels))
        _check_topology(self)

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
            self.url,
            self.connect_timeout,
            self.socket_timeout,
            self.max_connections,
            self.fill_connections,
            cluster=self.cluster,
            sentinels=tuple(self.sentinels or ()),
            sentinel_kwargs=tuple(sorted((self.sentinel_kwargs or {}).items())),
            watch_interval=self.heartbeat_interval,
        )

    @property
    def invalidation_mode(self) -> Mode:
        """Return the invalidation mode asked for: "tracking", "broadcast" or "off"."""
        return mode_of(self.invalidation)

    def channel(self) -> str:
        """Return the shared channel of broadcast mode for this Redis database ('': no Redis)."""
        if self.url is None:
            return ""
        database = urlsplit(self.url).path.strip("/") or "0"
        return f"tiercache:invalidate:{database}"


def _check_topology(options: CacheOptions) -> None:
    """Raise ValueError when the URL and the topology options do not fit together."""
    if options.sentinel_kwargs is not None and options.sentinels is None:
        raise ValueError("sentinel_kwargs needs sentinels=[(host, port), ...]")
    if not options.cluster and options.sentinels is None:
        return
    if options.cluster and options.sentinels is not None:
        raise ValueError("choose one topology: cluster=True or sentinels=[...], not both")
    topology = "a Redis Cluster" if options.cluster else "Sentinel"
    if options.url is None:
        raise ValueError(f"{topology} needs a Redis url")
    parts = urlsplit(options.url)
    if parts.scheme == "unix":
        raise ValueError(f"{topology} is reached over TCP: use redis:// or rediss://, not unix://")
    if options.cluster and url_database(options.url) != "0":
        raise ValueError(
            f"a Redis Cluster has database 0 only; {redact_url(options.url)!r} names "
            f"database {url_database(options.url)}: drop the /db or use /0"
        )
    if options.sentinels is not None and not parts.hostname:
        raise ValueError("with sentinels, the url's host is the service name: redis://mymaster/0")


def url_database(url: str) -> str:
    """Return the database a Redis URL names, as text ("0" when it names none)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return query.get("db") or parts.path.strip("/") or "0"


def _sentinel_addresses(given: object) -> tuple[tuple[str, int], ...]:
    """Return `given` as a tuple of (host, port), or raise ValueError naming the bad entry."""
    if isinstance(given, str | bytes) or not isinstance(given, Sequence) or not given:
        raise ValueError(f"sentinels must be a non-empty list of (host, port), got {given!r}")
    addresses = []
    for entry in given:
        if (
            isinstance(entry, str | bytes)
            or not isinstance(entry, Sequence)
            or len(entry) != 2
            or not isinstance(entry[0], str)
            or not entry[0]
            or not isinstance(entry[1], int)
            or isinstance(entry[1], bool)
            or not 0 < entry[1] < 65536
        ):
            raise ValueError(f"each sentinel is (host, port) with a port 1-65535, got {entry!r}")
        addresses.append((entry[0], entry[1]))
    return tuple(addresses)
