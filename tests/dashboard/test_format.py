"""Pure display helpers: audit details, counted nouns, durations."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.format import audit_details, count_label

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
