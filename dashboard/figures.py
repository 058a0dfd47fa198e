"""Pure Plotly figure builders: plain data in, ``go.Figure`` out. No Streamlit, no I/O, no clock."""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dashboard.format import (
    FAILURE_COLOR,
    STATUS_COLORS,
    STATUS_LABELS,
    STEP_COLORS,
    format_duration,
    format_time,
    ns_to_datetime,
    service_label,
    shorten,
)

PRODUCER, CONSUMER = 4, 5
LABEL_LIMIT = 300  # above this many steps, bar labels would only be noise
_LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "template": "plotly_white"}


@dataclass(frozen=True, slots=True)
class Hop:
    """A message travelling from a producer in one service to a consumer in another."""

    from_service: str
    from_ns: int
    to_service: str
    to_ns: int
    label: str


def _service(record: Mapping[str, Any]) -> str:
    return str(record.get("service_name") or record.get("service") or "unknown")


def message_hops(
    spans: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
    steps: Sequence[Mapping[str, Any]] = (),
) -> list[Hop]:
    """Producer -> consumer hops found in the records.

    A CONSUMER span whose parent or link is a PRODUCER span is one hop; an event whose trace
    context names a PRODUCER span is a hop to the event's step (or to the event itself).
    """
    by_id = {(s.get("trace_id"), s.get("span_id")): s for s in spans}
    by_span = {s.get("span_id"): s for s in spans}
    hops: list[Hop] = []
    for span in spans:
        if span.get("kind") != CONSUMER:
            continue
        candidates = [by_id.get((span.get("trace_id"), span.get("parent_span_id")))]
        candidates += [
            by_id.get((ln.get("trace_id"), ln.get("span_id"))) for ln in span.get("links") or []
        ]
        for producer in candidates:
            if producer is not None and producer.get("kind") == PRODUCER:
                hops.append(
                    Hop(
                        _service(producer),
                        int(producer.get("start_ns") or 0),
                        _service(span),
                        int(span.get("start_ns") or 0),
                        str(producer.get("messaging_destination") or span.get("name")),
                    )
                )
                break
    event_steps = {
        ref.removeprefix("event:"): st
        for st in steps
        for ref in st.get("records") or []
        if ref.startswith("event:")
    }
    for event in events:
        producer = by_span.get(event.get("parent_span_id"))
        if producer is None or producer.get("kind") != PRODUCER:
            continue
        step = event_steps.get(str(event.get("event_key")))
        to_service = _service(step) if step else str(event.get("source") or "events")
        to_ns = int(
            (step or {}).get("start_ns") or event.get("time_ns") or event.get("received_ns") or 0
        )
        hops.append(
            Hop(
                _service(producer),
                int(producer.get("start_ns") or 0),
                to_service,
                to_ns,
                str(event.get("type") or "event"),
            )
        )
    return hops


def event_sources(steps: Sequence[Mapping[str, Any]]) -> set[str]:
    """Services of these steps known only as the CloudEvents source of their events."""
    spans = {_service(s) for s in steps if s.get("step_type") != "event"}
    return {_service(s) for s in steps if s.get("step_type") == "event"} - spans


def _step_category(step: Mapping[str, Any]) -> str:
    if step.get("outcome") == "running" or not step.get("end_ns"):
        return "running"
    return str(step.get("step_type") or "action")


