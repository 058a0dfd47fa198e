"""Small Streamlit pieces shared by the pages: errors, links, badges, the live toggle."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import streamlit as st

from collector.client import SourceError
from dashboard import data
from dashboard.format import (
    STATUS_LABELS,
    count_label,
    display_key,
    format_duration,
    shorten,
    status_label,
)

REFRESH_SECONDS = 10
_BADGE = {
    "completed": "green",
    "compensated": "blue",
    "running": "gray",
    "stalled": "orange",
    "failed": "violet",
    "compensation_missing": "red",
    "compensation_failed": "red",
}
_BADGE_ICON = {
    "completed": ":material/check_circle:",
    "compensated": ":material/undo:",
    "running": ":material/hourglass_top:",
    "stalled": ":material/pause_circle:",
    "failed": ":material/cancel:",
    "compensation_missing": ":material/warning:",
    "compensation_failed": ":material/dangerous:",
}
SAGA_PAGE = "views/saga.py"
SAGAS_PAGE = "views/sagas.py"


@contextmanager
def guarded() -> Iterator[None]:
    """Turn a failing source into a clear message instead of a traceback."""
    try:
        yield
    except SourceError as exc:
        s = data.settings()
        st.error(f"**Cannot read saga data.** {exc}", icon=":material/cloud_off:")
        if s.collector:
            st.caption(
                f"Is the collector running? Start it with `sagalens collector` or "
                f"`sagalens up`, or browse a copied file offline with "
                f"`sagalens dashboard --db PATH`. Expected at {s.collector}."
            )
        st.stop()


def prepared_download(
    prepare_label: str,
    label: str,
    build: Callable[[], tuple[bytes, dict[str, Any]]],
    *,
    key: str,
    scope: object,
    file_name: str,
    mime: str,
    help_text: str,
) -> None:
    """A report made on a 'Prepare' click, then offered for download; a failure says why.

    The report is built during the script run rather than in a download button's callable:
    a callable runs outside the run, where its failure could not be shown on the page (the
    button only flashed a generic note). ``build`` returns the file and the details the audit
    log records once it is downloaded. A change of ``scope`` (filters, format) drops a
    prepared file, and so does its download: the next one is made afresh.
    """
    prepared = st.session_state.get(key)
    if prepared is not None and prepared["scope"] != scope:
        prepared = None
        del st.session_state[key]
    if prepared is None:
        slot = st.empty()  # the button gives way to the download once the file is made
        if not slot.button(
            prepare_label,
            key=f"{key}_prepare",
            icon=":material/description:",
            help=help_text,
        ):
            return
        try:
            with st.spinner("Preparing the report…"):
                blob, details = build()
        except Exception as exc:  # any failure is told on the page, not lost in a log
            logging.getLogger(__name__).exception("%s failed", label)
            st.error(f"**The report could not be made.** {exc}", icon=":material/error:")
            return
        prepared = {"scope": scope, "blob": blob, "details": details}
        st.session_state[key] = prepared
        slot.empty()
    with guarded():
        source = data.source()
    made: bytes = prepared["blob"]
    details = prepared["details"]

    def fetched() -> bytes:
        # Recorded when the browser fetches the file, on the server: a rerun the click asks
        # for may never come (the tab closed at once), and the audit log must not miss it.
        data.record_export(source, details)
        return made

    st.download_button(
        label,
        fetched,
        file_name=file_name,
        mime=mime,
        key=f"{key}_download",
        icon=":material/download:",
        help=help_text,
        on_click=_downloaded,
        args=(key,),
    )


def _downloaded(key: str) -> None:
    st.session_state.pop(key, None)  # the next download is made afresh


def sidebar() -> None:
    """Source description and the live auto-refresh switch."""
    s = data.settings()
    with st.sidebar:
        st.caption(f"Reading {data.describe()}")
        if s.live:
            st.toggle(
                "Auto-refresh",
                value=True,
                key="live_refresh",
                help=f"Reload the data every {REFRESH_SECONDS} s; filters stay as they are.",
            )
        if st.button("Reload now", icon=":material/refresh:"):
            data.clear()


def refresh_every() -> int | None:
    """Seconds between automatic reruns of the page body, None when off."""
    if data.settings().live and st.session_state.get("live_refresh", True):
        return REFRESH_SECONDS
    return None


def live_fragment(body: Callable[[], None]) -> None:
    """Run ``body`` as a fragment that refreshes itself in live mode."""
    st.fragment(body, run_every=refresh_every())()


def empty_store_hint(overview: dict[str, Any] | None = None) -> None:
    """What to do when nothing has arrived yet; ``overview`` names the collector's ports."""
    s = data.settings()
    if s.collector:
        host = urlsplit(s.collector).hostname or "127.0.0.1"
        grpc_port = ((overview or {}).get("ingest") or {}).get("grpc_port")
        grpc = f"{host}:{grpc_port}" if grpc_port else "the collector's OTLP/gRPC port"
        st.info(
            f"**No sagas yet** — point your OTLP exporter at {s.collector} "
            f"(HTTP, `/v1/traces`) or {grpc} (gRPC), or post CloudEvents to "
            f"{s.collector}/v1/events. Spans with `saga.id` / `saga.step` attributes "
            "show up here within a second.",
            icon=":material/inbox:",
        )
    else:
        st.info(
            f"**No sagas in {s.db}.** Import records with `sagalens import FILE --db "
            f"{s.db}` or run a collector on it.",
            icon=":material/inbox:",
        )


