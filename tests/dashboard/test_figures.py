"""Figure builders checked on their content (``fig.to_dict()``), not just that they run."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from dashboard import figures
from dashboard.format import FAILURE_COLOR, STEP_COLORS, display_key, format_duration, shorten

S = 1_000_000_000
T0 = 1_700_000_000 * S


def step(
    seq: int,
    name: str,
    service: str,
    start: int,
    end: int,
    *,
    step_type: str = "action",
    outcome: str = "ok",
    attempts: int = 1,
    records: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "name": name,
        "service": service,
        "step_type": step_type,
        "start_ns": T0 + start * S,
        "end_ns": T0 + end * S if end else 0,
        "outcome": outcome,
        "attempts": attempts,
        "compensates": "",
        "error": "boom" if outcome == "failed" else "",
        "records": records or [],
    }


STEPS = [
    step(0, "reserve", "inventory", 0, 1),
    step(1, "charge", "payment", 1, 3, attempts=3),
    step(2, "ship", "shipping", 3, 4, outcome="failed"),
    step(3, "release", "inventory", 5, 6, step_type="compensation"),
]
SPANS = [
    {
        "trace_id": "a",
        "span_id": "p1",
        "kind": 4,
        "service_name": "orders",
        "start_ns": T0,
        "name": "publish",
        "messaging_destination": "orders.q",
    },
    {
        "trace_id": "b",
        "span_id": "c1",
        "kind": 5,
        "service_name": "shipping",
        "start_ns": T0 + 3 * S,
        "links": [{"trace_id": "a", "span_id": "p1"}],
        "name": "consume",
    },
    {
        "trace_id": "a",
        "span_id": "c2",
        "parent_span_id": "p1",
        "kind": 5,
        "service_name": "payment",
        "start_ns": T0 + S,
        "name": "consume",
    },
    {
        "trace_id": "a",
        "span_id": "x",
        "parent_span_id": "c2",
        "kind": 5,
        "service_name": "payment",
        "start_ns": T0 + S,
        "name": "consume, parent not a producer",
    },
]


def _traces(fig: Any, name: str) -> list[dict[str, Any]]:
    return [t for t in fig.to_dict()["data"] if t.get("name") == name]


def test_timeline_one_lane_per_service() -> None:
    fig = figures.build_timeline_figure(STEPS)
    assert fig.to_dict()["layout"]["yaxis"]["ticktext"] == ["inventory", "payment", "shipping"]
    ok, failed = _traces(fig, "action")  # the failed actions are a trace of their own
    assert list(ok["y"]) + list(failed["y"]) == [0, 1, 2]
    assert ok["showlegend"] and not failed["showlegend"]  # one legend entry per category


def test_timeline_actions_and_compensations_look_different() -> None:
    fig = figures.build_timeline_figure(STEPS)
    (action, _), (comp,) = _traces(fig, "action"), _traces(fig, "compensation")
    assert action["marker"]["color"] == STEP_COLORS["action"]
    assert comp["marker"]["color"] == STEP_COLORS["compensation"]
    assert comp["marker"]["pattern"]["shape"] == "/"
    assert list(comp["text"]) == ["↩ release"]


def test_timeline_failures_marked() -> None:
    fig = figures.build_timeline_figure(STEPS)
    (failed,) = _traces(fig, "failed")
    assert failed["marker"]["symbol"] == "x" and failed["marker"]["color"] == FAILURE_COLOR
    assert list(failed["y"]) == [2]
    ok, failed_bars = _traces(fig, "action")
    assert ok["marker"]["line"]["color"] == "white" and list(ok["y"]) == [0, 1]
    assert failed_bars["marker"]["line"] == {"color": FAILURE_COLOR, "width": 3}
    assert list(failed_bars["y"]) == [2]


def test_timeline_shows_the_compensation_that_never_ran_in_its_actions_lane() -> None:
    # charge was never refunded: the refund is drawn, hollow, in the payment lane at the end
    fig = figures.build_timeline_figure(
        STEPS, never_ran=[("charge", "refund"), ("unknown-step", "undo")]
    )
    (missing,) = _traces(fig, "compensation never ran")
    assert list(missing["y"]) == [1]  # payment; a step not on the timeline is left out
    assert list(missing["text"]) == ["refund never ran"]
    assert missing["marker"]["symbol"] == "square-open"
    # after the last step (which ends at 6 s) by a tenth of the saga, labelled to its right
    assert missing["x"][0] == figures.ns_to_datetime(T0 + 6 * S + 6 * S // 10)
    assert missing["textposition"] == "middle right"
    # the axis leaves room on the right for the label
    assert fig.to_dict()["layout"]["xaxis"]["range"][1] == figures.ns_to_datetime(
        T0 + 6 * S + 6 * S * 7 // 10
    )
    plain = figures.build_timeline_figure(STEPS)
    assert not _traces(plain, "compensation never ran")
    assert "range" not in plain.to_dict()["layout"]["xaxis"]


def test_timeline_missing_compensations_in_one_lane_share_one_label() -> None:
    fig = figures.build_timeline_figure(
        STEPS, never_ran=[("reserve", "release"), ("reserve", "unlock")]
    )
    (missing,) = _traces(fig, "compensation never ran")
    assert list(missing["y"]) == [0]
    assert list(missing["text"]) == ["release, unlock never ran"]
    assert "release should have undone reserve" in missing["hovertemplate"][0]
    assert "unlock should have undone reserve" in missing["hovertemplate"][0]


def test_timeline_marks_a_missing_compensation_of_an_event() -> None:
    # choreographed: PaymentCharged is an event billing published, PaymentRefunded never came
    steps = [
        step(0, "OrderPlaced", "checkout", 0, 0, step_type="event"),
        step(1, "InventoryReserved", "stock", 1, 1, step_type="event"),
        step(2, "PaymentCharged", "billing", 2, 2, step_type="event"),
        step(3, "ShippingFailed", "delivery", 3, 3, step_type="event", outcome="failed"),
    ]
    fig = figures.build_timeline_figure(steps, never_ran=[("PaymentCharged", "PaymentRefunded")])
    (missing,) = _traces(fig, "compensation never ran")
    assert list(missing["y"]) == [2]  # the billing lane
    assert list(missing["text"]) == ["PaymentRefunded never ran"]


def test_timeline_lanes_say_which_service_is_only_an_event_source() -> None:
    # billing traces its consumer (service.name billing) and publishes as /shop/billing
    steps = [
        step(0, "process billing-orders", "billing", 0, 1),
        step(1, "PaymentCharged", "/shop/billing", 1, 1, step_type="event"),
        step(2, "OrderShipped", "/shop/delivery", 2, 2, step_type="event"),
    ]
    fig = figures.build_timeline_figure(steps)
    assert list(fig.to_dict()["layout"]["yaxis"]["ticktext"]) == [
        "billing",
        "/shop/billing (event source)",
        "/shop/delivery (event source)",
    ]
    assert figures.event_sources(steps) == {"/shop/billing", "/shop/delivery"}
    # a service that also ran spans is a service, whatever it published
    both = [*steps, step(3, "refund", "/shop/delivery", 3, 4)]
    assert figures.event_sources(both) == {"/shop/billing"}


def test_timeline_attempts_labelled() -> None:
    fig = figures.build_timeline_figure(STEPS)
    (attempts,) = _traces(fig, "attempts")
    assert list(attempts["text"]) == ["3 attempts"]
    assert "charge ×3" in _traces(fig, "action")[0]["text"]


def test_message_hops_from_links_and_parents() -> None:
    hops = figures.message_hops(SPANS)
    assert [(h.from_service, h.to_service) for h in hops] == [
        ("orders", "shipping"),
        ("orders", "payment"),
    ]
    assert hops[0].label == "orders.q"


def test_message_hop_through_an_event_step() -> None:
    spans = [SPANS[0]]
    events = [{"event_key": "k1", "parent_span_id": "p1", "type": "OrderPlaced", "source": "x"}]
    steps = [step(0, "OrderPlaced", "billing", 2, 2, step_type="event", records=["event:k1"])]
    (hop,) = figures.message_hops(spans, events, steps)
    assert (hop.from_service, hop.to_service, hop.to_ns) == ("orders", "billing", T0 + 2 * S)


def test_timeline_draws_one_arrow_per_hop_and_adds_lanes() -> None:
    fig = figures.build_timeline_figure(STEPS, figures.message_hops(SPANS))
    layout = fig.to_dict()["layout"]
    arrows = [a for a in layout["annotations"] if a.get("showarrow")]
    assert len(arrows) == 2
    assert "orders" in layout["yaxis"]["ticktext"]


def test_timeline_stalled_wait() -> None:
    steps = [step(0, "reserve", "inventory", 0, 1)]
    fig = figures.build_timeline_figure(
        steps,
        now_ns=T0 + 3600 * S,
        waiting_since_ns=T0 + S,
        waiting_for="charge",
        waiting_service="inventory",
    )
    (wait,) = _traces(fig, "waiting")
    assert wait["text"][0].startswith("waiting since 2023-11-14 22:13:21Z (59m 59s) for charge")


def test_timeline_running_step_runs_to_now() -> None:
    steps = [step(0, "reserve", "inventory", 0, 0, outcome="running")]
    fig = figures.build_timeline_figure(steps, now_ns=T0 + 10 * S)
    (running,) = _traces(fig, "running")
    assert running["x"][0] == pytest.approx(10_000)


def test_timeline_5000_steps_drops_labels_not_bars() -> None:
    many = [step(i, f"s{i}", f"svc{i % 7}", i, i + 1) for i in range(5000)]
    fig = figures.build_timeline_figure(many)
    (action,) = _traces(fig, "action")
    assert len(action["x"]) == 5000 and action.get("text") is None
    assert fig.to_dict()["layout"]["height"] <= 900


def test_flow_layers_and_overlay() -> None:
    flow = {
        "nodes": [
            {"name": "a", "step_type": "action", "count": 10, "failed": 0, "median_ns": S},
            {"name": "b", "step_type": "action", "count": 10, "failed": 5, "median_ns": S},
            {
                "name": "undo_a",
                "step_type": "compensation",
                "count": 5,
                "failed": 0,
                "median_ns": S,
            },
        ],
        "edges": [
            {"source": "a", "target": "b", "count": 10},
            {"source": "b", "target": "undo_a", "count": 5},
            {"source": "b", "target": "a", "count": 1},
        ],
    }
    assert figures.flow_layers(["a", "b", "undo_a"], [("a", "b"), ("b", "undo_a"), ("b", "a")]) == {
        "a": 0,
        "b": 1,
        "undo_a": 2,
    }
    expected = [
        {"name": "a", "compensation": "undo_a"},
        {"name": "b", "compensation": ""},
        {"name": "c", "compensation": ""},
    ]
    fig = figures.build_flow_figure(flow, expected)
    d = fig.to_dict()
    (observed,) = [t for t in d["data"] if t.get("name") == "observed steps"]
    assert list(observed["marker"]["symbol"]) == ["circle", "circle", "diamond"]
    assert list(observed["marker"]["color"]) == [0.0, 0.5, 0.0]
    (never,) = [t for t in d["data"] if t.get("name") == "expected, never seen"]
    assert list(never["text"]) == ["c"]
    assert len([t for t in d["data"] if t.get("name") == "expected by the definitions file"]) == 3
    arrows = [a for a in d["layout"]["annotations"] if a.get("showarrow")]
    assert len(arrows) == 3


def test_flow_of_events_draws_compensating_events_as_diamonds_without_durations() -> None:
    flow = {
        "nodes": [
            {"name": "process checkout-updates", "step_type": "action", "count": 9,
             "failed": 0, "median_ns": 134_000_000, "compensation": False},
            {"name": "InventoryReserved", "step_type": "event", "count": 9, "failed": 0,
             "median_ns": None, "compensation": False},
            {"name": "InventoryReleaseFailed", "step_type": "event", "count": 2, "failed": 2,
             "median_ns": None, "compensation": True},
        ],
        "edges": [
            {"source": "process checkout-updates", "target": "InventoryReserved", "count": 9},
            {"source": "InventoryReserved", "target": "InventoryReleaseFailed", "count": 2},
        ],
    }  # fmt: skip
    d = figures.build_flow_figure(flow).to_dict()
    (observed,) = [t for t in d["data"] if t.get("name") == "observed steps"]
    assert list(observed["marker"]["symbol"]) == ["circle", "circle", "diamond"]
    assert list(observed["text"]) == [
        "process checkout-<br>updates<br>9× · 134 ms",
        "InventoryReserved<br>9×",
        "InventoryRelease<br>Failed<br>2×",
    ]
    # neighbouring columns label on opposite sides, so long names do not run together
    assert list(observed["textposition"]) == ["bottom center", "top center", "bottom center"]
    assert [c[4] for c in observed["customdata"]] == ["action", "event", "compensating event"]
    assert figures.flow_step_kind(flow["nodes"][2]) == "compensating event"


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (None, "—"),
        (500, "500 ns"),
        (2_500, "2 µs"),
        (850 * 1_000_000, "850 ms"),
        (4_200_000_000, "4.2 s"),
        (200 * S, "3m 20s"),
        (7500 * S, "2h 05m"),
        (3 * 86400 * S, "3d 0h"),
    ],
)
def test_format_duration(ns: int | None, text: str) -> None:
    assert format_duration(ns) == text


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("saga.id:order-1", "order-1"),
        ("temporal.workflow:wf-1", "wf-1"),
        ("plain", "plain"),
        ("Weird Prefix:x", "Weird Prefix:x"),
    ],
)
def test_display_key(key: str, shown: str) -> None:
    assert display_key(key) == shown


def test_shorten_keeps_both_ends() -> None:
    text = shorten("a" * 50 + "ZZ", 20)
    assert len(text) == 20 and text.endswith("ZZ") and "…" in text


def test_status_overview_figures() -> None:
    d = figures.build_status_figure({"completed": 3, "stalled": 1}).to_dict()
    assert list(d["data"][0]["y"]) == ["Stalled", "Completed"]
    tp = figures.build_throughput_figure([{"bucket_ns": T0, "started": 4, "failed": 1}]).to_dict()
    assert list(tp["data"][2]["y"]) == [25.0]
    # whole sagas on the left, a percentage on the right with ticks of its own
    assert tp["layout"]["yaxis"]["dtick"] == 1
    assert list(tp["layout"]["yaxis2"]["tickvals"]) == [0, 25, 50, 75, 100]
    assert tp["layout"]["yaxis2"]["ticksuffix"] == " %"
    busy = figures.build_throughput_figure([{"bucket_ns": T0, "started": 400, "failed": 1}])
    assert "dtick" not in busy.to_dict()["layout"]["yaxis"]  # many sagas: Plotly's own steps
    du = figures.build_duration_figure(
        [{"saga_type": "", "sagas": 1, "p50_ns": S, "p95_ns": 2 * S, "p99_ns": 3 * S}]
    ).to_dict()
    assert list(du["data"][0]["x"]) == ["(untyped)"]


def test_flow_keeps_the_most_frequent_steps() -> None:
    nodes = [
        {"name": f"s{i}", "step_type": "action", "count": 1000 - i, "failed": 0, "median_ns": S}
        for i in range(500)
    ]
    edges = [{"source": f"s{i}", "target": f"s{i + 1}", "count": 1} for i in range(499)]
    d = figures.build_flow_figure({"nodes": nodes, "edges": edges}, max_nodes=10).to_dict()
    (observed,) = [t for t in d["data"] if t.get("name") == "observed steps"]
    assert len(observed["x"]) == 10
    assert len([a for a in d["layout"]["annotations"] if a.get("showarrow")]) == 9


# The choreographed sample's learned flow: (source, target, count) and how often each step ran.
FULFILMENT_EDGES = [
    ("POST /orders", "OrderPlaced", 703),
    ("OrderPlaced", "InventoryReserved", 703),
    ("InventoryReserved", "process billing-orders", 664),
    ("process billing-orders", "PaymentCharged", 548),
    ("OrderShipped", "process checkout-updates", 413),
    ("PaymentCharged", "OrderShipped", 413),
    ("process billing-orders", "PaymentDeclined", 116),
    ("PaymentDeclined", "process checkout-updates", 113),
    ("PaymentCharged", "ShippingFailed", 104),
    ("ShippingFailed", "process checkout-updates", 72),
    ("process checkout-updates", "InventoryReleased", 70),
    ("PaymentRefunded", "InventoryReleased", 52),
    ("process checkout-updates", "process billing-returns", 48),
    ("process billing-returns", "PaymentRefunded", 41),
    ("ShippingFailed", "process billing-returns", 32),
    ("process billing-returns", "process checkout-updates", 32),
    ("process checkout-updates", "InventoryReleaseFailed", 28),
    ("process checkout-updates", "PaymentRefunded", 27),
    ("PaymentRefundFailed", "InventoryReleased", 12),
    ("process billing-returns", "PaymentRefundFailed", 7),
    ("process checkout-updates", "PaymentRefundFailed", 5),
    ("PaymentRefunded", "InventoryReleaseFailed", 4),
    ("InventoryReleased", "process checkout-updates", 3),
    ("PaymentDeclined", "InventoryReleased", 3),
]
FULFILMENT_UNDOES = {
    "InventoryReleased",
    "InventoryReleaseFailed",
    "PaymentRefunded",
    "PaymentRefundFailed",
}


def _fulfilment_flow() -> dict[str, Any]:
    names = list(dict.fromkeys(n for a, b, _ in FULFILMENT_EDGES for n in (a, b)))
    # first seen as the API lists them: a compensation may come before the step it follows
    names.insert(5, names.pop(names.index("InventoryReleased")))
    runs = {n: max(c for a, b, c in FULFILMENT_EDGES if n in (a, b)) for n in names}
    return {
        "nodes": [
            {
                "name": n,
                "step_type": "event",
                "count": runs[n],
                "failed": 0,
                "median_ns": None,
                "compensation": n in FULFILMENT_UNDOES,
            }
            for n in names
        ],
        "edges": [{"source": a, "target": b, "count": c} for a, b, c in FULFILMENT_EDGES],
    }


def test_flow_layers_follow_the_common_way_through() -> None:
    # 'undo' was first seen before 'b', but far more sagas went b -> undo than back
    layers = figures.flow_layers(
        ["a", "undo", "b"], [("a", "b"), ("b", "undo"), ("undo", "b")], [10, 5, 1]
    )
    assert layers == {"a": 0, "b": 1, "undo": 2}
    layers = figures.flow_layers(
        [n["name"] for n in _fulfilment_flow()["nodes"]],
        [(a, b) for a, b, _ in FULFILMENT_EDGES],
        [c for *_, c in FULFILMENT_EDGES],
    )
    order = sorted(layers, key=layers.__getitem__)
    assert order.index("process checkout-updates") < order.index("InventoryReleased")


def test_flow_rows_keep_the_common_path_straight_and_branches_uncrossed() -> None:
    layer = {"a": 0, "rare": 1, "main": 1, "after_main": 2, "after_rare": 2, "undo": 2}
    edges = [
        ("a", "rare", 1),
        ("a", "main", 9),
        ("main", "after_main", 9),
        ("rare", "after_rare", 1),
        ("a", "undo", 2),
    ]
    counts = {"a": 10, "rare": 1, "main": 9, "after_main": 9, "after_rare": 1, "undo": 2}
    rows = figures.flow_rows(list(layer), layer, edges, counts, lower={"undo"})
    assert rows["a"] == rows["main"] == rows["after_main"] == 0
    assert (rows["rare"], rows["after_rare"]) == (1, 1)
    assert rows["undo"] == 2  # under every step, not between them


def test_flow_edge_counts_stand_apart() -> None:
    # crossing edges between neighbouring columns meet halfway: their counts must not
    assert figures.edge_label_point((0, 0), (1, 1)) != figures.edge_label_point((0, 1), (1, 0))
    d = figures.build_flow_figure(_fulfilment_flow()).to_dict()
    labels = [(a["x"], a["y"]) for a in d["layout"]["annotations"] if a.get("text")]
    assert len(labels) == len(FULFILMENT_EDGES)
    crowded = [
        (p, q)
        for p, q in itertools.combinations(labels, 2)
        if abs(p[0] - q[0]) < 0.3 and abs(p[1] - q[1]) < 0.12
    ]
    assert not crowded, crowded
    # the names written under the first and last columns fit inside the figure
    (observed,) = [t for t in d["data"] if t.get("name") == "observed steps"]
    low, high = d["layout"]["xaxis"]["range"]
    assert min(observed["x"]) - low > 0.65 and high - max(observed["x"]) > 0.65
