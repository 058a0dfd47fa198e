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

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        saga_key: str,
        seq: int,
        name: str,
        step_type: str,
        service: str,
        start_ns: int,
        end_ns: int,
        outcome: str,
        attempts: int = 1,
        compensates: str = "",
        compensation_inferred: bool = False,
        error: str = "",
        actor: str = "",
        records: list[str] | None = None,
    ) -> None:
        self.saga_key = saga_key
        self.seq = seq
        self.name = name
        self.step_type = step_type
        self.service = service
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.outcome = outcome
        self.attempts = attempts
        self.compensates = compensates
        self.compensation_inferred = compensation_inferred
        self.error = error
        self.actor = actor
        self.records = [] if records is None else records

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

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        finding_id: str,
        saga_key: str,
        kind: str,
        severity: str,
        step: str,
        explanation: str,
        evidence: list[str] | None = None,
        detected_ns: int = 0,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.finding_id = finding_id
        self.saga_key = saga_key
        self.kind = kind
        self.severity = severity
        self.step = step
        self.explanation = explanation
        self.evidence = [] if evidence is None else evidence
        self.detected_ns = detected_ns
        self.details = {} if details is None else details

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

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        saga_key: str,
        saga_type: str,
        status: str,
        started_ns: int,
        ended_ns: int,
        last_progress_ns: int,
        explanation: str,
        services: list[str] | None = None,
        trace_ids: list[str] | None = None,
        business_keys: list[str] | None = None,
        step_count: int = 0,
        finding_count: int = 0,
        record_count: int = 0,
        failed_step: str = "",
        waiting_for: str = "",
        identity_rule: str = "",
    ) -> None:
        self.saga_key = saga_key
        self.saga_type = saga_type
        self.status = status
        self.started_ns = started_ns
        self.ended_ns = ended_ns
        self.last_progress_ns = last_progress_ns
        self.explanation = explanation
        self.services = [] if services is None else services
        self.trace_ids = [] if trace_ids is None else trace_ids
        self.business_keys = [] if business_keys is None else business_keys
        self.step_count = step_count
        self.finding_count = finding_count
        self.record_count = record_count
        self.failed_step = failed_step
        self.waiting_for = waiting_for
        self.identity_rule = identity_rule

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
