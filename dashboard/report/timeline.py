"""A saga's timeline as a vector drawing: one swimlane per service, steps as bars.

Drawn with reportlab graphics only, so PDFs render without a browser or kaleido.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reportlab.graphics.shapes import Drawing, Line, Rect, String
from reportlab.lib import colors

ACTION = colors.HexColor("#2F6DB5")
COMPENSATION = colors.HexColor("#D9822B")
EVENT = colors.HexColor("#7A8793")
FAILED = colors.HexColor("#C62828")
LANE = colors.HexColor("#F3F5F8")
RULE = colors.HexColor("#C8CED6")
INK = colors.HexColor("#26313D")

LANE_H = 30.0
BAR_H = 10.0
LABEL_W = 78.0


def _fmt_offset(ns: int) -> str:
    s = ns / 1e9
    if s < 1:
        return f"+{ns / 1e6:.0f} ms"
    if s < 120:
        return f"+{s:.1f} s"
    return f"+{s / 60:.1f} min"


def _fill(step: Mapping[str, Any]) -> colors.Color:
    kind = step.get("step_type")
    return COMPENSATION if kind == "compensation" else EVENT if kind == "event" else ACTION


def build_timeline_drawing(
    saga: Mapping[str, Any], width: float, font: str = "Helvetica"
) -> Drawing:
    """Swimlane chart of ``saga['steps']``: actions blue, compensations amber, failures red."""
    steps: Sequence[Mapping[str, Any]] = saga.get("steps") or ()
    lanes: list[str] = []
    for step in steps:
        service = str(step.get("service") or "?")
        if service not in lanes:
            lanes.append(service)
    height = max(1, len(lanes)) * LANE_H + 34
    d = Drawing(width, height)
    t0 = min((int(s.get("start_ns") or 0) for s in steps), default=0)
    horizon = int(saga.get("ended_ns") or 0) or int(saga.get("last_progress_ns") or 0)
    t1 = max([horizon, *(int(s.get("end_ns") or 0) for s in steps), t0 + 1])
    if any(not s.get("end_ns") for s in steps):
        # A step still running has no end; leave room after the last progress so its open bar
        # is visible instead of collapsing to a sliver at the right edge.
        t1 += max((t1 - t0) // 4, 1)
    span = max(t1 - t0, 1)
    plot_x, plot_w = LABEL_W, width - LABEL_W - 8
    top = height - 6

    def x_of(ns: int) -> float:
        return plot_x + plot_w * (ns - t0) / span

    for i, service in enumerate(lanes):
        y = top - (i + 1) * LANE_H
        if i % 2 == 0:
            d.add(Rect(0, y, width, LANE_H, fillColor=LANE, strokeColor=None))
        label = service if len(service) <= 16 else service[:15] + "…"
        d.add(String(4, y + LANE_H / 2 - 3, label, fontName=font, fontSize=7.5, fillColor=INK))
    axis_y = top - len(lanes) * LANE_H
    d.add(Line(plot_x, axis_y, plot_x + plot_w, axis_y, strokeColor=RULE, strokeWidth=0.6))
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = plot_x + plot_w * frac
        d.add(Line(x, axis_y, x, axis_y - 3, strokeColor=RULE, strokeWidth=0.6))
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        d.add(
            String(
                x,
                axis_y - 11,
                _fmt_offset(int(span * frac)),
                fontName=font,
                fontSize=6.5,
                fillColor=INK,
                textAnchor=anchor,
            )
        )
    label_end: dict[str, float] = {}
    for step in steps:
        lane = lanes.index(str(step.get("service") or "?"))
        y = top - (lane + 1) * LANE_H + (LANE_H - BAR_H) / 2 - 3
        start = int(step.get("start_ns") or t0)
        end = int(step.get("end_ns") or 0)
        running = end == 0
        x0 = x_of(start)
        x1 = max(x_of(end if not running else t1), x0 + 2.5)
        failed = step.get("outcome") == "failed"
        bar = Rect(
            x0,
            y,
            x1 - x0,
            BAR_H,
            fillColor=colors.white if running else _fill(step),
            strokeColor=FAILED if failed else _fill(step),
            strokeWidth=1.4 if failed else 0.8,
        )
        if running:
            bar.strokeDashArray = [2, 2]
        d.add(bar)
        if failed:
            cx, cy = x1 + 5, y + BAR_H / 2
            d.add(Line(cx - 3, cy - 3, cx + 3, cy + 3, strokeColor=FAILED, strokeWidth=1.4))
            d.add(Line(cx - 3, cy + 3, cx + 3, cy - 3, strokeColor=FAILED, strokeWidth=1.4))
        name = str(step.get("name", ""))
        key = str(lane)
        text_w = len(name) * 6.5 * 0.5
        tx = min(x0, plot_x + plot_w - text_w)
        above = tx >= label_end.get(key + "a", 0.0)
        ty = y + BAR_H + 2.5 if above else y - 7.5
        d.add(
            String(tx, ty, name, fontName=font, fontSize=6.5, fillColor=FAILED if failed else INK)
        )
        label_end[key + ("a" if above else "b")] = tx + text_w + 4
    legend_y = 4.0
    x = plot_x
    for text, fill, stroke in (
        ("action", ACTION, ACTION),
        ("compensation", COMPENSATION, COMPENSATION),
        ("failed", colors.white, FAILED),
        ("running", colors.white, ACTION),
    ):
        r = Rect(x, legend_y, 9, 6, fillColor=fill, strokeColor=stroke, strokeWidth=1)
        if text == "running":
            r.strokeDashArray = [2, 2]
        d.add(r)
        d.add(String(x + 12, legend_y + 0.5, text, fontName=font, fontSize=6.5, fillColor=INK))
        x += 20 + len(text) * 3.6
    return d
