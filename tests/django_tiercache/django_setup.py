"""Configure Django from `tests.django_tiercache.settings`, once per process."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings


def configure_django() -> None:
    """Configure settings and populate the app registry, unless already done."""
    if settings.configured:
        return
    from tests.django_tiercache import settings as test_settings

    settings.configure(
        **{name: getattr(test_settings, name) for name in dir(test_settings) if name.isupper()}
    )
    django.setup()


def tiered_caches(location: str, **options: Any) -> dict[str, dict[str, Any]]:
    """Return a CACHES setting with one tiered `default` cache on `location`."""
    return {
        "default": {
            "BACKEND": "django_tiercache.backend.TieredCache",
            "LOCATION": location,
            "OPTIONS": {"METRICS_PUSH_INTERVAL": 3600.0, **options},
        }
    }
