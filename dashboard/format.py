"""Pure display helpers: durations, times, status colours and labels. No Streamlit here."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

_RULE = re.compile(r"[a-z][a-z0-9_.]*")
_DIGEST = re.compile(r"[0-9a-f]{32,}")
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

STATUS_LABELS = {
    "running": "Running",
    "stalled": "Stalled",
    "completed": "Completed",
    "failed": "Failed",
    "compensated": "Compensated",
    "compensation_missing": "Compensation missing",
    "compensation_failed": "Compensation failed",
}
# Colour-blind-friendly: problems are red/orange, healthy ends green/blue, in-flight grey.
STATUS_COLORS = {
    "running": "#7f8c8d",
    "stalled": "#e67e22",
    "completed": "#2e9d5b",
    "failed": "#8e44ad",
    "compensated": "#3478c6",
    "compensation_missing": "#d62728",
    "compensation_failed": "#a31515",
}
# Text symbols that common fonts carry: colour emoji showed as empty boxes on machines
# without an emoji font, in tables where Material icons cannot go.
STATUS_ICONS = {
    "running": "▶",
    "stalled": "‖",
    "completed": "✓",
    "failed": "✗",
    "compensated": "↩",
    "compensation_missing": "⚠",
    "compensation_failed": "‼",
}
FINDING_LABELS = {
    "stall": "Stall",
    "missing_compensation": "Missing compensation",
    "compensation_failed": "Compensation failed",
    "compensation_out_of_order": "Compensation out of order",
    "duplicate_step": "Duplicate step",
    "unexpected_compensation": "Unexpected compensation",
}
# Streamlit Markdown: material icons render everywhere, colour emoji only with an emoji font.
SEVERITY_ICONS = {
    "critical": ":red[:material/error:]",
    "warning": ":orange[:material/warning:]",
    "info": ":blue[:material/info:]",
}
STEP_COLORS = {
    "action": "#3478c6",
    "compensation": "#e67e22",
    "event": "#16a085",
    "running": "#b0b7bd",
}
FAILURE_COLOR = "#d62728"
PROBLEM_STATUSES = ("stalled", "compensation_missing", "compensation_failed", "failed")
KIND_NAMES = {
    0: "unspecified",
    1: "internal",
    2: "server",
    3: "client",
    4: "producer",
    5: "consumer",
}


def format_duration(ns: float | int | None) -> str:
    """Human duration: '850 ms', '4.2 s', '3m 20s', '2h 05m', '3d 4h'; '—' when unknown."""
    if ns is None or ns < 0:
        return "—"
    ns = int(ns)
    if ns < NS_PER_MS:
        return f"{ns / 1000:.0f} µs" if ns >= 1000 else f"{ns} ns"
    if ns < NS_PER_S:
        return f"{ns / NS_PER_MS:.0f} ms"
    seconds = ns / NS_PER_S
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def count_label(n: int, singular: str, plural: str = "") -> str:
    """'1 saga', '2 sagas', '1,024 entries': a count with its noun in the right number."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def duration_value(ns: int | None) -> timedelta | None:
    """A duration for a table column, rounded as :func:`format_duration` rounds it: a number
    the table sorts by, where the formatted text would sort '930 ms' after '1.3 s'."""
    if ns is None or ns < 0:
        return None
    step = NS_PER_MS if ns < NS_PER_S else NS_PER_S // 10 if ns < 60 * NS_PER_S else NS_PER_S
    return timedelta(microseconds=round(ns / step) * step // 1000)


def ns_to_datetime(ns: int | None) -> datetime | None:
    """UTC datetime for ns since the epoch (microsecond precision); None for 0/None."""
    if not ns:
        return None
    seconds, rem = divmod(int(ns), NS_PER_S)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rem // 1000)


def format_time(ns: int | None) -> str:
    """'2025-01-31 17:28:58Z' (UTC, to the second); '—' for 0/None."""
    dt = ns_to_datetime(ns)
    return dt.strftime("%Y-%m-%d %H:%M:%SZ") if dt else "—"


def format_clock(ns: int | None) -> str:
    """'17:28:58.123' (UTC) for compact axis labels; '—' for 0/None."""
    dt = ns_to_datetime(ns)
    return dt.strftime("%H:%M:%S.") + f"{dt.microsecond // 1000:03d}" if dt else "—"


def status_label(status: str) -> str:
    """Icon and words for a saga status; unknown statuses pass through."""
    return f"{STATUS_ICONS.get(status, '•')} {STATUS_LABELS.get(status, status or 'unknown')}"


def status_color(status: str) -> str:
    """The status' colour (grey for unknown)."""
    return STATUS_COLORS.get(status, "#7f8c8d")


def finding_label(kind: str) -> str:
    """Human name of a finding kind."""
    return FINDING_LABELS.get(kind, kind.replace("_", " ").capitalize())


def type_label(saga_type: str) -> str:
    """A saga type for display; sagas nobody named show as '(untyped)'."""
    return saga_type or "(untyped)"


def shorten(text: str, limit: int = 60) -> str:
    """Cut long names in the middle so both ends stay recognisable."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "…" + text[-(limit - 1 - head) :]


def display_key(saga_key: str) -> str:
    """A saga key without the identity-rule prefix ('saga.id:order-1' -> 'order-1')."""
    prefix, sep, rest = saga_key.partition(":")
    return rest if sep and rest and _RULE.fullmatch(prefix) else saga_key


def duration_ns(start_ns: int, end_ns: int, now_ns: int = 0) -> int | None:
    """Elapsed ns of something that started at ``start_ns``; open ones run to ``now_ns``."""
    if not start_ns:
        return None
    end = end_ns or now_ns
    return end - start_ns if end else None


OPEN_STATUSES = ("running", "stalled")


def saga_duration_ns(saga: Mapping[str, Any], now_ns: int) -> int | None:
    """How long a saga took, or has taken so far: a running or stalled one runs to ``now_ns``.

    A saga that ended without a recorded end (e.g. no root span) lasted to its last record.
    """
    start, end = int(saga.get("started_ns") or 0), int(saga.get("ended_ns") or 0)
    if not end and saga.get("status") not in OPEN_STATUSES:
        end = int(saga.get("last_progress_ns") or 0)
    return duration_ns(start, end, max(now_ns, int(saga.get("last_progress_ns") or 0)))


def audit_details(details: Mapping[str, Any], limit: int = 200) -> str:
    """An audit entry's details on one line: 'format: json · sagas: 5 · signed · digest: 4499…'.

    Nested objects (a report's scope) are flattened, empty values and raw ``*_ns`` numbers are
    left out, and ids and digests come last, cut to their first 12 characters.
    """
    return shorten(" · ".join(_detail_parts(details)), limit)


def _detail_parts(details: Mapping[str, Any]) -> list[str]:
    parts, digests = [], []
    for key, value in details.items():
        name = key.replace("_", " ")
        if isinstance(value, Mapping):
            parts += _detail_parts(value)
        elif value is True:
            parts.append(name)
        elif value is None or value is False or value in ("", [], {}) or key.endswith("_ns"):
            continue
        elif isinstance(value, str) and _DIGEST.fullmatch(value):
            digests.append(f"{name}: {value[:12]}…")
        else:
            parts.append(f"{name}: {value}")
    return parts + digests


def service_label(name: str, event_sources: Collection[str]) -> str:
    """A service as listed: a name known only as a CloudEvents ``source`` says so.

    Spans name their service with OTEL ``service.name`` (``billing``); events name their
    ``source`` (``/shop/billing``). Nothing in the records says the two are one service, so
    both are kept, and the label tells which is which.
    """
    return f"{name} (event source)" if name in event_sources else name
