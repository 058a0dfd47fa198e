"""Flow: the step graph each saga type actually follows, learned from data."""

import streamlit as st

from dashboard import data, figures, ui
from dashboard.format import format_duration, type_label

MAX_NODES = 40

st.title("Flow")
ui.sidebar()
s = data.settings()
with ui.guarded():
    ov = data.overview(s)
types = ov["types"]
if not types:
    ui.empty_store_hint(ov)
    st.stop()
wanted = st.query_params.get("type", types[0])
saga_type = st.selectbox(
    "Saga type", types, index=types.index(wanted) if wanted in types else 0, format_func=type_label
)
st.query_params["type"] = saga_type


def body() -> None:
    with ui.guarded():
        flow = data.flow(s, saga_type)
    if not flow["nodes"]:
        st.info(f"No steps recorded for {type_label(saga_type)} yet.")
        return
    rate = flow["compensated"] / flow["sagas"] if flow["sagas"] else 0
    c1, c2, c3 = st.columns(3)
    c1.metric("Sagas", f"{flow['sagas']:,}")
    c2.metric("Compensated", f"{flow['compensated']:,}", help=f"{rate:.0%} of the sagas")
    c3.metric("Distinct steps", len(flow["nodes"]))
    st.plotly_chart(figures.build_flow_figure(flow, flow.get("expected"), MAX_NODES), key="flow")
    if len(flow["nodes"]) > MAX_NODES:
        st.caption(
            f"The graph shows the {MAX_NODES} most frequent of {len(flow['nodes']):,} "
            "distinct steps; the table below lists them all."
        )
    st.caption(
        "Circles are actions and events, diamonds compensations (events that undo a step "
        "too), kept along the bottom; size is how often a step ran, colour its failure rate, "
        "the number on an arrow how often "
        "one step followed another. Durations are medians of finished runs; events are "
        "instants and have none."
        + (" Dashed grey: the flow the definitions file expects." if flow.get("expected") else "")
    )
    st.dataframe(
        [
            {
                "step": n["name"],
                "type": figures.flow_step_kind(n),
                "runs": n["count"],
                "failed": n["failed"],
                "failure rate": f"{n['failed'] / n['count']:.0%}",
                "median duration": format_duration(n["median_ns"]),
            }
            for n in flow["nodes"]
        ],
        hide_index=True,
    )


ui.live_fragment(body)
