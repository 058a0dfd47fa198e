"""Audit log: sagalens' own actions, newest first, whether their hash chain holds, the export."""

import time
from typing import Any

import streamlit as st

from dashboard import data, ui
from dashboard.export import export_audit_log_zip
from dashboard.format import audit_details, count_label, format_time

LIMIT = 1000

st.title("Audit log")
st.caption(
    "sagalens' own actions — report exports, configuration changes, finding acknowledgements — "
    "each entry hash-chained to the one before it."
)
ui.sidebar()
s = data.settings()


def verdict(log: dict[str, Any]) -> None:
    entries, problems = log["entries"], log["problems"]
    if not log["verified"]:
        st.error(
            f"**The audit log does not verify.** {count_label(len(problems), 'problem')} in its "
            "hash chain; "
            "entries were altered, removed or reordered after they were written:\n\n"
            + "\n".join(f"- {p}" for p in problems),
            icon=":material/gpp_bad:",
        )
    elif entries:
        st.success(
            f"**The audit log verifies.** {count_label(len(entries), 'entry', 'entries')}, "
            "intact and linked from the first "
            f"one; chain head `{entries[-1]['hash'][:16]}…`",
            icon=":material/verified_user:",
        )
    else:
        st.info("**No entries yet.** Report exports and acknowledgements appear here.")


def body() -> None:
    with ui.guarded():
        log = data.audit_log(s)
    verdict(log)
    newest = log["entries"][::-1][:LIMIT]
    if not newest:
        return
    if len(log["entries"]) > LIMIT:
        st.caption(f"Newest {LIMIT:,} of {len(log['entries']):,} entries shown.")
    st.dataframe(
        [
            {
                "#": e["seq"],
                "time": format_time(e["at_ns"]),
                "actor": e["actor"],
                "action": e["action"],
                "details": audit_details(e["details"])
                if isinstance(e["details"], dict)
                else str(e["details"]),
            }
            for e in newest
        ],
        hide_index=True,
        column_config={
            "#": st.column_config.NumberColumn(width="small", format="%d"),
            "details": st.column_config.TextColumn(width="large"),
        },
    )


ui.live_fragment(body)

st.subheader("Verifiable export")
st.caption(
    "The whole log as JSON Lines with its manifest; check it with "
    "`sagalens verify sagalens-audit-log.jsonl`. "
    + (
        "The download is itself recorded in the log."
        if s.collector
        else "The file is open read-only, so the download is not recorded in its log."
    )
)


def _export() -> tuple[bytes, dict[str, Any]]:
    return export_audit_log_zip(data.source().call("audit_log")["entries"], now_ns=time.time_ns())


ui.prepared_download(
    "Prepare audit log export",
    "Download audit log export",
    _export,
    key="audit_export",
    scope="audit-log",
    file_name="sagalens-audit-log.zip",
    mime="application/zip",
    help_text="The log file and its manifest; `sagalens verify` checks the chain from its first "
    "entry.",
)
