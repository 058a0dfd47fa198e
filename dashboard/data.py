"""The dashboard's only door to the data: cached wrappers around a :class:`Source`.

The source comes from ``SAGALENS_COLLECTOR`` (live, through the query API) or ``SAGALENS_DB``
(a DuckDB file opened read-only); never the collector's live file directly.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import streamlit as st

from collector.client import ApiSource, Source, SourceError, open_source

DEFAULT_COLLECTOR = "http://127.0.0.1:4318"
LIVE_TTL = 5  # seconds: short, so the auto-refresh shows fresh data


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the dashboard reads from (from the environment the CLI sets)."""

    collector: str = ""
    db: str = ""
    token: str = ""

    @property
    def live(self) -> bool:
        return not self.db or bool(self.collector)


def settings() -> Settings:
    """Settings from SAGALENS_COLLECTOR / SAGALENS_DB / SAGALENS_TOKEN."""
    collector = os.environ.get("SAGALENS_COLLECTOR", "")
    db = os.environ.get("SAGALENS_DB", "")
    if not collector and not db:
        collector = DEFAULT_COLLECTOR
    return Settings(collector, db, os.environ.get("SAGALENS_TOKEN", ""))


class _Guarded:
    """A Source used by many sessions: a DuckDB connection must not be shared concurrently."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.lock = threading.Lock() if not isinstance(source, ApiSource) else None

    def call(self, name: str, *args: Any) -> Any:
        if self.lock is None:
            return getattr(self.source, name)(*args)
        with self.lock:
            return getattr(self.source, name)(*args)


@st.cache_resource(show_spinner=False)
def _source(s: Settings) -> _Guarded:
    return _Guarded(open_source(s.collector, s.db, s.token))


def source() -> _Guarded:
    """The shared source for the current settings (raises SourceError)."""
    return _source(settings())


def describe() -> str:
    """'collector http://…' or 'file …' for the sidebar."""
    s = settings()
    return f"collector {s.collector}" if s.collector else f"file {s.db} (read-only)"


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def overview(s: Settings) -> dict[str, Any]:
    """Counts, status counts, throughput, duration percentiles, types and services."""
    return dict(_source(s).call("overview"))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False, max_entries=200)
def list_sagas(s: Settings, params: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """One page of sagas for the filters in ``params`` (API query parameter names)."""
    return dict(_source(s).call("list_sagas", dict(params)))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False, max_entries=50)
def get_saga(s: Settings, key: str) -> dict[str, Any] | None:
    """A saga with steps, findings and raw records, or None."""
    found = _source(s).call("get_saga", key, True)
    return dict(found) if found is not None else None


@st.cache_data(ttl=LIVE_TTL, show_spinner=False, max_entries=50)
def list_findings(s: Settings, params: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Open findings, newest first."""
    return dict(_source(s).call("list_findings", dict(params)))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False, max_entries=50)
def flow(s: Settings, saga_type: str) -> dict[str, Any]:
    """The learned step graph of one saga type."""
    return dict(_source(s).call("flow", saga_type))


@st.cache_data(ttl=LIVE_TTL, show_spinner=False)
def audit_log(s: Settings) -> dict[str, Any]:
    """sagalens' own audit log in seq order, with whether its hash chain verifies."""
    return dict(_source(s).call("audit_log"))


def record_export(source: _Guarded, details: dict[str, Any]) -> None:
    """Append a dashboard download to the audit log (a read-only file cannot take it)."""
    try:
        source.call("record_action", "dashboard", "report.exported", details)
    except SourceError as exc:
        logging.getLogger(__name__).warning("export not recorded in the audit log: %s", exc)


def clear() -> None:
    """Forget cached answers (after the user asks for a refresh)."""
    for fn in (overview, list_sagas, get_saga, list_findings, flow, audit_log):
        fn.clear()


__all__ = [
    "Settings",
    "SourceError",
    "audit_log",
    "clear",
    "describe",
    "flow",
    "get_saga",
    "list_findings",
    "list_sagas",
    "overview",
    "settings",
    "source",
]
