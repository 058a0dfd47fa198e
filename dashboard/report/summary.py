"""One streaming pass over the record stream that keeps what the PDF shows: counts, coverage, and
a capped number of findings, flagged sagas and register rows. Memory stays bounded at 100k sagas."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

FLAG_STATUSES = frozenset({"stalled", "compensation_missing", "compensation_failed", "failed"})
FAILED_STATUSES = ("failed", "compensated", "compensation_missing", "compensation_failed")


@dataclass(slots=True)
class PdfSummary:
    """Aggregates for the PDF; feed it the canonical record stream with ``consume``."""

    max_sagas: int = 50
    max_findings: int = 500
    max_register: int = 300
    header: dict[str, Any] = field(default_factory=dict)
    trailer: dict[str, Any] = field(default_factory=dict)
    saga_count: int = 0
    step_count: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_type_status: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_finding: Counter[tuple[str, str]] = field(default_factory=Counter)
    findings: list[dict[str, Any]] = field(default_factory=list)
    finding_count: int = 0
    flagged: list[dict[str, Any]] = field(default_factory=list)
    flagged_count: int = 0
    register: list[dict[str, Any]] = field(default_factory=list)
    first_ns: int = 0
    last_ns: int = 0

    @property
    def omitted_sagas(self) -> int:
        """Flagged sagas beyond the cap, whose timelines the PDF leaves out."""
        return self.flagged_count - len(self.flagged)

    @property
    def omitted_findings(self) -> int:
        return self.finding_count - len(self.findings)

    def coverage(self) -> dict[str, int]:
        """Compensation coverage of failed sagas."""
        return {
            "failed_sagas": sum(self.by_status[s] for s in FAILED_STATUSES),
            "nothing_to_undo": self.by_status["failed"],
            "fully_compensated": self.by_status["compensated"],
            "compensation_missing": self.by_status["compensation_missing"],
            "compensation_failed": self.by_status["compensation_failed"],
        }

    def consume(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Read the whole record stream once."""
        current: dict[str, Any] | None = None
        for kind, data in records:
            if kind == "saga":
                if current is not None:
                    self._finish(current)
                current = {**data, "steps": [], "findings": []}
            elif kind == "step" and current is not None:
                current["steps"].append(dict(data))
            elif kind == "finding" and current is not None:
                current["findings"].append(dict(data))
            elif kind == "header":
                self.header = dict(data)
            elif kind == "trailer":
                self.trailer = dict(data)
        if current is not None:
            self._finish(current)

    def _finish(self, saga: dict[str, Any]) -> None:
        status = str(saga.get("status", ""))
        self.saga_count += 1
        self.step_count += len(saga["steps"])
        self.by_status[status] += 1
        self.by_type_status[(str(saga.get("saga_type", "")), status)] += 1
        start = int(saga.get("started_ns") or 0)
        end = int(saga.get("ended_ns") or saga.get("last_progress_ns") or start)
        if start and (not self.first_ns or start < self.first_ns):
            self.first_ns = start
        self.last_ns = max(self.last_ns, end)
        for finding in saga["findings"]:
            self.finding_count += 1
            self.by_finding[(str(finding.get("kind", "")), str(finding.get("severity", "")))] += 1
            if len(self.findings) < self.max_findings:
                self.findings.append(finding)
        if len(self.register) < self.max_register:
            self.register.append({k: v for k, v in saga.items() if k not in ("steps", "findings")})
        if status in FLAG_STATUSES or saga["findings"]:
            self.flagged_count += 1
            if len(self.flagged) < self.max_sagas:
                self.flagged.append(saga)
