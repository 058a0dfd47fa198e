"""Redaction rules: tables of inputs and what survives, and that every export applies them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dashboard.report import RedactionRules, ReportError
from dashboard.report.redaction import DEFAULT_PATTERNS
from tests.dashboard.reportdata import export

DEFAULTS = RedactionRules.defaults()
EMAIL_ONLY = RedactionRules(patterns=(("email", DEFAULT_PATTERNS["email"]),))
ATTRS = RedactionRules(attributes=("card.number", "user.email"))


@pytest.mark.parametrize(
    ("rules", "value", "expected"),
    [
        (DEFAULTS, "card 4111 1111 1111 1111 declined", "card [REDACTED:card] declined"),
        (DEFAULTS, "card 4111-1111-1111-1111", "card [REDACTED:card]"),
        (DEFAULTS, "pan 4111111111111111!", "pan [REDACTED:card]!"),
        (DEFAULTS, "order 42 for 3 items", "order 42 for 3 items"),
        (DEFAULTS, "phone 555 1234", "phone 555 1234"),
        (DEFAULTS, "mail alice@example.com now", "mail [REDACTED:email] now"),
        (DEFAULTS, "a.b+c@mail.example.org", "[REDACTED:email]"),
        (EMAIL_ONLY, "4111 1111 1111 1111", "4111 1111 1111 1111"),
        (ATTRS, "card.number=4111", "card.number=[REDACTED]"),
        (ATTRS, "user.email=bob", "user.email=[REDACTED]"),
        (ATTRS, "order.id=42", "order.id=42"),
        (ATTRS, {"card.number": "4111", "amount": 12}, {"card.number": "[REDACTED]", "amount": 12}),
        (ATTRS, {"details": {"user.email": "x@y.z"}}, {"details": {"user.email": "[REDACTED]"}}),
        (ATTRS, ["card.number=1", "order.id=2"], ["card.number=[REDACTED]", "order.id=2"]),
        (DEFAULTS, {"trace_ids": ["4111111111111111"]}, {"trace_ids": ["4111111111111111"]}),
        (DEFAULTS, {"started_ns": 1767225600000000000}, {"started_ns": 1767225600000000000}),
        (RedactionRules.disabled(), "alice@example.com", "alice@example.com"),
    ],
)
def test_redact(rules: RedactionRules, value: Any, expected: Any) -> None:
    assert rules.redact(value) == expected


def test_redact_counts_what_it_masked() -> None:
    counts: Counter[str] = Counter()
    DEFAULTS.redact({"error": "a@b.io and c@d.io", "card.number": "1"}, counts)
    assert counts == {"pattern:email": 2, "attribute:card.number": 1}


@pytest.mark.parametrize(
    ("config", "attributes", "patterns"),
    [
        (
            {"redaction": {"attributes": ["card.number"], "patterns": {"iban": r"\bDE\d{20}\b"}}},
            ("card.number",),
            {"iban": r"\bDE\d{20}\b"},
        ),
        ({"attributes": ["user.email"]}, ("user.email",), {}),
        ({}, (), {}),
        (
            {"defaults": True, "patterns": {"email": "x"}},
            DEFAULTS.attributes,
            {**DEFAULT_PATTERNS, "email": "x"},
        ),
    ],
)
def test_from_dict(config: dict, attributes: tuple[str, ...], patterns: dict[str, str]) -> None:
    rules = RedactionRules.from_dict(config)
    assert rules.attributes == attributes
    assert dict(rules.patterns) == patterns


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"patterns": {"bad": "("}}, "not a valid regex"),
        ({"attributes": "card.number"}, "list of attribute names"),
        ({"patterns": ["x"]}, "map a name"),
    ],
)
def test_from_dict_rejects_bad_config(config: dict, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        RedactionRules.from_dict(config)


@pytest.mark.parametrize("fmt", ["json", "csv", "ocel"])
def test_default_redaction_applies_to_every_export(tmp_path: Path, fmt: str) -> None:
    result = export(tmp_path, fmt)
    text = result.files[0].read_text(encoding="utf-8")
    assert "4111 1111 1111 1111" not in text
    assert "alice@example.com" not in text
    assert "[REDACTED:card]" in text
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    assert manifest["report"]["redaction"]["patterns"]["card"] == DEFAULT_PATTERNS["card"]
    assert manifest["totals"]["redactions"]["pattern:card"] > 0


def test_disabled_redaction_is_stated_and_keeps_values(tmp_path: Path) -> None:
    result = export(tmp_path, "json", redaction=RedactionRules.disabled())
    lines = result.files[0].read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["data"]["redaction"] == {"attributes": [], "patterns": {}}
    assert "4111 1111 1111 1111" in "\n".join(lines)
