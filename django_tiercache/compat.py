"""django-redis settings, translated: a CACHES entry copied from django-redis works here.

`translate` maps each django-redis OPTIONS key to ours, drops those that mean nothing
here, and records a finding for each (the system checks show them: info for a no-op,
error for what cannot work). It never raises, so a copied settings file never stops
the site from starting; `manage.py check` names what to change.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = ["COMPRESSORS", "Finding", "Translation", "locations", "primary_location", "translate"]

#: Our compressor names, and the module each needs (None: the standard library).
COMPRESSORS: dict[str, str | None] = {
    "zlib": None,
    "gzip": None,
    "lzma": None,
    "lz4": "lz4",
    "zstd": "pyzstd",
}

_CLIENTS = "django_redis.client."
_SERIALIZERS = {
    "django_redis.serializers.pickle.PickleSerializer": None,  # our default: signed pickle
    "django_redis.serializers.json.JSONSerializer": "django_tiercache.serializers.JSONSerializer",
}
_COMPRESSORS = {
    "django_redis.compressors.identity.IdentityCompressor": None,
    "django_redis.compressors.zlib.ZlibCompressor": "zlib",
    "django_redis.compressors.gzip.GzipCompressor": "gzip",
    "django_redis.compressors.lzma.LzmaCompressor": "lzma",
    "django_redis.compressors.lz4.Lz4Compressor": "lz4",
    "django_redis.compressors.zstd.ZStdCompressor": "zstd",
}
_FAIL_OPEN = (
    "tiercache always fails open: a Redis error is logged and the call answers as a miss "
    "(a circuit breaker keeps a dead Redis from slowing every request)."
)
#: redis-py pool keywords that only tune what tiercache already decides for itself.
_HARMLESS_POOL_KWARGS = frozenset(
    {"retry_on_timeout", "health_check_interval", "socket_keepalive", "socket_keepalive_options"}
)


@dataclass(frozen=True)
class Finding:
    """What a system check reports about one django-redis setting."""

    level: Literal["info", "error"]
    option: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Translation:
    """A CACHES entry in our terms: one Redis URL, our OPTIONS, and what was said."""

    location: str
    options: dict[str, Any]
    findings: tuple[Finding, ...] = field(default=())


def _module_installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def locations(location: object) -> list[object]:
    """Return the URLs of a LOCATION: django-redis allows a list, or 'url,url' (or ';')."""
    if isinstance(location, list | tuple):
        return list(location)
    if isinstance(location, str) and ("," in location or ";" in location):
        return [part.strip() for part in location.replace(";", ",").split(",")]
    return [location]


def primary_location(location: object) -> tuple[str, list[str]]:
    """Return the first URL of a LOCATION (the one used) and the others."""
    urls = [str(url).strip() for url in locations(location) if isinstance(url, str)]
    return (urls[0] if urls else ""), urls[1:]


def with_password(url: str, password: str) -> str:
    """Return `url` with `password` in it (django-redis's PASSWORD option wins over the URL's)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = "&".join(q for q in parts.query.split("&") if q and not q.startswith("password="))
        query = "&".join(filter(None, [query, f"password={quote(password, safe='')}"]))
        return urlunsplit(parts._replace(query=query))
    host = parts.netloc.rpartition("@")[2]
    user = quote(parts.username, safe="") if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


