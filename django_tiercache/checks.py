"""System checks: `django_tiercache.E00N` stop the site, `W00N` point at likely mistakes."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_tiercache.compat import Finding, locations, primary_location, translate
from django_tiercache.conf import APP_DEFAULTS, MIDDLEWARE_PATH, AppSettings
from django_tiercache.contract import is_tiered_backend
from django_tiercache.options import (
    OPTION_DEFAULTS,
    BackendOptions,
    invalidation_conflict,
    location_problem,
    parse_options,
)
from tiercache import CacheOptions
from tiercache.bus import LocalBus

__all__ = ["TAG", "check_app_settings", "check_caches", "check_middleware", "register"]

#: Socket timeouts above this defeat the point of failing fast when Redis is sick.
_SLOW_TIMEOUT = 2.0
_DJANGO_DEFAULT_TIMEOUT = 300
_TOPOLOGY_KEYS = frozenset({"CLUSTER", "SENTINELS", "SENTINEL_KWARGS"})
_TOPOLOGY_HINT = (
    'Cluster: "CLUSTER": True with LOCATION "redis://<any node>:<port>" (database 0 only). '
    'Sentinel: "SENTINELS": [["<host>", 26379], ...] with LOCATION "redis://<service>/<db>".'
)


#: Runs only these checks: `manage.py check --tag django_tiercache`.
TAG = "django_tiercache"


def register() -> None:
    """Register the checks with Django (called from the app's `ready`)."""
    checks.register(check_caches, checks.Tags.caches, TAG)
    checks.register(check_app_settings, TAG)
    checks.register(check_middleware, TAG)
    # A deployment check: it builds each cache, which asks its Redis once.
    checks.register(check_invalidation, TAG, deploy=True)


def check_caches(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Check every `CACHES` entry that uses the tiered backend."""
    messages: list[checks.CheckMessage] = []
    tiered = {
        alias: config
        for alias, config in settings.CACHES.items()
        if is_tiered_backend(config.get("BACKEND"))
    }
    if not tiered:
        messages.append(
            checks.Warning(
                "django_tiercache is installed, but no cache uses its backend.",
                hint='Set CACHES["default"]["BACKEND"] = "django_tiercache.backend.TieredCache".',
                id="django_tiercache.W005",
            )
        )
    for number, (alias, config) in enumerate(tiered.items()):
        location, raw = config.get("LOCATION"), config.get("OPTIONS")
        messages += _check_locations(alias, location)
        if isinstance(raw, Mapping):
            # Settings copied from django-redis: its OPTIONS translated (see compat).
            settled = translate(location, raw, OPTION_DEFAULTS)
            messages += _compat_messages(alias, settled.findings)
            raw = settled.options
        if len(locations(location)) > 1:
            location = primary_location(location)[0]
        topology = _check_topology(alias, {"LOCATION": location, "OPTIONS": raw})
        if topology and isinstance(raw, Mapping):  # named once, by E006
            raw = {key: value for key, value in raw.items() if key not in _TOPOLOGY_KEYS}
        messages += topology
        options = _check_options(alias, location, raw, messages)
        if options is not None:
            messages += _check_option_values(alias, options, config)
            # Named once, on the later alias of a pair.
            conflict = invalidation_conflict(alias, options, list(tiered)[:number])
            if conflict is not None:
                messages.append(
                    checks.Error(
                        conflict,
                        hint="Give every cache on one Redis the same INVALIDATION (or False).",
                        obj=alias,
                        id="django_tiercache.E007",
                    )
                )
    return messages


def _check_locations(alias: str, location: object) -> list[checks.CheckMessage]:
    """Check a LOCATION: one URL, or django-redis's list of them (the first is used)."""
    if isinstance(location, list | tuple) or (isinstance(location, str) and "," in location):
        primary, others = primary_location(location)
        for url in [primary, *others]:
            if found := _check_location(alias, url):
                return found
        if all(other == primary for other in others):
            return []
        return _compat_messages(
            alias,
            [
                Finding(
                    "info",
                    "LOCATION",
                    f"LOCATION lists {len(others) + 1} servers; tiercache uses the first "
                    "as the primary and never reads from replicas.",
                    "Give one URL.",
                )
            ],
        )
    return _check_location(alias, location)


def _check_location(alias: str, location: object) -> list[checks.CheckMessage]:
    hint = 'Use one Redis URL, e.g. "redis://127.0.0.1:6379/0" (or rediss://, unix://).'
    if location is None or (isinstance(location, str) and not location.strip()):
        return [
            checks.Warning(
                f"Cache {alias!r} has no LOCATION, so it is an L1-only cache: each process "
                "has its own.",
                hint=f"Fine for development. To share entries across processes: {hint}",
                obj=alias,
                id="django_tiercache.W006",
            )
        ]
    problem = location_problem(location)
    if problem is None:
        return []
    return [
        checks.Error(
            f"CACHES[{alias!r}]['LOCATION'] is not a Redis URL: {problem}.",
            hint=hint,
            obj=alias,
            id="django_tiercache.E001",
        )
    ]


def _check_topology(alias: str, config: Mapping[str, Any]) -> list[checks.CheckMessage]:
    """Name a CLUSTER or SENTINELS setting that does not fit its LOCATION."""
    options, location = config.get("OPTIONS"), config.get("LOCATION")
    if not isinstance(options, Mapping) or location_problem(location) is not None:
        return []  # E001 / E003 name those
    if not _TOPOLOGY_KEYS & set(options):
        return []
    try:
        CacheOptions(
            location.strip() or None if isinstance(location, str) else None,
            cluster=options.get("CLUSTER") is True,
            sentinels=options.get("SENTINELS"),
            sentinel_kwargs=options.get("SENTINEL_KWARGS"),
        )
    except ValueError as error:
        problem, hint = str(error), _TOPOLOGY_HINT
    except NotImplementedError as error:
        problem, hint = str(error), "Use a standalone Redis LOCATION until it is."
    else:
        return []
    return [
        checks.Error(
            f"Cache {alias!r}: {problem}.", hint=hint, obj=alias, id="django_tiercache.E006"
        )
    ]


def _compat_messages(alias: str, findings: Sequence[Finding]) -> list[checks.CheckMessage]:
    """Return what the checks say about the django-redis settings of `alias`."""
    docs = "See docs/migrating-from-django-redis.md."
    return [
        checks.Info(
            f"Cache {alias!r}: {finding.message}",
            hint=" ".join(filter(None, [finding.hint, docs])),
            obj=alias,
            id="django_tiercache.I010",
        )
        if finding.level == "info"
        else checks.Error(
            f"Cache {alias!r}: {finding.message}",
            hint=" ".join(filter(None, [finding.hint, docs])),
            obj=alias,
            id="django_tiercache.E010",
        )
        for finding in findings
    ]


def _check_options(
    alias: str, location: object, raw: object, messages: list[checks.CheckMessage]
) -> BackendOptions | None:
    if raw is not None and not isinstance(raw, Mapping):
        messages.append(
            checks.Error(
                f"Cache {alias!r} has OPTIONS that are not a dict: {raw!r}.",
                hint="OPTIONS is a dict of upper-case keys; see django_tiercache.options.",
                obj=alias,
                id="django_tiercache.E003",
            )
        )
        return None
    options = dict(raw or {})
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    for key in unknown:
        close = difflib.get_close_matches(key.upper(), OPTION_DEFAULTS, n=1)
        suggestion = f"Did you mean {close[0]!r}? " if close else ""
        messages.append(
            checks.Error(
                f"Cache {alias!r} has an unknown OPTIONS key {key!r}.",
                hint=f"{suggestion}Known keys: {', '.join(OPTION_DEFAULTS)}.",
                obj=alias,
                id="django_tiercache.E002",
            )
        )
    try:
        known = {key: value for key, value in options.items() if key not in unknown}
        # E001 reports a bad LOCATION; check the OPTIONS as if it were a good one.
        good = location if location_problem(location) is None else "redis://localhost"
        return parse_options(alias, good, known)
    except ImproperlyConfigured as error:
        messages.append(
            checks.Error(
                str(error),
                hint="Each OPTIONS value has the type of its default; see docs/configuration.md.",
                obj=alias,
                id="django_tiercache.E003",
            )
        )
        return None


def _check_option_values(
    alias: str, options: BackendOptions, config: Mapping[str, Any]
) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    try:
        import_string(options.SERIALIZER)
    except ImportError as error:
        messages.append(
            checks.Error(
                f"Cache {alias!r}: OPTIONS['SERIALIZER'] {options.SERIALIZER!r} cannot be imported: {error}.",
                hint="Give the dotted path of a serializer class, or leave SERIALIZER out for the default.",
                obj=alias,
                id="django_tiercache.E004",
            )
        )
    timeout = config.get("TIMEOUT", _DJANGO_DEFAULT_TIMEOUT)
    core = options.core
    l1_on = core.has_l1
    l1_ttl = core.l1_ttl
    if l1_on and isinstance(timeout, int | float) and l1_ttl and 0 < timeout < l1_ttl:
        messages.append(
            checks.Warning(
                f"Cache {alias!r}: OPTIONS['L1_TTL'] ({l1_ttl:g} s) is longer than the cache TIMEOUT ({timeout:g} s).",
                hint="An L1 copy never outlives its Redis copy, so the longer L1_TTL has no effect; "
                "set L1_TTL to at most TIMEOUT.",
                obj=alias,
                id="django_tiercache.W002",
            )
        )
    if l1_on and core.invalidation_mode == "off":
        messages.append(
            checks.Warning(
                f"Cache {alias!r}: L1 is on but INVALIDATION is off.",
                hint=f"Other processes may serve a stale copy for up to L1_TTL ({l1_ttl} s) "
                "after a write; turn INVALIDATION on, or set L1_MAXSIZE to 0.",
                obj=alias,
                id="django_tiercache.W003",
            )
        )
    slow = {
        name: value
        for name, value in (
            ("CONNECT_TIMEOUT", core.connect_timeout),
            ("SOCKET_TIMEOUT", core.socket_timeout),
        )
        if value > _SLOW_TIMEOUT
    }
    for name, value in slow.items():
        messages.append(
            checks.Warning(
                f"Cache {alias!r}: OPTIONS[{name!r}] is {value:g} s.",
                hint=f"While Redis is sick every request waits that long; keep it under {_SLOW_TIMEOUT:g} s "
                "(the circuit breaker needs fast failures).",
                obj=alias,
                id="django_tiercache.W004",
            )
        )
    return messages


def check_invalidation(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn about caches whose Redis refused tracking, so that broadcast is used."""
    from django.core.cache import caches

    messages: list[checks.CheckMessage] = []
    for alias, config in settings.CACHES.items():
        if not is_tiered_backend(config.get("BACKEND")):
            continue
        try:
            bus = getattr(caches[alias], "bus", None)  # builds the cache: it asks Redis once
        except Exception:  # E001..E006 report a cache that cannot be built
            continue
        if isinstance(bus, LocalBus) and bus.requested == "tracking" and bus.mode == "broadcast":
            messages.append(
                checks.Warning(
                    f"Cache {alias!r}: Redis at {bus.location} refuses CLIENT TRACKING, so "
                    "invalidation falls back to broadcast: every write is published to "
                    "every process.",
                    hint="Allow the CLIENT command for the cache's user (ACL), or use a server "
                    "that supports tracking (Redis >= 6, Valkey, ElastiCache, Memorystore); "
                    "or set OPTIONS['INVALIDATION'] = 'broadcast' to say this is intended.",
                    obj=alias,
                    id="django_tiercache.W007",
                )
            )
    return messages


def check_app_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Check `settings.TIERCACHE`."""
    given = getattr(settings, "TIERCACHE", None)
    if given is None:
        return []
    if not isinstance(given, Mapping):
        return [
            checks.Error(
                f"settings.TIERCACHE must be a dict, not {type(given).__name__}.",
                hint=f"Known keys: {', '.join(APP_DEFAULTS)}.",
                id="django_tiercache.E005",
            )
        ]
    messages: list[checks.CheckMessage] = []
    for key, value in given.items():
        if key not in APP_DEFAULTS:
            messages.append(
                checks.Error(
                    f"settings.TIERCACHE has an unknown key {key!r}.",
                    hint=f"Known keys: {', '.join(APP_DEFAULTS)}.",
                    id="django_tiercache.E005",
                )
            )
        elif not _app_setting_fits(APP_DEFAULTS[key], value):
            messages.append(
                checks.Error(
                    f"settings.TIERCACHE[{key!r}] must be a {type(APP_DEFAULTS[key]).__name__}, got {value!r}.",
                    hint=f"The default is {getattr(AppSettings, key)!r}.",
                    id="django_tiercache.E005",
                )
            )
    return messages


def _app_setting_fits(default: object, value: object) -> bool:
    if default is None:  # optional text (a token)
        return value is None or isinstance(value, str)
    if isinstance(default, tuple):  # a list in settings is fine too
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return type(value) is type(default)


def check_middleware(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Warn when the admin stats page is installed without the middleware that feeds it."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.admin") or MIDDLEWARE_PATH in settings.MIDDLEWARE:
        return []
    return [
        checks.Warning(
            f"The tiercache stats page is in the admin, but {MIDDLEWARE_PATH} is not in MIDDLEWARE.",
            hint=f"Add {MIDDLEWARE_PATH!r} at the top of MIDDLEWARE, so that the page can "
            "tell which view used which namespace.",
            id="django_tiercache.W001",
        )
    ]
