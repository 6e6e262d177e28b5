"""A `CACHES` entry of the backend, parsed once into the core's `CacheOptions` and our own.

The settings the core has are declared once, in `tiercache.CacheOptions`: in `OPTIONS`
they take the upper-case name of the field (`l1_ttl` is `L1_TTL`). Only the settings
the core does not have are declared here, and only the defaults that differ on purpose
are listed here (`DJANGO_DEFAULTS`; docs/configuration.md says why).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis import ConnectionPool

from django_tiercache.compat import locations, translate
from tiercache import CacheOptions

__all__ = [
    "DJANGO_DEFAULTS",
    "OPTION_DEFAULTS",
    "BackendOptions",
    "cache_options",
    "invalidation_conflict",
    "location_problem",
    "parse_options",
]

#: Core settings that come from elsewhere: LOCATION gives the URL, Django's TIMEOUT the
#: default timeout, and clocks are injected by tests, not configured.
_NOT_OPTIONS = frozenset({"url", "default_ttl", "timer", "clock"})
#: Core settings whose OPTIONS name is not their upper-case name (Django owns KEY_PREFIX).
_RENAMED = {"key_prefix": "REDIS_PREFIX"}
#: Core defaults a Django cache changes, on purpose (see docs/configuration.md).
DJANGO_DEFAULTS: dict[str, object] = {
    # Django's and the core's caches on one Redis must not read each other's keys.
    "key_prefix": "dj:",
    # Django caches pickled objects and whole pages (`cache_page`), larger than the
    # core's strings; 8 MiB still refuses the accidental 100 MB queryset.
    "max_value_bytes": 8 * 1024 * 1024,
}
#: How an OPTIONS value becomes the core's, where the forms differ (e.g. a list in settings,
#: a hashable tuple in the core); the result is checked against the core field's type.
_FROM_SETTINGS: dict[str, Callable[[Any], object]] = {}


@dataclass(frozen=True)
class BackendOptions:
    """One `CACHES` entry: the core's options (URL included) and the backend's own.

    The upper-case fields are the OPTIONS keys that only the Django backend has.
    """

    #: LOCATION and every core setting, converted once.
    core: CacheOptions
    #: Dotted path of the serializer class (see django_tiercache.serializers).
    SERIALIZER: str = "django_tiercache.serializers.SignedPickleSerializer"
    #: Key that signs pickles (None: settings.SECRET_KEY, verifying SECRET_KEY_FALLBACKS too).
    SIGNING_KEY: str | None = None
    #: Compress values of at least COMPRESS_MIN_BYTES: "zlib", "gzip", "lzma", "lz4", "zstd".
    COMPRESSOR: str | None = None
    COMPRESS_MIN_BYTES: int = 1024
    #: Log every Redis failure answered as a miss at ERROR ("Exception ignored", as
    #: django-redis does), instead of one warning per kind of failure every few seconds.
    LOG_IGNORED_EXCEPTIONS: bool = False
    #: get_or_set: a Redis lock makes one process in the fleet compute a missing value.
    GET_OR_SET_LOCK: bool = False
    #: get_or_set: after its timeout, serve a value this many seconds more while one
    #: caller recomputes it (stale-while-revalidate; 0: off).
    STALE_TTL: float = 0.0
    #: get_or_set: after its timeout, serve a value this many seconds more when the
    #: callable raises or Redis is down (fail-safe; 0: off).
    FAIL_SAFE_MAX_AGE: float = 0.0
    #: Seconds between each process adding its metric counters into Redis.
    METRICS_PUSH_INTERVAL: float = 5.0


def _core_fields() -> dict[str, dataclasses.Field[Any]]:
    """Return the core fields that OPTIONS carries, by OPTIONS name."""
    return {
        _RENAMED.get(f.name, f.name.upper()): f
        for f in dataclasses.fields(CacheOptions)
        if f.name not in _NOT_OPTIONS
    }


_CORE = _core_fields()
_OWN = {f.name: f for f in dataclasses.fields(BackendOptions) if f.name != "core"}
_HINTS = {
    **{name: typing.get_type_hints(CacheOptions)[f.name] for name, f in _CORE.items()},
    **{name: typing.get_type_hints(BackendOptions)[name] for name in _OWN},
}

#: Every OPTIONS key with its default, in the order of the reference.
OPTION_DEFAULTS: dict[str, object] = {
    **{name: DJANGO_DEFAULTS.get(f.name, f.default) for name, f in _CORE.items()},
    **{name: f.default for name, f in _OWN.items()},
}


def location_problem(location: object) -> str | None:
    """Return why `location` is not one Redis URL, or None if it is (or is empty)."""
    if location is None or (isinstance(location, str) and not location.strip()):
        return None
    if not isinstance(location, str):
        return f"{location!r} is not a URL"
    try:
        parts = urlsplit(location)
        port = parts.port  # raises ValueError on a bad port
    except ValueError as error:
        return f"{location!r} is not a valid URL: {error}"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return f"the scheme {parts.scheme or 'none'!r} is not Redis's"
    if parts.scheme == "unix":
        return None if parts.path else "a unix:// URL needs the socket's path"
    if not parts.hostname or "," in location or port == 0:
        return "it names no single Redis host"
    database = parts.path.strip("/")
    if database and not database.isdigit():
        return f"the database {database!r} is not a number"
    try:
        ConnectionPool.from_url(location)  # what redis-py refuses when the cache is built
    except ValueError as error:
        return str(error).rstrip(".")
    return None


def parse_options(alias: str, location: object, options: object) -> BackendOptions:
    """Return the parsed entry, or raise `ImproperlyConfigured` naming the bad setting."""
    where = f"CACHES[{alias!r}]"
    for each in locations(location):  # django-redis allows a list: the first is used
        problem = location_problem(each)
        if problem is not None:
            raise ImproperlyConfigured(
                f"{where}['LOCATION'] is not a Redis URL: {problem}. "
                'Use e.g. "redis://127.0.0.1:6379/0" (or rediss://, unix://).'
            )
    if options is not None and not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where}['OPTIONS'] must be a dict, not {options!r}.")
    # Settings copied from django-redis: its OPTIONS and PASSWORD translated (see compat;
    # what cannot work is dropped here and reported by the system checks).
    settled = translate(location, options, OPTION_DEFAULTS)
    given = settled.options
    unknown = sorted(set(given) - set(OPTION_DEFAULTS))
    if unknown:
        raise ImproperlyConfigured(
            f"{where}['OPTIONS'] has unknown key(s): {', '.join(map(str, unknown))}. "
            f"Known keys: {', '.join(OPTION_DEFAULTS)}."
        )
    values = {name: _converted(where, name, value) for name, value in given.items()}
    core: dict[str, object] = {"url": settled.location or None}
    for name, f in _CORE.items():
        core[f.name] = values.get(name, OPTION_DEFAULTS[name])
    try:
        parsed = CacheOptions(**core)  # type: ignore[arg-type]
    except (ValueError, NotImplementedError) as error:
        raise ImproperlyConfigured(f"{where}: {error}") from None
    own: dict[str, Any] = {name: values[name] for name in _OWN if name in values}
    return BackendOptions(parsed, **own)


def cache_options(alias: str) -> BackendOptions:
    """Return the parsed `settings.CACHES[alias]`; raise `ImproperlyConfigured`."""
    config = settings.CACHES.get(alias)
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(f"CACHES has no entry {alias!r}.")
    return parse_options(alias, config.get("LOCATION"), config.get("OPTIONS"))


def invalidation_conflict(
    alias: str, options: BackendOptions, among: Iterable[str] | None = None
) -> str | None:
    """Say which other alias (of `among`) on the same Redis asks for another INVALIDATION.

    One process has one invalidation bus per Redis: "tracking" and "broadcast" cannot
    share it ("off" joins either). Return None when there is no such alias.
    """
    backend = settings.CACHES[alias].get("BACKEND")
    mine = options.core.invalidation_mode
    for other in settings.CACHES if among is None else among:
        config = settings.CACHES[other]
        if other == alias or not isinstance(config, Mapping) or config.get("BACKEND") != backend:
            continue
        try:
            theirs = parse_options(other, config.get("LOCATION"), config.get("OPTIONS")).core
        except ImproperlyConfigured:
            continue  # reported on its own
        if theirs.location == options.core.location and {mine, theirs.invalidation_mode} == {
            "tracking",
            "broadcast",
        }:
            return (
                f"CACHES[{alias!r}] (INVALIDATION {mine!r}) and CACHES[{other!r}] "
                f"(INVALIDATION {theirs.invalidation_mode!r}) use the same Redis, "
                f"{options.core.location}: a process has one invalidation mode per Redis."
            )
    return None


def _converted(where: str, name: str, value: object) -> object:
    """Return an OPTIONS value in the core's form, checked against its type."""
    convert = _FROM_SETTINGS.get(name)
    try:
        converted = value if convert is None else convert(value)
    except (TypeError, ValueError):
        converted = value  # reported as a value of the wrong type, below
    if not _fits(converted, _HINTS[name]):
        raise ImproperlyConfigured(
            f"{where}['OPTIONS'][{name!r}] must be {_describe(_HINTS[name])}, got {value!r}."
        )
    return converted


def _fits(value: object, hint: object) -> bool:
    """Return whether `value` has the type `hint` (bool is never taken for a number)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, int | float)
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and isinstance(value, origin)


def _describe(hint: object) -> str:
    """Return the type `hint` in words for an error message."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    return f"a {getattr(typing.get_origin(hint) or hint, '__name__', hint)}"
