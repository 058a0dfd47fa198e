"""Findings: every open finding, newest first, grouped by kind, each linking to its saga."""

from typing import Any

import streamlit as st

from dashboard import data, ui
from dashboard.format import (
    SEVERITY_ICONS,
    count_label,
    display_key,
    finding_label,
    format_time,
    shorten,
)

PER_KIND = 25
LIMIT = 1000

st.title("Findings")
ui.sidebar()
s = data.settings()


def _acknowledger() -> str:
    return str(st.session_state.get("ack_by") or "").strip()


def name_input() -> None:
    """Who acknowledges, with the reminder under it when an Acknowledge came without a name."""
    # Acknowledgements are written to the collector's hash-chained audit log with this name.
    st.text_input(
        "Acknowledge as", key="ack_by", placeholder="your name, recorded in the audit log"
    )
    if _acknowledger():
        st.session_state.ack_needs_name = False
    elif st.session_state.get("ack_needs_name"):
        st.warning(
            "Enter your name here first: every acknowledgement is recorded with who made it.",
            icon=":material/person:",
        )


def acknowledge(finding: dict[str, Any]) -> None:
    who = _acknowledger()
    if not who:
        # Said under the name input on the rerun: a callback's output lands atop the page.
        st.session_state.ack_needs_name = True
        return
    with ui.guarded():
        data.source().call("acknowledge", finding["finding_id"], who)
    data.clear()
    st.toast(f"Acknowledged {finding_label(finding['kind']).lower()} on {finding['saga_key']}")


def body() -> None:
    with ui.guarded():
        result = data.list_findings(s, (("limit", str(LIMIT)),))
    rows = result["findings"]
    if not rows:
        st.success(
            "No open findings: nothing stalled, every failure fully compensated.",
            icon=":material/check_circle:",
        )
        return
    if s.live:
        name_input()
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in rows:
        groups.setdefault(f["kind"], []).append(f)
    st.caption(
        count_label(result["total"], "open finding")
        + (f" (newest {LIMIT} shown)" if result["total"] > LIMIT else "")
    )
    for kind, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        st.subheader(f"{finding_label(kind)} ({len(items)})")
        for f in items[:PER_KIND]:
            icon = SEVERITY_ICONS.get(f["severity"], "•")
            text, action = st.columns([6, 1], vertical_alignment="center")
            with text:
                st.page_link(
                    ui.SAGA_PAGE,
                    query_params={"key": f["saga_key"]},
                    label=f"{icon} {shorten(display_key(f['saga_key']), 60)}"
                    + (f" · {f['step']}" if f["step"] else "")
                    + f" · {format_time(f['detected_ns'])}",
                )
                st.caption(f["explanation"])
            if s.live:
                with action:
                    st.button(
                        "Acknowledge", key=f"ack-{f['finding_id']}", on_click=acknowledge, args=(f,)
                    )
        if len(items) > PER_KIND:
            st.page_link(
                ui.SAGAS_PAGE,
                label=f"All sagas with {finding_label(kind).lower()} →",
                query_params={"finding": kind},
            )


ui.live_fragment(body)