def tap_notice(taps: list[dict[str, Any]] | None) -> None:
    """Say which broker taps are not consuming (their events are missing meanwhile), and
    what the others brought in."""
    consuming = []
    for tap in taps or []:
        if tap.get("state") == "connected":
            consuming.append(
                f"{tap['name']} ({tap['kind']}): {count_label(int(tap['messages']), 'message')}"
                + (f", {tap['rejected']:,} rejected" if tap.get("rejected") else "")
            )
            continue
        what = "has not connected yet" if tap.get("state") == "connecting" else "lost its broker"
        st.warning(
            f"**Broker tap {tap['name']} {what}** ({tap['kind']}, {tap['url']}): "
            f"{tap.get('last_error') or 'no reason given'}. The events it would bring in are "
            "missing until it connects; the collector keeps retrying.",
            icon=":material/link_off:",
        )
    if consuming:
        st.caption(":material/hub: Broker taps consuming: " + "; ".join(consuming) + ".")


def analysis_notice(analysis: dict[str, Any] | None) -> None:
    """Say when stored traces wait for analysis: recent sagas may be missing or partial."""
    analysis = analysis or {}
    waiting = int(analysis.get("traces_waiting", 0))
    if not waiting:
        return
    behind_s = float(analysis.get("behind_s", 0.0))
    text = f"{count_label(waiting, 'stored trace')} not analysed yet"
    reason = str(analysis.get("reanalysis", ""))
    if reason:
        st.info(
            f"**Analysing the stored sagas again**: {reason}. {text}; until they are, "
            "their sagas show the earlier analysis.",
            icon=":material/autorenew:",
        )
        return
    if behind_s >= 10:
        st.warning(
            f"**Analysis is behind ingest**: {text}, spanning "
            f"{format_duration(behind_s * 1e9)} of ingest. Recent sagas may be missing or "
            "incomplete; the analysis catches up as ingest eases.",
            icon=":material/hourglass_top:",
        )
    else:
        st.caption(f":material/hourglass_top: {text}.")


def badge(status: str) -> None:
    """A coloured status badge."""
    st.badge(
        STATUS_LABELS.get(status, status),
        icon=_BADGE_ICON.get(status),
        color=_BADGE.get(status, "gray"),  # type: ignore[arg-type]
    )


def saga_link(saga: dict[str, Any], label: str = "") -> None:
    """A same-tab link to a saga's detail page."""
    text = (
        label
        or f"{status_label(saga.get('status', ''))} · {shorten(display_key(saga['saga_key']), 60)}"
    )
    st.page_link(SAGA_PAGE, label=text, query_params={"key": saga["saga_key"]})


def saga_url(key: str) -> str:
    """Relative URL of a saga's detail page (for table link columns)."""
    from urllib.parse import quote

    return f"./saga?key={quote(key, safe='')}"
