"""Small server-rendered SVG charts for the dashboard pages.

The pages' content-security policy forbids inline script, and these figures are static, so they
are drawn on the server as inline SVG: no JavaScript, readable without it, printable. Colours are
presentation attributes (not inline styles, which the CSP would also block). Every label goes
through `markupsafe.escape`: version names and flags are user input. Each point or bar carries a
`<title>` with its exact value, which browsers show on hover.

All functions return `Markup` and are registered as Jinja globals (app/templating.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 46
PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563")
HIGHLIGHT = "#dc2626"
NORMAL = "#2563eb"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high < low:
        low, high = high, low
    if high == low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    # Rounded relative to the step, so ticks of 1e-6 apart stay apart and 0.1 + 0.2 reads 0.3.
    digits = max(0, 3 - math.floor(math.log10(step)))
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, digits))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, digits))
    return ticks


def _fixed(value: float, digits: int) -> str:
    """Fixed decimals with thousands separated: 1,250.5."""
    return f"{value:,.{digits}f}"


def _sci(value: float, digits: int) -> str:
    """Scientific notation without padding: 2.5e-5, 1.2e6."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels for a set of evenly spaced ticks, in one notation and with as few digits as tell them
    apart: fixed decimals when the step is at least 0.001 and every value under a million
    ("0.25", "12,500"), scientific otherwise ("2e-5", "1.5e6"). static/js/run.js follows the same
    rules for the live curves."""
    finite = [float(t) for t in ticks if math.isfinite(t)]
    if not finite:
        return [str(t) for t in ticks]
    size = max(abs(t) for t in finite)
    step = abs(finite[1] - finite[0]) if len(finite) > 1 else (size or 1.0)
    tolerance = step * 1e-6

    def exact(render: Callable[[float], str]) -> bool:
        return all(abs(float(render(t).replace(",", "")) - t) <= tolerance for t in finite)

    if step >= 1e-3 and size < 1e6:
        decimals = next(d for d in range(11) if d == 10 or exact(partial(_fixed, digits=d)))
        labels = [f"{t:,.{decimals}f}" for t in ticks]
        zero = (
            "0" if t == 0 or label.lstrip("-").strip("0.,") == "" else label
            for t, label in zip(ticks, labels, strict=True)
        )
        return list(zero)
    digits = next(d for d in range(11) if d == 10 or exact(partial(_sci, digits=d)))
    return ["0" if t == 0 else _sci(t, digits) for t in ticks]


def format_value(value: float) -> str:
    """One number on its own (a point's exact value): 4 significant digits, thousands separated,
    scientific below 0.001 and from a million."""
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1e6 or size < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    if size >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


class _Frame:
    """Maps data coordinates to the plot area and draws axes, ticks and titles."""

    def __init__(self, x_range: tuple[float, float] | None, y_range: tuple[float, float]) -> None:
        self.y_ticks = nice_ticks(*y_range)
        self.y0, self.y1 = self.y_ticks[0], self.y_ticks[-1]
        self.x_ticks = nice_ticks(*x_range) if x_range else []
        if self.x_ticks:
            self.x0, self.x1 = self.x_ticks[0], self.x_ticks[-1]
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = HEIGHT - TOP - BOTTOM

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return LEFT + (value - self.x0) / span * self.plot_w

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return TOP + self.plot_h - (value - self.y0) / span * self.plot_h

    def axes(self, title: str, x_label: str, y_label: str, *, x_ticks: bool = True) -> list[str]:
        parts = [
            f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" font-weight="600" '
            f'font-size="13">{escape(title)}</text>'
        ]
        for tick, label in zip(self.y_ticks, tick_labels(self.y_ticks), strict=True):
            y = self.y(tick)
            parts.append(
                f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                f'fill="#4b5563">{escape(label)}</text>'
            )
        if x_ticks:
            for tick, label in zip(self.x_ticks, tick_labels(self.x_ticks), strict=True):
                x = self.x(tick)
                parts.append(
                    f'<text x="{x:.1f}" y="{TOP + self.plot_h + 16}" text-anchor="middle" '
                    f'font-size="11" fill="#4b5563">{escape(label)}</text>'
                )
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + self.plot_h}" '
            f'y2="{TOP + self.plot_h}" stroke="#9ca3af"/>'
        )
        if x_label:
            parts.append(
                f'<text x="{LEFT + self.plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" '
                f'font-size="12" fill="#374151">{escape(x_label)}</text>'
            )
        if y_label:
            parts.append(
                f'<text x="14" y="{TOP + self.plot_h / 2:.0f}" text-anchor="middle" font-size="12" '
                f'fill="#374151" transform="rotate(-90 14 {TOP + self.plot_h / 2:.0f})">'
                f"{escape(y_label)}</text>"
            )
        return parts


def _svg(parts: list[str], title: str) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif">{body}</svg>'
    )


def _empty(title: str, message: str = "No data yet") -> Markup:
    return _svg(
        [
            f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" font-weight="600" '
            f'font-size="13">{escape(title)}</text>',
            f'<text x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle" font-size="13" '
            f'fill="#6b7280">{escape(message)}</text>',
        ],
        title,
    )


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    y_label: str = "",
    y_max: float | None = None,
    highlight: set[int] | None = None,
    reference: float | None = None,
) -> Markup:
    """Vertical bars, one per label; bars whose index is in `highlight` are drawn in red.

    A missing value (None) leaves a gap. `reference` draws a dashed horizontal line (e.g. 0.5).
    """
    finite = _finite(values)
    if not labels or not finite:
        return _empty(title)
    top = y_max if y_max is not None else max(finite + ([reference] if reference is not None else []))
    bottom = min(0.0, *finite)
    frame = _Frame(None, (bottom, top if top > bottom else bottom + 1))
    parts = frame.axes(title, "", y_label, x_ticks=False)
    slot = frame.plot_w / len(labels)
    width = max(2.0, slot * 0.7)
    rotate = len(labels) > 8
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        cx = LEFT + slot * (index + 0.5)
        if value is not None and math.isfinite(float(value)):
            y_top, y_base = frame.y(max(float(value), 0.0)), frame.y(min(float(value), 0.0))
            colour = HIGHLIGHT if highlight and index in highlight else NORMAL
            parts.append(
                f'<rect x="{cx - width / 2:.1f}" y="{y_top:.1f}" width="{width:.1f}" '
                f'height="{max(y_base - y_top, 0.5):.1f}" fill="{colour}">'
                f"<title>{escape(label)}: {escape(format_value(float(value)))}</title></rect>"
            )
        text = escape(str(label)[:18])
        y_text = TOP + frame.plot_h + 14
        if rotate:
            parts.append(
                f'<text x="{cx:.1f}" y="{y_text}" text-anchor="end" font-size="10" fill="#4b5563" '
                f'transform="rotate(-35 {cx:.1f} {y_text})">{text}</text>'
            )
        else:
            parts.append(
                f'<text x="{cx:.1f}" y="{y_text}" text-anchor="middle" font-size="11" '
                f'fill="#4b5563">{text}</text>'
            )
    if reference is not None:
        y = frame.y(reference)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#111827" '
            f'stroke-dasharray="4 3"/>'
        )
    return _svg(parts, title)


def line_chart(
    series: dict[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
) -> Markup:
    """One polyline with point markers per named series, and a legend."""
    points = [(float(x), float(y)) for values in series.values() for x, y in values]
    points = [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
    if not points:
        return _empty(title)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    frame = _Frame((min(xs), max(xs)), (min(0.0, min(ys)), max(ys)))
    parts = frame.axes(title, x_label, y_label)
    for index, (name, values) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        coords = [
            (frame.x(float(x)), frame.y(float(y)), x, y)
            for x, y in values
            if math.isfinite(float(x)) and math.isfinite(float(y))
        ]
        if len(coords) > 1:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _, _ in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for cx, cy, x, y in coords:
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"><title>{escape(name)}: '
                f"{escape(format_value(float(x)))}, {escape(format_value(float(y)))}</title></circle>"
            )
        parts.append(
            f'<rect x="{LEFT + 8 + index * 120}" y="{TOP + 2}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{LEFT + 22 + index * 120}" y="{TOP + 11}" font-size="11">'
            f"{escape(str(name)[:16])}</text>"
        )
    return _svg(parts, title)


def scatter_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
) -> Markup:
    """Points, with a least-squares line when there are at least three of them."""
    finite = [(float(x), float(y)) for x, y in points if math.isfinite(float(x)) and math.isfinite(float(y))]
    if not finite:
        return _empty(title)
    xs, ys = [p[0] for p in finite], [p[1] for p in finite]
    frame = _Frame((min(xs), max(xs)), (min(ys), max(ys)))
    parts = frame.axes(title, x_label, y_label)
    for x, y in finite:
        parts.append(
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{NORMAL}" '
            f'fill-opacity="0.6"><title>{escape(format_value(x))}, {escape(format_value(y))}</title></circle>'
        )
    if len(finite) >= 3:
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mean_x) ** 2 for x in xs)
        if sxx > 0:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in finite) / sxx
            x_a, x_b = frame.x0, frame.x1
            y_a, y_b = mean_y + slope * (x_a - mean_x), mean_y + slope * (x_b - mean_x)
            y_a = min(max(y_a, frame.y0), frame.y1)
            y_b = min(max(y_b, frame.y0), frame.y1)
            parts.append(
                f'<line x1="{frame.x(x_a):.1f}" y1="{frame.y(y_a):.1f}" x2="{frame.x(x_b):.1f}" '
                f'y2="{frame.y(y_b):.1f}" stroke="{HIGHLIGHT}" stroke-width="1.5"/>'
            )
    return _svg(parts, title)


def interval_chart(
    labels: Sequence[str],
    estimates: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    title: str,
    x_label: str = "",
) -> Markup:
    """Horizontal estimates with confidence intervals, one row per label (e.g. a leaderboard)."""
    values = _finite([*estimates, *lows, *highs])
    if not labels or not values:
        return _empty(title)
    rows = len(labels)
    height = max(HEIGHT, TOP + BOTTOM + rows * 22)
    left = 150
    ticks = nice_ticks(min(values), max(values))
    x0, x1 = ticks[0], ticks[-1]
    plot_w = WIDTH - left - RIGHT

    def x(value: float) -> float:
        return left + (value - x0) / ((x1 - x0) or 1.0) * plot_w

    parts = [
        f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" font-weight="600" font-size="13">'
        f"{escape(title)}</text>"
    ]
    bottom = height - BOTTOM
    for tick, label in zip(ticks, tick_labels(ticks), strict=True):
        parts.append(
            f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" y2="{bottom}" stroke="#e5e7eb"/>'
            f'<text x="{x(tick):.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11" '
            f'fill="#4b5563">{escape(label)}</text>'
        )
    step = (bottom - TOP) / rows
    for index, (label, estimate, low, high) in enumerate(zip(labels, estimates, lows, highs, strict=True)):
        cy = TOP + step * (index + 0.5)
        parts.append(
            f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" font-size="11">'
            f"{escape(str(label)[:22])}</text>"
        )
        if all(v is not None and math.isfinite(float(v)) for v in (estimate, low, high)):
            parts.append(
                f'<line x1="{x(float(low)):.1f}" x2="{x(float(high)):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
                f'stroke="{NORMAL}" stroke-width="2"/>'
                f'<circle cx="{x(float(estimate)):.1f}" cy="{cy:.1f}" r="4" fill="{NORMAL}">'
                f"<title>{escape(label)}: {escape(format_value(float(estimate)))} "
                f"[{escape(format_value(float(low)))}, {escape(format_value(float(high)))}]</title></circle>"
            )
    if x_label:
        parts.append(
            f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" font-size="12" '
            f'fill="#374151">{escape(x_label)}</text>'
        )
    body = "".join(parts)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui, sans-serif">{body}</svg>'
    )


CHARTS = {
    "bar_chart": bar_chart,
    "line_chart": line_chart,
    "scatter_chart": scatter_chart,
    "interval_chart": interval_chart,
}
