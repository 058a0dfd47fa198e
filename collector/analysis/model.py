"""What the analysis core produces: sagas, their steps and findings.

These are stored as the materialized ``sagas``, ``steps`` and ``findings`` tables and
served as JSON by the query API, field for field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SAGA_STATUSES = (
    "running",
    "stalled",
    "completed",
    "failed",
    "compensated",
    "compensation_missing",
    "compensation_failed",
)
FINDING_KINDS = (
    "stall",
    "missing_compensation",
    "compensation_failed",
    "compensation_out_of_order",
    "duplicate_step",
    "unexpected_compensation",
)
STEP_TYPES = ("action", "compensation", "event")
STEP_OUTCOMES = ("ok", "failed", "running", "unknown")


@dataclass(slots=True)
class Step:
    saga_key: str
    seq: int  # 0-based position in the saga's timeline
    name: str
    step_type: str  # STEP_TYPES
    service: str
    start_ns: int
    end_ns: int  # 0 while running
    outcome: str  # STEP_OUTCOMES
    attempts: int = 1
    compensates: str = ""  # name of the action this compensation undoes
    compensation_inferred: bool = False  # pair inferred from names, not declared
    error: str = ""  # status message / exception text of the failing attempt
    actor: str = ""  # user / principal where the records carry one
    records: list[str] = field(default_factory=list)  # record refs: span:..., log:..., event:...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Finding:
    finding_id: str  # stable: hash of saga key, kind and subject
    saga_key: str
    kind: str  # FINDING_KINDS
    severity: str  # "critical" | "warning" | "info"
    step: str  # the step the finding is about ("" when about the saga)
    explanation: str  # one or two human sentences
    evidence: list[str] = field(default_factory=list)  # record refs
    detected_ns: int = 0  # the analysis 'now' when first detected
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Saga:
    saga_key: str
    saga_type: str
    status: str  # SAGA_STATUSES
    started_ns: int
    ended_ns: int  # 0 unless completed/failed/compensated...
    last_progress_ns: int
    explanation: str  # one line: why this status
    services: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    business_keys: list[str] = field(default_factory=list)  # e.g. "order.id=42"
    step_count: int = 0
    finding_count: int = 0
    record_count: int = 0
    failed_step: str = ""
    waiting_for: str = ""  # for running/stalled sagas: what it waits for
    identity_rule: str = ""  # which identity rule produced the key (saga.id, temporal, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class AnalysisResult:
    sagas: list[Saga] = field(default_factory=list)
    # each saga's steps together, in ``seq`` order
    steps: list[Step] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # record ref -> saga key, for every record that belongs to a saga (from analyze())
    membership: dict[str, str] = field(default_factory=dict)
    # the same by trace (of the spans in a saga) and by event key
    trace_saga: dict[str, str] = field(default_factory=dict)
    event_saga: dict[str, str] = field(default_factory=dict)
    # raw identity key (see identity_keys()) -> saga key it was merged into
    identity: dict[str, str] = field(default_factory=dict)
    # (from trace, to trace) of every span link between two traces of the records
    links: set[tuple[str, str]] = field(default_factory=set)
