"""Configure Django from `tests.django_tiercache.settings`, once per process."""

from __future__ import annotations

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
