"""Overview: status counts, open problems, throughput, durations, worst offenders."""

import streamlit as st

from dashboard import data, figures, ui
from dashboard.format import PROBLEM_STATUSES, count_label, format_duration, type_label

st.title("Overview")
ui.sidebar()

# Each tile counts one status, as the status chart does, so the two always agree (an
# acknowledged finding does not change a saga's status).
TILES = [  # (label, status, help)
    ("Running", "running", "Sagas still making progress"),
    ("Stalled", "stalled", "No progress for longer than the stall threshold"),
    (
        "Never undone",
        "compensation_missing",
        "Failed sagas with a completed step that was never compensated",
    ),
    ("Undo failed", "compensation_failed", "A compensation step itself failed"),
]


def body() -> None:
    s = data.settings()
    with ui.guarded():
        ov = data.overview(s)
    counts, status = ov["counts"], ov["status"]
    ui.analysis_notice(ov.get("analysis"))
    ui.tap_notice(ov.get("taps"))
    if not counts["sagas"]:
        ui.empty_store_hint(ov)
        st.caption(
            f"Stored so far: {counts['spans']} spans, {counts['events']} events, "
            f"{counts['logs']} logs, {counts['rejections']} rejected records."
        )
        return
    cols = st.columns(len(TILES) + 1)
    cols[0].metric("Sagas", f"{counts['sagas']:,}")
    cols[0].page_link(ui.SAGAS_PAGE, label="View →")
    for col, (label, saga_status, help_text) in zip(cols[1:], TILES, strict=True):
        col.metric(label, f"{status.get(saga_status, 0):,}", help=help_text)
        col.page_link(ui.SAGAS_PAGE, label="View →", query_params={"status": saga_status})
    left, right = st.columns(2)
    left.plotly_chart(figures.build_status_figure(status), key="status")
    right.plotly_chart(figures.build_throughput_figure(ov["throughput"]), key="throughput")
    if ov["durations"]:
        st.plotly_chart(figures.build_duration_figure(ov["durations"]), key="durations")
        st.dataframe(
            [
                {
                    "saga type": type_label(d["saga_type"]),
                    "finished sagas": d["sagas"],
                    "p50": format_duration(d["p50_ns"]),
                    "p95": format_duration(d["p95_ns"]),
                    "p99": format_duration(d["p99_ns"]),
                }
                for d in ov["durations"]
            ],
            hide_index=True,
        )
    st.subheader("Worst offenders")
    with ui.guarded():
        worst = data.list_sagas(
            s,
            (
                ("status", ",".join(PROBLEM_STATUSES)),
                ("sort", "last_progress"),
                ("order", "asc"),
                ("limit", "10"),
            ),
        )
    if not worst["sagas"]:
        st.success("No stalled or uncompensated sagas.", icon=":material/check_circle:")
    for saga in worst["sagas"]:
        ui.saga_link(saga)
        st.caption(saga["explanation"])
    if worst["total"] > len(worst["sagas"]):
        st.page_link(
            ui.SAGAS_PAGE,
            label=f"All {count_label(worst['total'], 'problem saga')} →",
            query_params={"status": ",".join(PROBLEM_STATUSES)},
        )


ui.live_fragment(body)
