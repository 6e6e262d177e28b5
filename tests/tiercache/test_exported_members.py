"""The public surface: `tiercache.__all__` is pinned, and both shells match the protocols."""

from __future__ import annotations

import inspect

import pytest

import tiercache
from tests.tiercache.support import METHOD_NAMES
from tiercache import AsyncTieredCache, CacheProtocol, SyncCacheProtocol, TieredCache

EXPORTED = [
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

ERRORS = [
    "CacheReadOnly",
    "CacheTimeout",
    "CacheUnavailable",
    "CircuitOpen",
    "CorruptData",
    "InvalidKey",
    "InvalidTTL",
    "LoaderFailed",
    "NotAnInteger",
    "NotSerializable",
    "ValueTooLarge",
]


def test_all_is_pinned_and_sorted() -> None:
    assert tiercache.__all__ == EXPORTED
    assert tiercache.__all__ == sorted(tiercache.__all__)


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from tiercache import {name}", namespace)
    assert namespace[name] is getattr(tiercache, name)


def test_the_protocols_declare_exactly_the_15_methods() -> None:
    for protocol in (CacheProtocol, SyncCacheProtocol):
        declared = {
            name
            for name, member in vars(protocol).items()
            if callable(member) and not name.startswith("_")
        }
        assert declared == set(METHOD_NAMES), protocol


@pytest.mark.parametrize("name", METHOD_NAMES)
@pytest.mark.parametrize(
    ("shell", "protocol"),
    [(TieredCache, SyncCacheProtocol), (AsyncTieredCache, CacheProtocol)],
    ids=["sync", "async"],
)
def test_each_shell_method_has_the_parameters_of_the_protocol(
    shell: type, protocol: type, name: str
) -> None:
    expected = inspect.signature(getattr(protocol, name))
    actual = inspect.signature(getattr(shell, name))
    assert [(p.name, p.kind, p.default) for p in actual.parameters.values()] == [
        (p.name, p.kind, p.default) for p in expected.parameters.values()
    ]
    assert inspect.iscoroutinefunction(getattr(shell, name)) == (shell is AsyncTieredCache)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_the_sync_and_async_shells_have_the_same_signatures(name: str) -> None:
    sync = inspect.signature(getattr(TieredCache, name))
    async_ = inspect.signature(getattr(AsyncTieredCache, name))
    assert str(sync) == str(async_)


@pytest.mark.parametrize("name", ERRORS)
def test_every_named_error_is_a_cache_error(name: str) -> None:
    error = getattr(tiercache, name)
    assert issubclass(error, tiercache.CacheError)
    assert issubclass(error, tiercache.DomainError)
    assert error is not tiercache.CacheError


def test_circuit_open_and_timeouts_are_kinds_of_unavailability() -> None:
    for name in ("CacheTimeout", "CacheReadOnly", "CircuitOpen"):
        assert issubclass(getattr(tiercache, name), tiercache.CacheUnavailable)


def test_from_url_is_on_both_shells_with_the_documented_keywords() -> None:
    for shell in (TieredCache, AsyncTieredCache):
        parameters = inspect.signature(shell.from_url).parameters
        assert list(parameters)[:1] == ["url"]
        assert {"l1_maxsize", "l1_ttl", "metrics"} <= set(parameters)
        assert parameters["metrics"].default is None
