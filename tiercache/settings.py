"""How to reach Redis: the connection settings of the L2 tier, free of any Redis import."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

__all__ = ["RedisSettings", "redact_url"]


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """How to reach Redis; timeouts are small so a sick Redis fails fast."""

    #: Left out of repr() because it may carry a password.
    url: str = field(repr=False)
    connect_timeout: float = 0.25
    socket_timeout: float = 0.5
    #: Most sockets a process opens for ordinary commands, per client (None: no bound).
    max_connections: int | None = None
    #: Cache-owned connections per node that read what L1 keeps (tracked reads).
    fill_connections: int = 1
    #: `url` is one seed node of a Redis Cluster.
    cluster: bool = False
    #: (host, port) of each Sentinel; `url`'s host is then the service name.
    sentinels: tuple[tuple[str, int], ...] = ()
    #: Keywords for the connections to the Sentinels, as sorted (name, value) pairs.
    sentinel_kwargs: tuple[tuple[str, object], ...] = ()
    #: Seconds between two looks at who the primaries are (Cluster, Sentinel).
    watch_interval: float = 1.0

    @property
    def location(self) -> str:
        """Return the URL with its password hidden (safe to log and show)."""
        return redact_url(self.url)
