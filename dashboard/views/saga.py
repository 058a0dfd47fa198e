"""Saga detail: one story across traces and services, what failed and what was never undone."""

import time
from typing import Any

import streamlit as st

from dashboard import data, figures, ui
from dashboard.export import MIME, export_saga_zip, report_file_name
from dashboard.format import (
    KIND_NAMES,
    OPEN_STATUSES,
    SEVERITY_ICONS,
    display_key,
    finding_label,
    format_duration,
    format_time,
    saga_duration_ns,
    service_label,
    shorten,
    type_label,
)
from dashboard.report import ReportError

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
    sources = figures.event_sources(saga["steps"])
    services = ", ".join(service_label(x, sources) for x in saga["services"])
    st.caption(
        f"**{shorten(type_label(saga['saga_type']), 60)}** · started "
        f"{format_time(saga['started_ns'])} · services: {shorten(services, 240)}"
    )
    cols = st.columns(5)
    cols[0].metric(
        "Duration",
        format_duration(saga_duration_ns(saga, now_ns)),
        help="So far, for a running or stalled saga" if saga["status"] in OPEN_STATUSES else None,
    )
    cols[1].metric("Steps", f"{saga['step_count']:,}")
    # A CloudEvents source is not a service: nothing says '/shop/billing' and 'billing' are one
    # service, so the sources known only from events are counted apart.
    only_events = len(sources & set(saga["services"]))
    named = len(saga["services"]) - only_events
    if only_events:
        cols[2].metric(
            "Services · event sources",
            f"{named} · {only_events}",
            help="Services that sent spans (OTEL service.name), and CloudEvents sources no "
            "span names, which may be the same services seen from their events",
        )
    else:
        cols[2].metric("Services", named, help="Services that sent spans (OTEL service.name)")
    cols[3].metric("Traces", f"{len(saga['trace_ids']):,}")
    cols[4].metric(
        "Open findings",
        sum(1 for f in saga["findings"] if not f.get("acknowledged_ns")),
        help="Findings nobody has acknowledged yet",
    )
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
        never_ran=[
            (f["step"], str((f.get("details") or {}).get("expected") or "its compensation"))
            for f in saga["findings"]
            if f["kind"] == "missing_compensation"
        ],
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
        if f.get("acknowledged_ns"):
            st.caption(
                f":material/check: Acknowledged by {f.get('acknowledged_by') or 'someone'} "
                f"at {format_time(f['acknowledged_ns'])}: no longer open."
            )
        with st.expander("Evidence and details"):
            st.json(
                {
                    "evidence": f["evidence"],
                    "details": f["details"],
                    "detected": format_time(f["detected_ns"]),
                },
                expanded=False,
            )


def _record_table(kind: str, rows: list[dict[str, Any]], raw: list[dict[str, Any]]) -> None:
    """One table per record kind; the selected row's full record is shown under it."""
    if not raw:
        st.caption(f"No {kind} in this saga.")
        return
    picked = st.dataframe(
        rows,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"raw_{kind}",
        height=min(36 + 35 * len(rows), 320),
    )
    chosen = picked.selection.rows if picked is not None else []
    if chosen:
        st.json(raw[chosen[0]], expanded=True)
    else:
        st.caption("Select a row to see the whole record with every attribute.")


def records(saga: dict[str, Any]) -> None:
    spans, events, logs = saga["spans"], saga["events"], saga["logs"]
    tabs = st.tabs(
        [f"Spans ({len(spans):,})", f"Events ({len(events):,})", f"Logs ({len(logs):,})"]
    )
    with tabs[0]:
        _record_table(
            "spans",
            [
                {
                    "service": sp["service_name"],
                    "span": sp["name"],
                    "kind": KIND_NAMES.get(sp["kind"], sp["kind"]),
                    "started": format_time(sp["start_ns"]),
                    "duration": format_duration(sp["end_ns"] - sp["start_ns"]),
                    "status": "error" if sp["status_code"] == 2 else "",
                    "trace": sp["trace_id"],
                }
                for sp in spans
            ],
            spans,
        )
    with tabs[1]:
        _record_table(
            "events",
            [
                {
                    "type": ev["type"],
                    "source": ev["source"],
                    "time": format_time(ev.get("time_ns")),
                    "subject": ev.get("subject") or "",
                    "via": ev.get("transport") or "",
                }
                for ev in events
            ],
            events,
        )
    with tabs[2]:
        _record_table(
            "logs",
            [
                {
                    "time": format_time(lg.get("time_ns")),
                    "severity": lg["severity_text"],
                    "service": lg.get("service_name") or "",
                    "body": shorten(str(lg["body"]), 120),
                }
                for lg in logs
            ],
            logs,
        )


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
    sources = figures.event_sources(saga["steps"])
    st.dataframe(
        [
            {
                "#": x["seq"],
                "step": x["name"],
                "type": x["step_type"],
                "service": service_label(x["service"], sources),
                "outcome": x["outcome"],
                "attempts": x["attempts"],
                "started": format_time(x["start_ns"]),
                # an event is an instant: "0 ns" would read as a measured duration
                "duration": "—"
                if x["step_type"] == "event"
                else format_duration((x["end_ns"] or now_ns) - x["start_ns"]),
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
with ui.guarded():
    exists = data.get_saga(s, key) is not None
if not exists:
    # a report on a saga that is not stored would be empty: say so instead of offering it
    st.info(
        f"No audit report to export: there is no saga with key `{shorten(key, 120)}` "
        "(yet). Once it is stored, its report can be exported here."
    )
    st.stop()
fmt = st.selectbox("Format", list(MIME), format_func=str.upper, key="report_fmt")


def _report() -> tuple[bytes, dict[str, Any]]:
    saga = data.get_saga(s, key)
    if saga is None:
        raise ReportError(f"no saga with key {key!r}")
    return export_saga_zip(saga, fmt, now_ns=time.time_ns(), source=data.describe())


ui.prepared_download(
    "Prepare audit report for this saga",
    "Export audit report for this saga",
    _report,
    key="saga_report",
    scope=(key, fmt),
    file_name=report_file_name(key, fmt) + ".zip",
    mime="application/zip",
    help_text="The report and its manifest; check it with `sagalens verify`.",
)
