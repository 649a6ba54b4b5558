"""The Statistics page's chart, drawn on the server as inline SVG: one polyline per series over
the days of the range, a y axis with round ticks, dates below. No script and no library to
download (the CSP allows neither); colours come from classes in site.css, since inline
styles are refused by the CSP too. Plain function: series in, SVG markup out (escaped)."""
from __future__ import annotations

from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def line_chart(days: list[date], series: list[tuple[str, str, list[int]]],
               title: str = "Per day") -> SafeString:
    """SVG of ``series`` ([(key, label, values per day)]) over ``days``; each polyline has the
    class ``series-<key>`` and a <title> with its label, each point a <title> with its
    day and value (a browser shows it on hover)."""
    top = _nice_max(max((v for _, _, values in series for v in values), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = len(days)

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: int) -> float:
        return TOP + plot_h - plot_h * v / top

    out = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>"]
    for k in range(5):  # grid and y ticks
        v = top * k / 4
        out.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(v):.1f}" '
                   f'y2="{y(v):.1f}"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y(v) + 4:.1f}" '
                   f'text-anchor="end">{v:g}</text>')
    every = max(1, -(-n // 8))  # at most about 8 dates below
    for i, day in enumerate(days):
        if i % every == 0 or i == n - 1:
            out.append(f'<text class="tick" x="{x(i):.1f}" y="{HEIGHT - 8}" '
                       f'text-anchor="middle">{day:%m-%d}</text>')
    for key, label, values in series:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        out.append(f'<g class="series series-{escape(key)}" data-series="{escape(key)}">'
                   f"<title>{escape(label)}</title>")
        out.append(f'<polyline fill="none" points="{points}"/>')
        for i, v in enumerate(values):
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" data-value="{v}">'
                       f"<title>{escape(label)} {days[i]:%Y-%m-%d}: {v}</title></circle>")
        out.append("</g>")
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every text above is escaped
