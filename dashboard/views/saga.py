"""Saga detail: one story across traces and services, what failed and what was never undone."""

import time
from typing import Any

import streamlit as st

from dashboard import data, figures, ui
from dashboard.export import MIME, export_saga_zip, report_file_name
from dashboard.format import (
    KIND_NAMES,
    SEVERITY_ICONS,
    display_key,
    finding_label,
    format_duration,
    format_time,
    shorten,
    type_label,
)

RAW_LIMIT = 50  # raw records rendered as expanders; the rest are summarised

ui.sidebar()
s = data.settings()
key = st.query_params.get("key", "")
if not key:
    st.title("Saga detail")
    st.info("Pick a saga from the list, or enter its key.")
    entered = st.text_input("Saga key", placeholder="saga.id:order-42")
    if entered:
        st.query_params["key"] = entered.strip()
        st.rerun()
    st.page_link(ui.SAGAS_PAGE, label="Browse sagas →")
    st.stop()

st.title(shorten(display_key(key), 80))
st.caption(f"`{shorten(key, 160)}`")


def header(saga: dict[str, Any], now_ns: int) -> None:
    ui.badge(saga["status"])
    st.markdown(saga["explanation"] or "")
    end = saga["ended_ns"] or saga["last_progress_ns"]
    st.caption(
        f"**{shorten(type_label(saga['saga_type']), 60)}** · started "
        f"{format_time(saga['started_ns'])} · services: "
        f"{shorten(', '.join(saga['services']), 200)}"
    )
    cols = st.columns(4)
    cols[0].metric("Duration", format_duration(end - saga["started_ns"]))
    cols[1].metric("Steps", f"{saga['step_count']:,}")
    cols[2].metric("Services · traces", f"{len(saga['services'])} · {len(saga['trace_ids'])}")
    cols[3].metric("Open findings", len(saga["findings"]))
    if saga["status"] in ("stalled", "running"):
        waited = format_duration(now_ns - saga["last_progress_ns"])
        text = (
            f"**Waiting since {format_time(saga['last_progress_ns'])}** ({waited}) "
            f"for {saga['waiting_for'] or 'the next step'}."
        )
        (st.warning if saga["status"] == "stalled" else st.info)(
            text, icon=":material/hourglass_top:"
        )


def timeline(saga: dict[str, Any], now_ns: int) -> None:
    steps = saga["steps"]
    if not steps:
        st.info("This saga has records but no recognisable steps yet; see the raw records below.")
        return
    open_wait = saga["status"] in ("stalled", "running")
    fig = figures.build_timeline_figure(
        steps,
        figures.message_hops(saga["spans"], saga["events"], steps),
        now_ns=now_ns,
        waiting_since_ns=saga["last_progress_ns"] if open_wait else 0,
        waiting_for=saga["waiting_for"],
        waiting_service=steps[-1]["service"],
    )
    st.plotly_chart(fig, key="timeline")


def findings(saga: dict[str, Any]) -> None:
    if not saga["findings"]:
        st.success("No findings: every completed step that needed undoing was undone.")
    for f in saga["findings"]:
        icon = SEVERITY_ICONS.get(f["severity"], "•")
        st.markdown(
            f"{icon} **{finding_label(f['kind'])}**"
            + (f" — step `{f['step']}`" if f["step"] else "")
        )
        st.markdown(f["explanation"])
        with st.expander("Evidence and details"):
            st.json(
                {
                    "evidence": f["evidence"],
                    "details": f["details"],
                    "detected": format_time(f["detected_ns"]),
                },
                expanded=False,
            )


def records(saga: dict[str, Any]) -> None:
    spans, events, logs = saga["spans"], saga["events"], saga["logs"]
    st.caption(
        f"{len(spans):,} spans · {len(events):,} events · {len(logs):,} logs"
        + (
            f" (showing the first {RAW_LIMIT} of each)"
            if max(len(spans), len(events), len(logs)) > RAW_LIMIT
            else ""
        )
    )
    for sp in spans[:RAW_LIMIT]:
        title = (
            f"{sp['service_name']} · {shorten(sp['name'], 60)} · "
            f"{KIND_NAMES.get(sp['kind'], sp['kind'])} · "
            f"{format_duration(sp['end_ns'] - sp['start_ns'])}"
            + (" · ❌ error" if sp["status_code"] == 2 else "")
        )
        with st.expander(title):
            st.json(sp, expanded=False)
    for ev in events[:RAW_LIMIT]:
        with st.expander(f"event · {ev['type']} · {ev['source']}"):
            st.json(ev, expanded=False)
    for lg in logs[:RAW_LIMIT]:
        with st.expander(f"log · {lg['severity_text']} · {shorten(str(lg['body']), 60)}"):
            st.json(lg, expanded=False)


def body() -> None:
    with ui.guarded():
        saga = data.get_saga(s, key)
    if saga is None:
        st.warning(
            f"No saga with key `{shorten(key, 120)}` (yet). Keys look like "
            "`saga.id:order-42`; search the list instead."
        )
        st.page_link(ui.SAGAS_PAGE, label="Search sagas →", query_params={"q": display_key(key)})
        return
    now_ns = time.time_ns()
    header(saga, now_ns)
    timeline(saga, now_ns)
    st.subheader("Steps")
    st.dataframe(
        [
            {
                "#": x["seq"],
                "step": x["name"],
                "type": x["step_type"],
                "service": x["service"],
                "outcome": x["outcome"],
                "attempts": x["attempts"],
                "started": format_time(x["start_ns"]),
                "duration": format_duration((x["end_ns"] or now_ns) - x["start_ns"]),
                "undoes": x["compensates"],
                "error": x["error"],
            }
            for x in saga["steps"]
        ],
        hide_index=True,
    )
    st.subheader(f"Findings ({len(saga['findings'])})")
    findings(saga)
    st.subheader("Raw records")
    records(saga)


body_fragment = st.fragment(body, run_every=ui.refresh_every())
body_fragment()

st.subheader("Audit report")
fmt = st.selectbox("Format", list(MIME), format_func=str.upper, key="report_fmt")


def _report() -> bytes:
    saga = data.get_saga(s, key)
    return export_saga_zip(
        saga or {"saga_key": key}, fmt, now_ns=time.time_ns(), source=data.describe()
    )


st.download_button(
    "Export audit report for this saga",
    _report,
    file_name=report_file_name(key, fmt) + ".zip",
    mime="application/zip",
    icon="📄",
    help="The report and its manifest; check it with `sagalens verify`.",
)