class _Translator:
    def __init__(self, options: Mapping[str, Any], known: Container[str]) -> None:
        self.given = dict(options)
        self.known = known
        self.out: dict[str, Any] = {}
        self.findings: list[Finding] = []

    def info(self, option: str, message: str, hint: str = "") -> None:
        self.findings.append(Finding("info", option, message, hint))

    def error(self, option: str, message: str, hint: str = "") -> None:
        self.findings.append(Finding("error", option, message, hint))

    def client_class(self, path: object) -> None:
        if path == _CLIENTS + "DefaultClient":
            return
        if path in (_CLIENTS + "HerdClient", _CLIENTS + "herd.HerdClient"):
            self.info(
                "CLIENT_CLASS",
                "HerdClient is not needed: get_or_set() already lets one caller per key "
                "compute a missing value.",
                "Remove CLIENT_CLASS; see GET_OR_SET_LOCK and STALE_TTL for fleet-wide "
                "protection and stale-while-revalidate.",
            )
        elif path in (_CLIENTS + "SentinelClient", _CLIENTS + "sentinel.SentinelClient"):
            if "SENTINELS" not in self.given:
                self.error("CLIENT_CLASS", "SentinelClient needs SENTINELS.", "Add SENTINELS.")
        elif path in (_CLIENTS + "ShardClient", _CLIENTS + "sharded.ShardClient"):
            self.error(
                "CLIENT_CLASS",
                "ShardClient (client-side sharding over several LOCATIONs) is not supported: "
                "keys would move between servers behind L1's back.",
                "Use a Redis Cluster (OPTIONS CLUSTER = True) or a single Redis.",
            )
        else:
            self.error(
                "CLIENT_CLASS",
                f"CLIENT_CLASS {path!r} cannot be used: tiercache has its own client.",
                "Remove CLIENT_CLASS.",
            )

    def serializer(self, path: object) -> None:
        if path in _SERIALIZERS:
            ours = _SERIALIZERS[path]
            if ours is not None:
                self.out["SERIALIZER"] = ours
            return
        if isinstance(path, str) and path.startswith("django_redis."):
            self.error(
                "SERIALIZER",
                f"SERIALIZER {path!r} has no tiercache equivalent.",
                "Use django-redis's PickleSerializer or JSONSerializer path (both are "
                "translated), or a tiercache serializer.",
            )
            return
        self.out["SERIALIZER"] = path

    def compressor(self, path: object) -> None:
        name = _COMPRESSORS.get(path, path) if isinstance(path, str) else path
        if name is None:
            return
        if name not in COMPRESSORS:
            self.error(
                "COMPRESSOR",
                f"COMPRESSOR {path!r} is not supported.",
                f"Use one of {', '.join(COMPRESSORS)} (or django-redis's path for one).",
            )
            return
        module = COMPRESSORS[str(name)]
        if module is not None and not _module_installed(module):
            self.error(
                "COMPRESSOR",
                f"COMPRESSOR {name!r} needs the {module!r} package, which is not installed.",
                f"pip install {module}",
            )
            return
        self.out["COMPRESSOR"] = name

    def pool_kwargs(self, kwargs: object) -> None:
        if not isinstance(kwargs, Mapping):
            self.error("CONNECTION_POOL_KWARGS", "CONNECTION_POOL_KWARGS must be a dict.")
            return
        for name, value in kwargs.items():
            if name == "max_connections":
                self.out.setdefault("MAX_CONNECTIONS", value)
            elif name in _HARMLESS_POOL_KWARGS:
                self.info(
                    "CONNECTION_POOL_KWARGS",
                    f"CONNECTION_POOL_KWARGS[{name!r}] is ignored: tiercache sets its own "
                    "retries and health checks (fail fast, then a circuit breaker).",
                )
            else:
                self.error(
                    "CONNECTION_POOL_KWARGS",
                    f"CONNECTION_POOL_KWARGS[{name!r}] is not supported.",
                    "Only max_connections is (as MAX_CONNECTIONS); put TLS settings in a "
                    "rediss:// LOCATION.",
                )

    def run(self) -> dict[str, Any]:
        for name, value in self.given.items():
            handler = _HANDLERS.get(name)
            if handler is None:
                self.out.setdefault(name, value)  # ours (or unknown: the parser says so)
            else:
                handler(self, value)  # django-redis's, or a name we share: it passes ours on
        return self.out


Handler = Callable[[_Translator, Any], None]


def _consumed(translator: _Translator, value: object) -> None:
    """Take an option `translate` applies elsewhere (PASSWORD goes into the URL)."""