def build_timeline_figure(
    steps: Sequence[Mapping[str, Any]],
    hops: Sequence[Hop] = (),
    *,
    now_ns: int = 0,
    waiting_since_ns: int = 0,
    waiting_for: str = "",
    waiting_service: str = "",
    never_ran: Sequence[tuple[str, str]] = (),
) -> go.Figure:
    """One swimlane per service; actions and compensations in distinct colours.

    Failed steps get a red outline and an ✕ marker, retried steps an 'N attempts' label,
    message hops become arrows between lanes, and a stalled saga shows its open wait from
    ``waiting_since_ns`` to ``now_ns``. ``never_ran`` holds ``(action, compensation)`` pairs
    whose compensation is missing: each is drawn, hollow, in the action's lane after the
    saga's last step, where the undo should have been.
    """
    lanes: list[str] = []
    for name in [
        *(_service(s) for s in steps),
        *(h for hop in hops for h in (hop.from_service, hop.to_service)),
        *([waiting_service] if waiting_since_ns and waiting_service else []),
    ]:
        if name not in lanes:
            lanes.append(name)
    lane = {name: i for i, name in enumerate(lanes)}
    sources = event_sources(steps)
    labelled = len(steps) <= LABEL_LIMIT
    fig = go.Figure()
    # One bar trace per category and outcome: scalar styles keep a 5,000-step figure quick to
    # build (plotly validates list-valued styles element by element).
    groups: dict[tuple[str, bool], list[Mapping[str, Any]]] = {}
    for s in steps:
        groups.setdefault((_step_category(s), s.get("outcome") == "failed"), []).append(s)
    shown: set[str] = set()
    for (category, failed_group), members in sorted(groups.items(), key=lambda kv: kv[0][1]):
        starts = [int(s.get("start_ns") or 0) for s in members]
        ends = [int(s.get("end_ns") or now_ns or s.get("start_ns") or 0) for s in members]
        fig.add_trace(
            go.Bar(
                name=category,
                legendgroup=category,
                showlegend=category not in shown,
                orientation="h",
                base=[ns_to_datetime(t) for t in starts],
                x=[max((e - t) / 1e6, 1.0) for t, e in zip(starts, ends, strict=True)],
                y=[lane[_service(s)] for s in members],
                width=0.6,
                marker={
                    "color": STEP_COLORS.get(category, STEP_COLORS["action"]),
                    "line": {
                        "color": FAILURE_COLOR if failed_group else "white",
                        "width": 3 if failed_group else 1,
                    },
                    "pattern": {"shape": "/" if category in ("compensation", "running") else ""},
                },
                text=[_bar_label(s) for s in members] if labelled else None,
                textposition="inside",
                insidetextanchor="start",
                textangle=0,
                textfont={"color": "white"},
                customdata=np.array(
                    [
                        [
                            shorten(str(s.get("name")), 80),
                            s.get("step_type"),
                            s.get("outcome"),
                            int(s.get("attempts") or 1),
                            format_duration(e - t),
                            s.get("compensates") or "",
                            shorten(str(s.get("error") or ""), 120),
                        ]
                        for s, t, e in zip(members, starts, ends, strict=True)
                    ],
                    dtype=object,
                ),
                hovertemplate=(
                    "<b>%{customdata[0]}</b><br>%{customdata[1]} · %{customdata[2]} · "
                    "attempts %{customdata[3]}<br>duration %{customdata[4]}"
                    "<br>undoes: %{customdata[5]}<br>%{customdata[6]}<extra></extra>"
                ),
            )
        )
        shown.add(category)
    if labelled and steps:
        # Short steps in a long saga are thinner than a pixel; a marker keeps each one visible.
        fig.add_trace(
            go.Scatter(
                name="step start",
                mode="markers",
                showlegend=False,
                x=[ns_to_datetime(int(s.get("start_ns") or 0)) for s in steps],
                y=[lane[_service(s)] for s in steps],
                marker={
                    "symbol": "line-ns",
                    "size": 22,
                    "line": {
                        "width": 3,
                        "color": [
                            STEP_COLORS.get(_step_category(s), STEP_COLORS["action"]) for s in steps
                        ],
                    },
                },
                text=[shorten(str(s.get("name")), 80) for s in steps],
                hoverinfo="text",
            )
        )
    failed = [s for s in steps if s.get("outcome") == "failed"]
    if failed:
        fig.add_trace(
            go.Scatter(
                name="failed",
                mode="markers",
                x=[ns_to_datetime(int(s.get("end_ns") or s.get("start_ns") or 0)) for s in failed],
                y=[lane[_service(s)] for s in failed],
                marker={
                    "symbol": "x",
                    "size": 14,
                    "color": FAILURE_COLOR,
                    "line": {"width": 2, "color": "white"},
                },
                text=[shorten(str(s.get("error") or "failed"), 120) for s in failed],
                hovertemplate="failed: %{text}<extra></extra>",
            )
        )
    retried = [s for s in steps if int(s.get("attempts") or 1) > 1]
    if retried:
        fig.add_trace(
            go.Scatter(
                name="attempts",
                mode="markers+text" if labelled else "markers",
                x=[ns_to_datetime(int(s.get("start_ns") or 0)) for s in retried],
                y=[lane[_service(s)] + 0.42 for s in retried],
                marker={"symbol": "triangle-down", "size": 9, "color": "#34495e"},
                text=[f"{int(s.get('attempts') or 1)} attempts" for s in retried],
                textposition="middle right",
                hoverinfo="text",
            )
        )
    if hops:
        fig.add_trace(
            go.Scatter(
                name="message sent",
                mode="markers",
                x=[ns_to_datetime(h.from_ns) for h in hops],
                y=[lane[h.from_service] for h in hops],
                marker={"symbol": "circle", "size": 10, "color": "#555"},
                text=[
                    f"sent to {shorten(h.label, 60)} → {shorten(h.to_service, 30)}" for h in hops
                ],
                hoverinfo="text",
            )
        )
    for hop in hops:
        fig.add_annotation(
            x=ns_to_datetime(hop.to_ns),
            y=lane[hop.to_service],
            ax=ns_to_datetime(hop.from_ns),
            ay=lane[hop.from_service],
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=3,
            arrowsize=1.3,
            arrowwidth=2,
            arrowcolor="#555",
            text="",
            hovertext=f"message: {shorten(hop.label, 80)}",
        )
    # the step left un-undone: a span (action) or, in a choreographed saga, the event it
    # published; a compensating event names what it undid, so it is never the owner
    owner = {
        str(s.get("name")): _service(s)
        for s in steps
        if s.get("step_type") in ("action", "event") and not s.get("compensates")
    }
    missing: dict[int, list[tuple[str, str]]] = {}  # lane -> (action, compensation)
    for action, comp in never_ran:
        if owner.get(action) in lane:
            missing.setdefault(lane[owner[action]], []).append((action, comp))
    x_range: list[Any] | None = None
    if missing:
        # After the saga's last step, labelled to the right, where no bar can lie under it;
        # one marker per lane, so several missing undos in one service never overlap.
        first = min(int(s.get("start_ns") or 0) for s in steps)
        last = max(int(s.get("end_ns") or s.get("start_ns") or 0) for s in steps)
        span = max(last - first, 1_000_000)
        fig.add_trace(
            go.Scatter(
                name="compensation never ran",
                mode="markers+text",
                x=[ns_to_datetime(last + span // 10)] * len(missing),
                y=list(missing),
                marker={
                    "symbol": "square-open",
                    "size": 18,
                    "color": FAILURE_COLOR,
                    "line": {"width": 2},
                },
                text=[
                    ", ".join(shorten(c, 40) for _, c in pairs) + " never ran"
                    for pairs in missing.values()
                ],
                textposition="middle right",
                textfont={"color": FAILURE_COLOR},
                cliponaxis=False,
                hovertemplate=[
                    "<br>".join(
                        f"{shorten(c, 80)} should have undone {shorten(a, 80)}, but never ran"
                        for a, c in pairs
                    )
                    + "<extra></extra>"
                    for pairs in missing.values()
                ],
            )
        )
        # room on the right for the labels, which the axis's autorange does not count
        right = max(last + span * 7 // 10, now_ns if waiting_since_ns else 0)
        x_range = [ns_to_datetime(first - span // 50), ns_to_datetime(right)]
    if waiting_since_ns and now_ns:
        y = lane.get(waiting_service, len(lanes) - 1 if lanes else 0)
        fig.add_trace(
            go.Scatter(
                name="waiting",
                mode="lines+text",
                x=[ns_to_datetime(waiting_since_ns), ns_to_datetime(now_ns)],
                y=[y, y],
                line={"color": STATUS_COLORS["stalled"], "dash": "dot", "width": 4},
                text=[
                    f"waiting since {format_time(waiting_since_ns)} "
                    f"({format_duration(now_ns - waiting_since_ns)})"
                    + (f" for {shorten(waiting_for, 60)}" if waiting_for else ""),
                    "",
                ],
                textposition="top right",
                hoverinfo="text",
            )
        )
    fig.update_layout(
        **_LAYOUT,
        barmode="overlay",
        # a label that does not fit its bar is hidden rather than shrunk or turned on its side
        uniformtext={"minsize": 10, "mode": "hide"},
        height=min(140 + 70 * max(len(lanes), 1), 900),
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        yaxis={
            "tickvals": list(range(len(lanes))),
            "ticktext": [shorten(service_label(name, sources), 44) for name in lanes],
            "title": None,
            "range": [len(lanes) - 0.5, -0.5],
        },
        xaxis={"type": "date", "title": None, **({"range": x_range} if x_range else {})},
        hovermode="closest",
    )
    return fig


def _bar_label(step: Mapping[str, Any]) -> str:
    label = shorten(str(step.get("name") or ""), 40)
    if step.get("step_type") == "compensation":
        label = "↩ " + label
    attempts = int(step.get("attempts") or 1)
    return f"{label} ×{attempts}" if attempts > 1 else label


def build_status_figure(status_counts: Mapping[str, int]) -> go.Figure:
    """Horizontal bars of sagas per status in the status colours."""
    order = [s for s in STATUS_LABELS if status_counts.get(s)]
    order += [s for s in status_counts if s not in STATUS_LABELS]
    fig = go.Figure(
        go.Bar(
            orientation="h",
            y=[STATUS_LABELS.get(s, s) for s in order],
            x=[status_counts[s] for s in order],
            marker={"color": [STATUS_COLORS.get(s, "#7f8c8d") for s in order]},
            text=[status_counts[s] for s in order],
            textposition="auto",
        )
    )
    fig.update_layout(
        **_LAYOUT,
        height=60 + 32 * max(len(order), 1),
        title="Sagas by status",
        yaxis={"autorange": "reversed"},
    )
    return fig


def build_throughput_figure(buckets: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Sagas started per time bucket (bars) and the failure rate (line, right axis)."""
    x = [ns_to_datetime(int(b["bucket_ns"])) for b in buckets]
    started = [int(b.get("started") or 0) for b in buckets]
    failed = [int(b.get("failed") or 0) for b in buckets]
    rate = [round(100 * f / s, 1) if s else 0.0 for f, s in zip(failed, started, strict=True)]
    fig = go.Figure()
    fig.add_trace(go.Bar(name="started", x=x, y=started, marker={"color": "#3478c6"}))
    fig.add_trace(go.Bar(name="failed", x=x, y=failed, marker={"color": FAILURE_COLOR}))
    fig.add_trace(
        go.Scatter(
            name="failure rate %",
            x=x,
            y=rate,
            yaxis="y2",
            mode="lines+markers",
            line={"color": "#e67e22"},
        )
    )
    fig.update_layout(
        **_LAYOUT,
        title="Throughput and failure rate",
        barmode="overlay",
        height=300,
        legend={"orientation": "h", "y": -0.2},
        # whole sagas: a few per bucket were ticked 0.2, 0.4, …
        yaxis={"title": "sagas", "rangemode": "tozero"}
        | ({"dtick": 1} if max(started, default=0) <= 10 else {}),
        # a rate's own ticks (0 %, 25 %, …), not ones lined up with the count grid (19, 38, …)
        yaxis2={
            "title": "failed %",  # the ticks' suffix did not show on the dashboard's charts
            "overlaying": "y",
            "side": "right",
            "range": [0, 100],
            "tickvals": [0, 25, 50, 75, 100],
            "ticksuffix": " %",
            "tickmode": "array",
            "showgrid": False,
        },
    )
    return fig


def build_duration_figure(durations: Sequence[Mapping[str, Any]]) -> go.Figure:
    """p50/p95/p99 saga duration per saga type, in seconds."""
    types = [shorten(str(d.get("saga_type") or "(untyped)"), 30) for d in durations]
    fig = go.Figure()
    for q, color in (("p50", "#9ecae1"), ("p95", "#4292c6"), ("p99", "#08519c")):
        values = [float(d.get(f"{q}_ns") or 0) / 1e9 for d in durations]
        fig.add_trace(
            go.Bar(
                name=q,
                x=types,
                y=values,
                marker={"color": color},
                text=[format_duration(v * 1e9) for v in values],
                textposition="outside",
            )
        )
    fig.update_layout(
        **_LAYOUT,
        title="Duration percentiles per saga type",
        barmode="group",
        height=320,
        yaxis={"title": "seconds"},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def flow_layers(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    weights: Sequence[int] = (),
) -> dict[str, int]:
    """Left-to-right layer of every node: longest path from a source, ignoring back edges.

    Edges are taken most frequent first (``weights``, one per edge), then forward in
    first-seen order; one that would close a loop (a retry, a step seen again after its
    compensation) is a back edge and left out, so the common way through points right.
    """
    order = {n: i for i, n in enumerate(nodes)}
    ranked = sorted(
        (
            (-(weights[i] if i < len(weights) else 0), order[a] > order[b], i, a, b)
            for i, (a, b) in enumerate(edges)
            if a in order and b in order and a != b
        ),
    )
    after: dict[str, set[str]] = {n: set() for n in nodes}

    def reaches(start: str, goal: str) -> bool:
        todo, seen = [start], {start}
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            todo += [n for n in after[node] if n not in seen]
            seen.update(after[node])
        return False

    for *_, a, b in ranked:
        if not reaches(b, a):
            after[a].add(b)
    layer = dict.fromkeys(nodes, 0)
    pending = {n: sum(n in targets for targets in after.values()) for n in nodes}
    ready = [n for n in nodes if not pending[n]]
    while ready:  # in topological order, so each node's layer is settled before it is used
        node = ready.pop(0)
        for b in sorted(after[node], key=order.__getitem__):
            layer[b] = max(layer[b], layer[node] + 1)
            pending[b] -= 1
            if not pending[b]:
                ready.append(b)
    return layer


def flow_rows(
    nodes: Sequence[str],
    layer: Mapping[str, int],
    edges: Sequence[tuple[str, str, int]],
    counts: Mapping[str, int],
    lower: Collection[str] = (),
    sweeps: int = 4,
) -> dict[str, int]:
    """Row of every node within its layer, ordered so that few edges cross.

    Each layer is sorted by the mean row of its neighbours in the layer before (then the
    layer after, and so on), weighted by how often each edge was taken, so the common path
    runs straight along the top and rarer branches fan out below it instead of across it.
    Ties go to the more frequent step, then to the first seen. The ``lower`` nodes (the
    compensations) keep to a band of their own under all the others, where the arrows
    that reach them from far back do not run through the steps between.
    """
    columns: dict[int, list[str]] = {}
    for name in sorted(nodes, key=lambda n: -counts.get(n, 0)):  # stable: first seen next
        columns.setdefault(layer[name], []).append(name)
    band = max((sum(n not in lower for n in c) for c in columns.values()), default=0)

    def place(column: list[str]) -> dict[str, int]:
        upper = [n for n in column if n not in lower]
        below = [n for n in column if n in lower]
        return {n: i for i, n in enumerate(upper)} | {n: band + i for i, n in enumerate(below)}

    row = {name: i for column in columns.values() for name, i in place(column).items()}
    # an edge counts at least a little, so expected-only edges still pull their steps along
    weighted = [(a, b, max(w, 1)) for a, b, w in edges if a in row and b in row and a != b]

    def centre(name: str, toward: int) -> float | None:
        pulls = [
            (row[other], w)
            for a, b, w in weighted
            for mine, other in ((a, b), (b, a))
            if mine == name and layer[other] == layer[name] + toward
        ]
        total = sum(w for _, w in pulls)
        return sum(r * w for r, w in pulls) / total if total else None

    order = sorted(columns)
    for sweep in range(sweeps):
        toward, cols = (-1, order[1:]) if sweep % 2 == 0 else (1, order[::-1][1:])
        for col in cols:
            current = columns[col]
            pulled = {n: centre(n, toward) for n in current}
            keys = {n: float(row[n]) if k is None else k for n, k in pulled.items()}
            current.sort(key=keys.__getitem__)
            row.update(place(current))
    return row


def edge_label_point(
    start: tuple[float, float], end: tuple[float, float], near_end: bool = False, gap: float = 0.4
) -> tuple[float, float]:
    """Where an edge's count goes: ``gap`` of a column from one of its ends, not its middle.

    Two edges that cross between neighbouring columns meet halfway, where their labels
    would sit on top of each other. Near the end where fewer edges meet (``near_end``: the
    target), each label sits on its own arrow, apart from its siblings.
    """
    (x0, y0), (x1, y1) = start, end
    span = abs(x1 - x0)
    t = min(gap / span, 0.5) if span else 0.5
    t = 1 - t if near_end else t
    return x0 + (x1 - x0) * t, y0 + (y1 - y0) * t


def _wrap_name(name: str, width: int = 18) -> str:
    """A step name on at most two lines of about ``width`` characters, broken between words.

    Neighbouring nodes of the flow are about that far apart; one long line ran into them.
    """
    words = re.findall(r"[A-Z]?[a-z0-9]+[^A-Za-z0-9]*|[A-Z]+(?![a-z])[^A-Za-z0-9]*|.", name)
    lines = [""]
    for word in words:
        if lines[-1] and len(lines[-1]) + len(word) > width:
            lines.append("")
        lines[-1] += word
    if len(lines) > 2:
        lines = [lines[0], shorten("".join(lines[1:]), width)]
    return "<br>".join(shorten(line.strip(), width + 4) for line in lines)


def _flow_label(node: Mapping[str, Any]) -> str:
    """Name, how often it ran and, when it has one, its median duration."""
    stats = f"{node['count']}×"
    if node.get("median_ns") is not None:
        stats += f" · {format_duration(node['median_ns'])}"
    return f"{_wrap_name(str(node['name']))}<br>{stats}"


def _label_side(column: int) -> str:
    # alternate columns put their labels above and below, so neighbours' labels never meet
    return "bottom center" if column % 2 == 0 else "top center"


def _is_compensation(node: Mapping[str, Any]) -> bool:
    return node.get("step_type") == "compensation" or bool(node.get("compensation"))


def flow_step_kind(node: Mapping[str, Any]) -> str:
    """What a flow node is: action, compensation, event or compensating event."""
    compensation = _is_compensation(node)
    if node.get("step_type") == "event":
        return "compensating event" if compensation else "event"
    return "compensation" if compensation else "action"


def build_flow_figure(
    flow: Mapping[str, Any],
    expected: Sequence[Mapping[str, str]] | None = None,
    max_nodes: int = 40,
) -> go.Figure:
    """Learned step graph, left to right: node size by count, colour by failure rate.

    ``expected`` (from the definitions file: ``[{"name", "compensation"}, ...]``) is drawn as
    dashed grey edges; expected steps never seen are hollow grey nodes.
    """
    nodes = list(flow.get("nodes") or [])
    if len(nodes) > max_nodes:
        # Thousands of one-off steps make an unreadable (and slow) graph: keep the common ones.
        keep = {id(n) for n in sorted(nodes, key=lambda n: -int(n["count"]))[:max_nodes]}
        nodes = [n for n in nodes if id(n) in keep]
    kept = {str(n["name"]) for n in nodes}
    edges = [e for e in flow.get("edges") or [] if e["source"] in kept and e["target"] in kept]
    names = [str(n["name"]) for n in nodes]
    expected_edges: list[tuple[str, str]] = []
    if expected:
        chain = [str(s["name"]) for s in expected]
        expected_edges = list(itertools.pairwise(chain))
        expected_edges += [
            (str(s["name"]), str(s["compensation"])) for s in expected if s.get("compensation")
        ]
    extra = [n for e in expected_edges for n in e if n not in names]
    all_names = names + list(dict.fromkeys(extra))
    layer = flow_layers(
        all_names,
        [(str(e["source"]), str(e["target"])) for e in edges] + expected_edges,
        [int(e["count"]) for e in edges],
    )
    row = flow_rows(
        all_names,
        layer,
        [(str(e["source"]), str(e["target"]), int(e["count"])) for e in edges]
        + [(a, b, 0) for a, b in expected_edges],
        {str(n["name"]): int(n["count"]) for n in nodes},
        {str(n["name"]) for n in nodes if _is_compensation(n)}
        | {b for a, b in expected_edges if any(s.get("compensation") == b for s in expected or [])},
    )
    pos = {name: (float(layer[name]), float(row[name])) for name in all_names}
    fig = go.Figure()
    top = max(row.values(), default=0) + 1
    for i, (a, b) in enumerate(expected_edges):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                hoverinfo="skip",
                line={"color": "#aaa", "dash": "dash", "width": 2},
                showlegend=i == 0,
                name="expected by the definitions file",
            )
        )
    biggest = max((int(e["count"]) for e in edges), default=1)
    fan_out = collections.Counter(str(e["source"]) for e in edges)
    fan_in = collections.Counter(str(e["target"]) for e in edges)
    pairs = {(str(e["source"]), str(e["target"])) for e in edges}
    for e in edges:
        a, b, count = str(e["source"]), str(e["target"]), int(e["count"])
        (x0, y0), (x1, y1) = pos[a], pos[b]
        fig.add_annotation(
            x=x1,
            y=y1,
            ax=x0,
            ay=y0,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=3,
            standoff=18,
            startstandoff=18,
            arrowwidth=1 + 4 * count / biggest,
            arrowcolor="#5d6d7e",
            text="",
        )
        if (b, a) in pairs:  # both ways along one line: each count by its own source
            lx, ly = edge_label_point((x0, y0), (x1, y1), gap=0.22)
        else:
            lx, ly = edge_label_point((x0, y0), (x1, y1), fan_in[b] < fan_out[a])
        fig.add_annotation(
            x=lx,
            y=ly,
            text=f"{count}",
            showarrow=False,
            font={"size": 11, "color": "#2c3e50"},
            bgcolor="rgba(255,255,255,0.8)",
        )
    seen = nodes
    if seen:
        most = max(int(n["count"]) for n in seen) or 1
        rates = [int(n.get("failed") or 0) / max(int(n["count"]), 1) for n in seen]
        undoes = [_is_compensation(n) for n in seen]
        fig.add_trace(
            go.Scatter(
                name="observed steps",
                x=[pos[str(n["name"])][0] for n in seen],
                y=[pos[str(n["name"])][1] for n in seen],
                mode="markers+text",
                marker={
                    "size": [18 + 22 * int(n["count"]) / most for n in seen],
                    "color": rates,
                    "cmin": 0,
                    "cmax": 1,
                    "colorscale": [[0, "#2e9d5b"], [0.3, "#f1c40f"], [1, FAILURE_COLOR]],
                    "symbol": ["diamond" if u else "circle" for u in undoes],
                    "line": {"color": "#2c3e50", "width": 1},
                    "colorbar": {"title": "failure rate", "tickformat": ".0%"},
                },
                text=[_flow_label(n) for n in seen],
                textposition=[_label_side(layer[str(n["name"])]) for n in seen],
                textfont={"size": 11},
                customdata=[
                    [
                        n["count"],
                        n.get("failed") or 0,
                        r,
                        "median " + format_duration(n["median_ns"])
                        if n.get("median_ns") is not None
                        else "no duration (an event is an instant)"
                        if n.get("step_type") == "event"
                        else "no finished run",
                        flow_step_kind(n),
                        str(n["name"]),
                    ]
                    for n, r, u in zip(seen, rates, undoes, strict=True)
                ],
                hovertemplate=(
                    "<b>%{customdata[5]}</b><br>%{customdata[4]}<br>seen %{customdata[0]}×, "
                    "failed %{customdata[1]} (%{customdata[2]:.0%})<br>"
                    "%{customdata[3]}<extra></extra>"
                ),
            )
        )
    missing = [n for n in all_names if n not in names]
    if missing:
        fig.add_trace(
            go.Scatter(
                name="expected, never seen",
                x=[pos[n][0] for n in missing],
                y=[pos[n][1] for n in missing],
                mode="markers+text",
                marker={"size": 20, "color": "white", "line": {"color": "#999", "width": 2}},
                text=[_wrap_name(n) for n in missing],
                textposition=[_label_side(layer[n]) for n in missing],
                textfont={"size": 11},
            )
        )
    width = max(layer.values(), default=0)
    fig.update_layout(
        **_LAYOUT,
        height=240 + 150 * top,
        showlegend=bool(missing or expected),
        legend={"orientation": "h", "y": -0.1},
        # room for the names written under the first and last columns
        xaxis={"visible": False, "range": [-0.7, width + 0.7]},
        # labels sit above or below their node: leave room for both at the edges
        yaxis={"visible": False, "range": [top - 0.3, -0.7]},
    )
    return fig
