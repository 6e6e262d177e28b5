"""Server-rendered SVG charts of the last hour: no JavaScript, no CDN, any width.

The SVG holds only the plot and stretches to its box (`preserveAspectRatio="none"`,
strokes that do not scale); every text — title, scale, legend, time axis — is HTML
around it, so it stays legible on a 375 px phone as on a desktop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from django_tiercache.report import MinutePoint

__all__ = ["Chart", "Series", "charts_of"]

_WIDTH, _HEIGHT = 600, 120


@dataclass(frozen=True)
class Series:
    """One coloured line or bar layer of a chart."""

    label: str
    colour: str
    values: Sequence[float | None]  # None: no data that minute


@dataclass(frozen=True)
class Chart:
    """A titled chart: its SVG, its top-of-scale text and its legend."""

    key: str
    title: str
    scale: str  # what the top of the plot stands for, e.g. "1,200 / min"
    series: list[Series]
    svg: SafeString
    empty: bool


def charts_of(minutes: list[MinutePoint]) -> list[Chart]:
    """Return the four charts of the admin page: lookups, hit rate, errors, latency."""
    lookups = [
        Series("L1 hits", "#2e7d32", [p.l1_hits for p in minutes]),
        Series("L2 hits", "#1565c0", [p.l2_hits for p in minutes]),
        Series("misses", "#9e9e9e", [p.misses for p in minutes]),
        Series("errors", "#c62828", [p.errors for p in minutes]),
    ]
    rates = [
        Series("L1 hit rate", "#2e7d32", [_percent(p.l1_rate) for p in minutes]),
        Series("L2 hit rate", "#1565c0", [_percent(p.l2_rate) for p in minutes]),
    ]
    errors = [Series("errors", "#c62828", [p.errors for p in minutes])]
    latency = [
        Series("p50", "#1565c0", [p.l2_p50_ms for p in minutes]),
        Series("p99", "#ef6c00", [p.l2_p99_ms for p in minutes]),
    ]
    top_lookups = max((p.lookups for p in minutes), default=0)
    no_data = top_lookups == 0
    top_errors = max((p.errors for p in minutes), default=0)
    top_latency = max((v for s in latency for v in s.values if v is not None), default=0.0)
    return [
        _bars("lookups", "Lookups per minute", lookups, top_lookups, f"{top_lookups:,} / min"),
        _lines("hit-rate", "Hit rate by tier", rates, 100.0, "100%"),
        _bars(
            "errors",
            "Errors per minute",
            errors,
            top_errors,
            f"{top_errors:,} / min" if top_errors or no_data else "no error in the hour",
            no_data=no_data,
        ),
        _lines("latency", "Redis latency (p50, p99)", latency, top_latency, f"{top_latency:g} ms"),
    ]


def _percent(rate: float | None) -> float | None:
    return None if rate is None else rate * 100


def _bars(
    key: str,
    title: str,
    series: list[Series],
    top: float,
    scale: str,
    *,
    no_data: bool | None = None,
) -> Chart:
    """Stack the series as bars, one slot per minute."""
    count = max((len(s.values) for s in series), default=0)
    shapes: list[str] = []
    if top > 0 and count:
        slot = _WIDTH / count
        for index in range(count):
            y = float(_HEIGHT)
            for layer in series:
                value = layer.values[index] or 0
                if not value:
                    continue
                height = value / top * _HEIGHT
                y -= height
                shapes.append(
                    f'<rect x="{index * slot + slot * 0.1:.1f}" y="{y:.1f}" '
                    f'width="{slot * 0.8:.1f}" height="{height:.1f}" fill="{layer.colour}"/>'
                )
    return _chart(key, title, scale, series, shapes, empty=top <= 0 if no_data is None else no_data)


def _lines(key: str, title: str, series: list[Series], top: float, scale: str) -> Chart:
    """Draw each series as a polyline, broken where a minute has no data."""
    shapes: list[str] = []
    for layer in series:
        count = len(layer.values)
        if top <= 0 or not count:
            continue
        slot = _WIDTH / count
        run: list[tuple[float, float]] = []
        for index, value in enumerate([*layer.values, None]):
            if value is None:
                if len(run) == 1:  # a lone minute: a dash across its slot, not a dot
                    x, y = run[0]
                    run = [(x - slot / 2, y), (x + slot / 2, y)]
                if run:
                    shapes.append(
                        f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in run)}" '
                        f'fill="none" stroke="{layer.colour}" stroke-width="{3 if len(run) == 2 else 2}" '
                        'vector-effect="non-scaling-stroke"/>'
                    )
                run = []
                continue
            x = index * slot + slot / 2
            y = _HEIGHT - min(value, top) / top * _HEIGHT
            run.append((x, y))
    empty = top <= 0 or all(v is None for s in series for v in s.values)
    return _chart(key, title, scale, series, shapes, empty=empty)


def _chart(
    key: str, title: str, scale: str, series: list[Series], shapes: list[str], *, empty: bool
) -> Chart:
    grid = "".join(
        f'<line x1="0" x2="{_WIDTH}" y1="{y}" y2="{y}" stroke="#8884" stroke-width="1" '
        'vector-effect="non-scaling-stroke"/>'
        for y in (0, _HEIGHT // 2, _HEIGHT)
    )
    svg = format_html(
        '<svg class="tc-plot" viewBox="0 0 {} {}" preserveAspectRatio="none" role="img" '
        'aria-label="{}">{}{}</svg>',
        _WIDTH,
        _HEIGHT,
        title,
        mark_safe(grid),
        mark_safe("".join(shapes)),
    )
    return Chart(key, title, scale, series, svg, empty)
