"""Browser tests: Django configured as for tests/django_tiercache, caches on real Redis."""

from __future__ import annotations

from collections.abc import Iterator
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
