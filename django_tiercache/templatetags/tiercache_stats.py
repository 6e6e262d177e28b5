"""Template filters of the stats page."""

from __future__ import annotations

from django import template

from django_tiercache import counters
from tiercache import NamespaceStats

__all__ = ["hit_rate"]

register = template.Library()


@register.filter
def hit_rate(stats: NamespaceStats) -> str:
    """Return the hit rate as a percentage, or "—" when there were no lookups."""
    return counters.hit_rate_text(stats)