def _ignored(option: str, why: str, hint: str = "") -> Handler:
    def handle(translator: _Translator, value: object) -> None:
        translator.info(option, f"{option} is accepted and ignored: {why}", hint)

    return handle


def _refused(option: str, why: str, hint: str) -> Handler:
    def handle(translator: _Translator, value: object) -> None:
        translator.error(option, f"{option} is not supported: {why}", hint)

    return handle


def _renamed(ours: str) -> Handler:
    def handle(translator: _Translator, value: object) -> None:
        translator.out.setdefault(ours, value)

    return handle


def _sentinel(option: str) -> Handler:
    def handle(translator: _Translator, value: object) -> None:
        if option in translator.known:
            translator.out.setdefault(option, value)
        else:
            translator.error(
                option,
                "Redis Sentinel is not available in this version of tiercache.",
                "Point LOCATION at the current primary until Sentinel support lands.",
            )

    return handle


_HANDLERS: dict[str, Handler] = {
    "PASSWORD": _consumed,
    "CLIENT_CLASS": _Translator.client_class,
    "SERIALIZER": _Translator.serializer,
    "COMPRESSOR": _Translator.compressor,
    "CONNECTION_POOL_KWARGS": _Translator.pool_kwargs,
    "SOCKET_CONNECT_TIMEOUT": _renamed("CONNECT_TIMEOUT"),
    "SOCKET_TIMEOUT": _renamed("SOCKET_TIMEOUT"),
    "SENTINELS": _sentinel("SENTINELS"),
    "SENTINEL_KWARGS": _sentinel("SENTINEL_KWARGS"),
    "IGNORE_EXCEPTIONS": _ignored("IGNORE_EXCEPTIONS", _FAIL_OPEN),
    "CLOSE_CONNECTION": _ignored(
        "CLOSE_CONNECTION", "connections are pooled per process and kept between requests."
    ),
    "PICKLE_VERSION": _ignored(
        "PICKLE_VERSION", "pickles use the highest protocol and are signed (SIGNING_KEY)."
    ),
    "PARSER_CLASS": _ignored("PARSER_CLASS", "hiredis is used whenever it is installed."),
    "CONNECTION_FACTORY": _ignored(
        "CONNECTION_FACTORY",
        "tiercache builds its connections itself (SENTINELS selects Sentinel).",
    ),
    "REPLICA_READ_ONLY": _ignored("REPLICA_READ_ONLY", "reads go to the primary."),
    "CONNECTION_POOL_CLASS": _refused(
        "CONNECTION_POOL_CLASS",
        "tiercache builds its own pools (bounded by MAX_CONNECTIONS).",
        "Remove it; use CONNECTION_POOL_KWARGS max_connections or MAX_CONNECTIONS.",
    ),
    "REDIS_CLIENT_CLASS": _refused(
        "REDIS_CLIENT_CLASS",
        "tiercache uses redis-py's own clients.",
        "Remove it; for Cluster set CLUSTER = True.",
    ),
    "REDIS_CLIENT_KWARGS": _refused(
        "REDIS_CLIENT_KWARGS",
        "tiercache builds its clients from LOCATION and its own OPTIONS.",
        "Put credentials and TLS in LOCATION (rediss://user:pass@host) or PASSWORD.",
    ),
    "USERNAME": _refused(
        "USERNAME",
        "give the user name in LOCATION instead.",
        "LOCATION = 'redis://USER@host:6379/0' (PASSWORD may stay an option).",
    ),
}


def translate(
    location: object, options: Mapping[str, Any] | None, known: Container[str] = ()
) -> Translation:
    """Return a CACHES entry's LOCATION and OPTIONS in tiercache's terms, with findings.

    `known` holds tiercache's own OPTIONS names: a key in it is never translated.
    """
    translator = _Translator(options or {}, known)
    out = translator.run()
    url, _ = primary_location(location)
    password = translator.given.get("PASSWORD")
    if password and "PASSWORD" not in known and url:
        url = with_password(url, str(password))
    return Translation(url, out, tuple(translator.findings))
