"""Redaction of personal and card data before anything is written.

Rules name attributes (whose values are always masked) and value patterns (masked wherever they
appear in a string). A config file section looks like::

    redaction:
      attributes: [card.number, user.email]
      patterns:
        card: '\\b\\d(?:[ -]?\\d){12,18}\\b'
        email: '[\\w.+-]+@[\\w-]+\\.[\\w.-]+'
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ReportError

MASK = "[REDACTED]"

DEFAULT_ATTRIBUTES: tuple[str, ...] = (
    "card.number",
    "card.pan",
    "card.cvv",
    "user.email",
    "customer.email",
    "password",
)
DEFAULT_PATTERNS: dict[str, str] = {
    # 13-19 digits with optional single spaces or dashes between them; unlike the common
    # ``(?:\d[ -]?){13,19}`` it does not swallow the separator after the number.
    "card": r"\b\d(?:[ -]?\d){12,18}\b",
    "email": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
}

# Identifiers the verifier and the process-mining tools join on; masking a digit run inside a
# trace id would break those joins while protecting nothing.
_STRUCTURAL_KEYS = frozenset({"trace_ids", "records", "evidence", "finding_id"})


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """Attribute names whose values are masked and named regex patterns masked in any string."""

    attributes: tuple[str, ...] = ()
    patterns: tuple[tuple[str, str], ...] = ()
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(
        default=(), init=False, repr=False, compare=False
    )
    _any: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _attrs: frozenset[str] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = []
        for name, regex in self.patterns:
            try:
                compiled.append((name, re.compile(regex)))
            except re.error as exc:
                raise ReportError(
                    f"redaction pattern {name!r} is not a valid regex: {exc}"
                ) from exc
        object.__setattr__(self, "_compiled", tuple(compiled))
        object.__setattr__(self, "_attrs", frozenset(self.attributes))
        if compiled:
            # One search over the alternation rejects the common no-match string in a single pass.
            union = "|".join(f"(?:{regex})" for _, regex in self.patterns)
            try:
                object.__setattr__(self, "_any", re.compile(union))
            except re.error:  # e.g. duplicate group names across patterns
                object.__setattr__(self, "_any", None)

    @classmethod
    def defaults(cls) -> RedactionRules:
        """Card numbers, e-mail addresses and the usual card / e-mail / password attributes."""
        return cls(DEFAULT_ATTRIBUTES, tuple(DEFAULT_PATTERNS.items()))

    @classmethod
    def disabled(cls) -> RedactionRules:
        """No redaction at all (the report still says so)."""
        return cls()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RedactionRules:
        """Rules from a config section ``{attributes: [...], patterns: {name: regex}}``.

        A top-level ``redaction`` key is unwrapped; ``defaults: true`` adds the default rules.
        """
        if not isinstance(d, Mapping):
            raise ReportError(f"redaction: expected a mapping, got {type(d).__name__}")
        if "redaction" in d and isinstance(d["redaction"], Mapping):
            d = d["redaction"]
        attributes = d.get("attributes") or []
        patterns = d.get("patterns") or {}
        if not isinstance(attributes, list | tuple) or not all(
            isinstance(a, str) for a in attributes
        ):
            raise ReportError("redaction.attributes must be a list of attribute names")
        if not isinstance(patterns, Mapping) or not all(
            isinstance(v, str) for v in patterns.values()
        ):
            raise ReportError("redaction.patterns must map a name to a regex string")
        attrs = list(attributes)
        pats = {str(k): v for k, v in patterns.items()}
        if d.get("defaults"):
            attrs = list(DEFAULT_ATTRIBUTES) + [a for a in attrs if a not in DEFAULT_ATTRIBUTES]
            pats = {**DEFAULT_PATTERNS, **pats}
        return cls(tuple(attrs), tuple(pats.items()))

    @property
    def enabled(self) -> bool:
        return bool(self.attributes or self.patterns)

    def to_dict(self) -> dict[str, Any]:
        """The rules as stated in the report header."""
        return {"attributes": list(self.attributes), "patterns": dict(self.patterns)}

    def redact_text(self, text: str, counts: Counter[str] | None = None) -> str:
        """Mask every pattern match and every ``attribute=value`` pair in a string."""
        if self._attrs and "=" in text:
            name, _, value = text.partition("=")
            if name in self._attrs and value != MASK:
                text = name + "=" + MASK
                if counts is not None:
                    counts["attribute:" + name] += 1
        if not self._compiled or (self._any is not None and not self._any.search(text)):
            return text
        for name, pattern in self._compiled:
            text, n = pattern.subn(f"[REDACTED:{name}]", text)
            if n and counts is not None:
                counts["pattern:" + name] += n
        return text

    def redact(self, value: Any, counts: Counter[str] | None = None, key: str = "") -> Any:
        """A redacted deep copy of a JSON-like value; ``counts`` collects what was masked."""
        if not self.enabled:
            return value
        if key in _STRUCTURAL_KEYS:
            return value
        if key and key in self._attrs:
            if counts is not None:
                counts["attribute:" + key] += 1
            return MASK
        if isinstance(value, str):
            return self.redact_text(value, counts)
        if isinstance(value, Mapping):
            return {k: self.redact(v, counts, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v, counts) for v in value]
        return value


def describe_rules(rules: RedactionRules) -> list[str]:
    """Human sentences naming the rules, for the PDF."""
    if not rules.enabled:
        return ["No redaction rules were applied."]
    lines = []
    if rules.attributes:
        lines.append("Values of these attributes were masked: " + ", ".join(rules.attributes) + ".")
    lines.extend(
        f"Pattern '{name}' ({regex}) was masked wherever it appeared."
        for name, regex in rules.patterns
    )
    return lines


def count_lines(counts: Iterable[tuple[str, int]]) -> list[str]:
    """Human sentences for redaction counts."""
    return [f"{what}: {n} value(s) masked" for what, n in sorted(counts)]
