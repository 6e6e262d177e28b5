"""`CacheStats`: a placeholder that gives the stats page a place in the admin, no table."""

from __future__ import annotations

from django.db import models

__all__ = ["CacheStats"]


class CacheStats(models.Model):
    """Unmanaged and never queried: it only carries the admin entry and the permissions."""

    class Meta:
        managed = False
        verbose_name = "cache statistics"
        verbose_name_plural = "cache statistics"
        default_permissions = ("view",)
        permissions = [
            ("reset_cachestats", "Can reset cache metrics"),
            ("flush_cachestats", "Can flush a cache namespace"),
        ]

    def __str__(self) -> str:
        return "cache statistics"
