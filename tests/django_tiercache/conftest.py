"""Django for the django_tiercache tests: settings from `settings.py`, caches on real Redis.

Django is configured when this file is imported (pytest imports it before the test
modules of this folder), so test modules may import models and the admin at the top.
Every test gets the `default` cache on the session's private Redis, flushed first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from tests.django_tiercache.django_setup import configure_django, tiered_caches

configure_django()

from django.core.cache import caches  # noqa: E402 - needs the settings configured above

from django_tiercache.metrics import reset_metrics_registry  # noqa: E402


@pytest.fixture(autouse=True)
def _default_cache_on_test_redis(settings: Any, redis_url: str) -> Iterator[None]:
    """Point the `default` cache at the session's Redis; forget metrics afterwards."""
    settings.CACHES = tiered_caches(redis_url)
    yield
    caches.close_all()
    reset_metrics_registry()


@pytest.fixture
def use_caches(settings: Any) -> Callable[..., None]:
    """Return a function that re-points the `default` cache: `use_caches(url, **OPTIONS)`."""

    def use(location: str, **options: Any) -> None:
        settings.CACHES = tiered_caches(location, **options)

    return use


@pytest.fixture
async def close_loop_clients() -> AsyncIterator[None]:
    """Close the Redis clients the backend made for this test's event loop, in that loop.

    The backend keeps one async client per event loop for the life of the loop (a
    server's loop lives as long as the process); a test's loop dies with the test.
    """
    yield
    from tiercache import registry

    await registry.close_loop()
