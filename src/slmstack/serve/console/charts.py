"""Line charts as inline SVG, drawn on the server: no chart library, no script, no CDN.

The method: a chart is a few series of ``(label, value)`` points over the same x labels
(days), scaled into a fixed ``viewBox`` that CSS stretches to the page width. Spend is
drawn on a log scale when the series differ by more than 100× (the stack beside "all to
the LLM" typically differs by 1000×, which a linear axis would flatten to a line at 0).
Each chart carries a ``<title>`` and a ``<desc>`` for screen readers, and the pages put
the same numbers in a table beside it. Colours come from CSS classes (``series-0``...),
so the page's stylesheet themes them and the CSP needs no inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 960, 280
LEFT, RIGHT, TOP, BOTTOM = 96, 24, 16, 36


@dataclass(frozen=True)
class Series:
    """One line: a name for the legend and one value per x label (``None``: no point)."""

    name: str
    values: Sequence[float | None]


def _ticks(low: float, high: float, log: bool) -> list[float]:
    if log:
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        step = max(1, (last - first) // 5)
        return [10.0**e for e in range(first, last + 1, step)]
    if high <= low:
        return [low]
    raw = (high - low) / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    return [
        start + i * step
        for i in range(int((high - start) / step) + 2)
        if start + i * step <= high + step / 2
    ]


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    log: bool | None = None,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Markup:
    """An accessible SVG line chart of ``series`` over ``labels``.

    Args:
        title: what the chart shows (its ``<title>``).
        labels: the x labels (days), one per value of each series.
        series: the lines.
        fmt: how the y axis writes a value.
        log: a log scale; ``None`` picks it when the positive values span more than 100×.
        y_min: a fixed lower bound (a rate: 0); by default the data's.
        y_max: a fixed upper bound (a rate: 1); by default the data's.
    """
    points = [v for s in series for v in s.values if v is not None]
    desc = "; ".join(
        f"{s.name}: "
        + ", ".join(
            f"{lab} {fmt(v)}" for lab, v in zip(labels, s.values, strict=True) if v is not None
        )
        for s in series
    )
    if not points or not labels:
        return Markup('<p class="empty">No data in this period yet.</p>')
    positive = [v for v in points if v > 0]
    if log is None:
        log = bool(positive) and min(positive) * 100 < max(positive)
    if log and not positive:
        log = False
    low = y_min if y_min is not None else (min(positive) if log else min(0.0, *points))
    high = y_max if y_max is not None else max(points)
    if high <= low:
        high = low + (1.0 if not log else low * 10)
    ticks = _ticks(low, high, log)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    span_x = WIDTH - LEFT - RIGHT
    span_y = HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (span_x * i / (len(labels) - 1) if len(labels) > 1 else span_x / 2)

    def y(v: float) -> float:
        if log:
            v = max(v, low)
            share = (math.log10(v) - math.log10(low)) / (math.log10(high) - math.log10(low))
        else:
            share = (v - low) / (high - low)
        return TOP + span_y * (1 - share)

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'preserveAspectRatio="xMidYMid meet" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
    ]
    for tick in ticks:
        ty = y(tick)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="axis" x="{LEFT - 8}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(tick))}</text>"
        )
    every = max(1, math.ceil(len(labels) / 8))
    shown = list(range(0, len(labels), every))
    if shown[-1] != len(labels) - 1:  # always label the last day; drop a tick too close to it
        if len(labels) - 1 - shown[-1] < every / 2:
            shown.pop()
        shown.append(len(labels) - 1)
    for i in shown:
        label = labels[i]
        parts.append(
            f'<text class="axis" x="{x(i):.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
            f"{escape(label[5:] if len(label) == 10 else label)}</text>"
        )
    for n, s in enumerate(series):
        coords = [
            (x(i), y(v)) for i, v in enumerate(s.values) if v is not None and (not log or v > 0)
        ]
        if len(coords) > 1:
            path = " ".join(
                f"{'M' if j == 0 else 'L'}{cx:.1f},{cy:.1f}" for j, (cx, cy) in enumerate(coords)
            )
            parts.append(f'<path class="line series-{n}" d="{path}"/>')
        for cx, cy in coords:
            parts.append(f'<circle class="dot series-{n}" cx="{cx:.1f}" cy="{cy:.1f}" r="3"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch series-{n}" aria-hidden="true"></span>{escape(s.name)}</li>'
        for n, s in enumerate(series)
    )
    scale = '<li class="muted">log scale</li>' if log else ""
    chart = "".join(parts)
    return Markup(
        f'<figure class="chart-box">{chart}<ul class="legend">{legend}{scale}</ul></figure>'
    )


__all__ = ["Series", "line_chart"]
