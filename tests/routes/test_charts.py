"""The SVG charts: well-formed, escaped, and empty states instead of errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from app.web.charts import (
    bar_chart,
    format_value,
    interval_chart,
    line_chart,
    nice_ticks,
    scatter_chart,
    tick_labels,
)

EVIL = '<script>alert(1)</script>"&'


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on malformed markup


@pytest.mark.parametrize(("low", "high"), [(0, 1), (0, 0.37), (-3, 7), (5, 5), (0, 12345), (0.9, 1.0)])
def test_ticks_cover_the_range_with_round_steps(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    assert 2 <= len(ticks) <= 12


def test_charts_are_well_formed_and_escape_labels() -> None:
    charts = [
        bar_chart([EVIL, "b"], [0.2, 0.9], title=EVIL, y_label=EVIL, highlight={1}, reference=0.5),
        line_chart({EVIL: [(0, 1.0), (1, 2.0)], "b": [(0, 0.5)]}, title=EVIL, x_label="x", y_label="y"),
        scatter_chart([(1, 2), (2, 4), (3, 6.5)], title=EVIL),
        interval_chart([EVIL, "v2"], [0.1, -0.2], [0.0, -0.5], [0.3, 0.1], title=EVIL, x_label="log"),
    ]
    for chart in charts:
        text = str(chart)
        assert "<script" not in text
        assert "&lt;script&gt;" in text
        root = _parse(text)
        assert root.tag.endswith("svg")
    bars = _parse(str(charts[0])).findall(".//{http://www.w3.org/2000/svg}rect")
    assert [bar.get("fill") for bar in bars] == ["#2563eb", "#dc2626"]


def test_empty_and_non_finite_data_give_an_empty_state() -> None:
    for chart in (
        bar_chart([], [], title="t"),
        bar_chart(["a"], [None], title="t"),
        line_chart({}, title="t"),
        scatter_chart([(float("nan"), 1.0)], title="t"),
        interval_chart([], [], [], [], title="t"),
    ):
        assert "No data yet" in str(chart)
        _parse(str(chart))


@pytest.mark.parametrize(
    ("low", "high", "labels"),
    [
        (0, 1e-5, ["0", "5e-6", "1e-5"]),  # a learning rate: it read "0, 0, 0"
        (2e-6, 1.2e-5, ["0", "5.0e-6", "1.0e-5", "1.5e-5"]),
        (0, 2.5e-4, ["0", "1e-4", "2e-4", "3e-4"]),
        (0, 0.37, ["0", "0.1", "0.2", "0.3", "0.4"]),
        (0.9, 1.0, ["0.900", "0.925", "0.950", "0.975", "1.000"]),
        (-3, 7, ["-5.0", "-2.5", "0", "2.5", "5.0", "7.5"]),
        (0, 12345, ["0", "5,000", "10,000", "15,000"]),
        (0, 3e6, ["0", "1e6", "2e6", "3e6"]),
    ],
)
def test_tick_labels_read_small_and_large_numbers(low: float, high: float, labels: list[str]) -> None:
    ticks = nice_ticks(low, high)
    assert tick_labels(ticks) == labels
    assert len(set(labels)) == len(labels)  # every tick tells itself apart


def test_single_values_and_the_learning_rate_chart_axis() -> None:
    assert [format_value(v) for v in (0, 1e-5, 1.5e-5, -2e-7, 0.00123, 0.5, 7.25, 12345.6, 3.2e6)] == [
        "0", "1e-5", "1.5e-5", "-2e-7", "0.00123", "0.5", "7.25", "12,346", "3.2e6",
    ]  # fmt: skip
    chart = str(line_chart({"lr": [(step, step * 1e-5 / 30) for step in range(1, 31)]}, title="lr"))
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in _parse(chart).iter(f"{ns}text")]
    assert texts[1:4] == ["0", "5e-6", "1e-5"]  # the title, then the y axis
