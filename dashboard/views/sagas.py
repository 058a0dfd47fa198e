"""Sagas: server-side filtered, sorted and paged list; filters live in the URL."""

import math
import time
from datetime import timedelta
from typing import Any

import pandas as pd
import streamlit as st

from collector.analysis.model import FINDING_KINDS, SAGA_STATUSES
from dashboard import data, ui
from dashboard.export import MIME, export_period_zip
from dashboard.format import (
    NS_PER_S,
    count_label,
    display_key,
    duration_value,
    finding_label,
    format_duration,
    format_time,
    saga_duration_ns,
    service_label,
    shorten,
    status_label,
    type_label,
)

PAGE_SIZE = 50
WINDOWS = {
    "": "any time",
    "15m": "last 15 minutes",
    "1h": "last hour",
    "24h": "last 24 hours",
    "7d": "last 7 days",
}
WINDOW_NS = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 604800}
SORTS = {
    "started": "start time",
    "last_progress": "last progress",
    "duration": "duration",
    "steps": "steps",
    "open_findings": "open findings",
    "key": "key",
    "type": "type",
}

COLUMN_ORDER = (
    "status",
    "saga",
    "open",
    "why",
    "duration",
    "started",
    "type",
    "steps",
    "open findings",
    "services",
)

st.title("Sagas")
ui.sidebar()
s = data.settings()
qp = st.query_params
with ui.guarded():
    ov = data.overview(s)


def _default(key: str, value: object) -> None:
    if key not in st.session_state:
        st.session_state[key] = value


_default("f_q", qp.get("q", ""))
_default("f_status", [v for v in qp.get("status", "").split(",") if v in SAGA_STATUSES])
_default("f_type", [v for v in qp.get_all("type") for v in v.split(",") if v in ov["types"]])
_default("f_service", qp.get("service", "") if qp.get("service", "") in ov["services"] else "")
_default("f_finding", qp.get("finding", "") if qp.get("finding", "") in FINDING_KINDS else "")
_default("f_window", qp.get("window", "") if qp.get("window", "") in WINDOWS else "")
_default("f_sort", qp.get("sort", "started") if qp.get("sort", "") in SORTS else "started")
_default("f_asc", qp.get("order", "desc") == "asc")

FILTER_DEFAULTS = {
    "f_q": "",
    "f_status": [],
    "f_type": [],
    "f_service": "",
    "f_finding": "",
    "f_window": "",
}

c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
c1.text_input("Search key or business key", key="f_q", placeholder="order-42, order.id=42 …")
c2.multiselect("Status", SAGA_STATUSES, key="f_status", format_func=status_label)
c3.multiselect("Saga type", ov["types"], key="f_type", format_func=type_label)
c4.selectbox("Time", list(WINDOWS), key="f_window", format_func=WINDOWS.__getitem__)
c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
sources = ov.get("event_sources") or []
c1.selectbox(
    "Service",
    ["", *ov["services"]],
    key="f_service",
    format_func=lambda v: service_label(v, sources) if v else "any service",
    help="Spans name their service (OTEL service.name); events only their CloudEvents "
    "source, listed as an event source.",
)
c2.selectbox(
    "Open finding",
    ["", *FINDING_KINDS],
    key="f_finding",
    format_func=lambda v: finding_label(v) if v else "any (or none)",
)
c3.selectbox("Sort by", list(SORTS), key="f_sort", format_func=SORTS.__getitem__)
c4.toggle("Oldest first", key="f_asc")

filters = {
    "q": st.session_state.f_q.strip(),
    "status": ",".join(st.session_state.f_status),
    "type": ",".join(st.session_state.f_type),
    "service": st.session_state.f_service,
    "finding": st.session_state.f_finding,
    "window": st.session_state.f_window,
    "sort": st.session_state.f_sort,
    "order": "asc" if st.session_state.f_asc else "desc",
}
if st.session_state.get("f_signature") != filters:
    st.session_state.f_signature = filters
    st.session_state.f_page = int(qp.get("page", "1")) if "f_page" not in st.session_state else 1


def _clear() -> None:
    """Every filter back to showing all sagas (the sort order stays as chosen)."""
    for name, value in FILTER_DEFAULTS.items():
        st.session_state[name] = value
    st.session_state.f_page = 1
    for name in ("q", "status", "type", "service", "finding", "window", "page", "saga"):
        if name in st.query_params:
            del st.query_params[name]


def _keep_selection(keys: list[str]) -> str:
    """The selected saga's key, its row selected among ``keys`` (the rows about to be shown).

    The table's own selection is a row number, which a refresh that brings new sagas would
    point at another saga: it is read against the keys the table showed when it was made,
    and moved to wherever that saga is now. A saga no longer listed is unselected.
    """
    state = st.session_state.get("table")
    shown = st.session_state.get("table_keys")
    if state is None or shown is None:  # the page's first run: a shared URL may name one
        key = st.query_params.get("saga", "")
    else:
        rows = state["selection"]["rows"]
        key = shown[rows[0]] if rows and rows[0] < len(shown) else ""
    if key not in keys:
        key = ""
    selected = [keys.index(key)] if key else []
    st.session_state.table = {"selection": {"rows": selected, "columns": [], "cells": []}}
    st.session_state.table_keys = keys
    if key:
        st.query_params["saga"] = key
    elif "saga" in st.query_params:
        del st.query_params["saga"]
    return key


