"""Pure display helpers: audit details, counted nouns, durations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dashboard.format import NS_PER_S, audit_details, count_label, duration_value, saga_duration_ns

SEC = NS_PER_S

DIGEST = "4499cce6d085560e85da795a5c99ab02a4fe09ebce7cff600b46bdd355bcf520"


@pytest.mark.parametrize(
    ("details", "text"),
    [
        ({}, ""),
        (
            {"format": "json", "out": "r.json", "data_digest": DIGEST, "sagas": 0, "signed": True},
            "format: json · out: r.json · sagas: 0 · signed · data digest: 4499cce6d085…",
        ),
        (
            {
                "format": "pdf",
                "scope": {"from": "", "from_ns": 0, "saga_key": "", "filters": {"type": "Order"}},
                "signed": False,
            },
            "format: pdf · type: Order",
        ),
        (
            {"finding_id": "752d3bb9208bbdfa13c67fe019defe8c", "kind": "stall", "note": None},
            "kind: stall · finding id: 752d3bb9208b…",
        ),
        (
            {"config_file": "", "config_sha256": DIGEST, "token_required": False},
            "config sha256: 4499cce6d085…",
        ),
        ({"note": "x" * 300}, "note: " + "x" * 126 + "…" + "x" * 67),
    ],
)
def test_audit_details(details: dict[str, Any], text: str) -> None:
    assert audit_details(details) == text


@pytest.mark.parametrize(
    ("n", "singular", "plural", "text"),
    [
        (0, "saga", "", "0 sagas"),
        (1, "saga", "", "1 saga"),
        (2, "saga", "", "2 sagas"),
        (1, "entry", "entries", "1 entry"),
        (1234, "entry", "entries", "1,234 entries"),
        (1, "open finding", "", "1 open finding"),
    ],
)
def test_count_label(n: int, singular: str, plural: str, text: str) -> None:
    assert count_label(n, singular, plural) == text


NOW = 1_000_000 * SEC


@pytest.mark.parametrize(
    ("saga", "duration"),
    [
        ({"status": "completed", "started_ns": NOW - 9 * SEC, "ended_ns": NOW - 2 * SEC}, 7),
        # open sagas run to now, however long ago their last record was
        (
            {
                "status": "stalled",
                "started_ns": NOW - 2400 * SEC,
                "last_progress_ns": NOW - 2399 * SEC,
            },
            2400,
        ),
        ({"status": "running", "started_ns": NOW - 3 * SEC, "last_progress_ns": NOW - SEC}, 3),
        # ended without a recorded end: it lasted to its last record
        ({"status": "failed", "started_ns": NOW - 60 * SEC, "last_progress_ns": NOW - 55 * SEC}, 5),
        ({"status": "running", "started_ns": 0}, None),
    ],
)
def test_saga_duration_ns(saga: dict[str, Any], duration: int | None) -> None:
    got = saga_duration_ns(saga, NOW)
    assert got == (duration * SEC if duration is not None else None)


@pytest.mark.parametrize(
    ("ns", "value"),
    [
        (930_400_000, timedelta(milliseconds=930)),
        (1_349_000_000, timedelta(seconds=1.3)),
        (2400 * SEC + 434_567, timedelta(seconds=2400)),
        (None, None),
    ],
)
def test_duration_value_rounds_like_the_text_and_sorts_as_numbers(
    ns: int | None, value: timedelta | None
) -> None:
    assert duration_value(ns) == value
    assert duration_value(930 * 10**6) < duration_value(1300 * 10**6)  # type: ignore[operator]
