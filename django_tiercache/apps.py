"""The app config: registers the system checks."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["TiercacheConfig"]


class TiercacheConfig(AppConfig):
    """django_tiercache: cache metrics, the admin stats page, checks and the command."""

    name = "django_tiercache"
    verbose_name = "Tiered cache"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_tiercache import checks

        checks.register()