def _duration_text(value: timedelta | None) -> str:
    # a missing duration reaches the formatter as pandas' NaT, not None
    if value is None or pd.isna(value):
        return format_duration(None)
    return format_duration(value // timedelta(microseconds=1) * 1000)


def body() -> None:
    params = {k: v for k, v in filters.items() if v and k != "window"}
    if filters["window"]:
        params["from"] = str(time.time_ns() - WINDOW_NS[filters["window"]] * NS_PER_S)
    page = max(int(st.session_state.get("f_page", 1)), 1)
    params.update(limit=str(PAGE_SIZE), offset=str((page - 1) * PAGE_SIZE))
    with ui.guarded():
        result = data.list_sagas(s, tuple(sorted(params.items())))
    rows, total = result["sagas"], result["total"]
    now_ns = time.time_ns()  # running and stalled sagas' durations run to now
    if not total:
        if ov["counts"]["sagas"]:
            st.warning("No sagas match these filters.")
            if st.button("Clear all filters", icon=":material/filter_alt_off:", on_click=_clear):
                st.rerun()  # the whole page: the filter widgets sit outside this fragment
        else:
            ui.empty_store_hint(ov)
        return
    pages = math.ceil(total / PAGE_SIZE)
    matching = f"{count_label(total, 'saga')} {'matches' if total == 1 else 'match'}"
    st.caption(
        f"{matching} · page {page} of {pages} · newest data every {ui.REFRESH_SECONDS} s"
        if ui.refresh_every()
        else matching
    )
    table = [
        {
            "status": status_label(r["status"]),
            "saga": shorten(display_key(r["saga_key"]), 60),
            "type": shorten(type_label(r["saga_type"]), 40),
            "started": format_time(r["started_ns"]),
            "duration": duration_value(saga_duration_ns(r, now_ns)),
            "steps": r["step_count"],
            "open findings": r.get("open_finding_count", r["finding_count"]),
            "services": ", ".join(service_label(x, sources) for x in r["services"] or []),
            "why": r["explanation"],
            "open": ui.saga_url(r["saga_key"]),
        }
        for r in rows
    ]
    key = _keep_selection([r["saga_key"] for r in rows])
    st.dataframe(
        # the duration column holds numbers, so sorting by it orders durations, and reads as
        # the rest of the dashboard writes them ('930 ms', '1.4 s', '2m 05s')
        pd.DataFrame(table).style.format({"duration": _duration_text}),
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="table",
        # what happened and the way to the timeline come first: the table is wider than
        # the page, and columns past its right edge went unseen
        column_order=COLUMN_ORDER,
        column_config={
            "open": st.column_config.LinkColumn("open", display_text="timeline ↗"),
            "why": st.column_config.TextColumn("why", width="medium"),
        },
    )
    if key:
        st.page_link(
            ui.SAGA_PAGE,
            label=f"Open timeline of {shorten(display_key(key), 60)} →",
            query_params={"key": key},
            icon=":material/timeline:",
        )
    if pages > 1:
        st.number_input("Page", 1, pages, key="f_page")


for name, value in filters.items():
    if (
        value
        and not (name == "sort" and value == "started")
        and not (name == "order" and value == "desc")
    ):
        st.query_params[name] = value
    elif name in st.query_params:
        del st.query_params[name]
ui.live_fragment(body)


st.subheader("Audit report")
st.caption("Every saga matching the filters above, as one tamper-evident report.")
period_fmt = st.selectbox("Format", list(MIME), format_func=str.upper, key="period_report_fmt")


def _period_report() -> tuple[bytes, dict[str, Any]]:
    scope = {k: v for k, v in filters.items() if v and k not in ("window", "sort", "order")}
    if filters["window"]:
        scope["from"] = str(time.time_ns() - WINDOW_NS[filters["window"]] * NS_PER_S)
    source = data.source()
    return export_period_zip(
        source.call("iter_sagas", scope),
        period_fmt,
        now_ns=time.time_ns(),
        source=data.describe(),
        filters=scope,
        overview=source.call("overview"),
    )


ui.prepared_download(
    "Prepare audit report for these sagas",
    "Export audit report for these sagas",
    _period_report,
    key="period_report",
    scope=({k: v for k, v in filters.items() if k not in ("sort", "order")}, period_fmt),
    file_name=f"sagas-report-{period_fmt}.zip",
    mime="application/zip",
    help_text="The report and its manifest; check it with `sagalens verify`.",
)
