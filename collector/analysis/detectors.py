"""Findings: stalls, missing/failed/out-of-order/unexpected compensations and duplicate steps."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from collector.analysis.classify import Verdict, format_duration
from collector.analysis.model import Finding
from collector.analysis.names import match_key
from collector.analysis.timeline import Occurrence


def finding_id(saga_key: str, kind: str, subject: str) -> str:
    """Stable id: the same saga, kind and subject always give the same id."""
    return hashlib.sha256(f"{saga_key}\x1f{kind}\x1f{subject}".encode()).hexdigest()[:32]


def _refs(*groups: list[str]) -> list[str]:
    return sorted({ref for group in groups for ref in group})


def detect_findings(
    saga_key: str, occs: list[Occurrence], v: Verdict, now_ns: int
) -> list[Finding]:
    """Every finding of one classified saga, sorted by kind then subject.

    A kind and subject make one finding: when a detector reports the same one again (a
    compensation that ran without cause in three services), its evidence joins the first
    report and ``details["reports"]`` counts them.
    """
    found: dict[str, Finding] = {}

    def add(
        kind: str, severity: str, step: str, text: str, evidence: list[str], **details: object
    ) -> None:
        fid = finding_id(saga_key, kind, step)
        same = found.get(fid)
        if same is not None:
            same.evidence = _refs(same.evidence, evidence)
            same.details["reports"] = int(same.details.get("reports", 1)) + 1
            return
        found[fid] = Finding(
            fid, saga_key, kind, severity, step, text, evidence, now_ns, dict(details)
        )

    for detector in DETECTORS:
        detector(occs, v, add)
    return sorted(found.values(), key=lambda f: (f.kind, f.step))


_Add = Callable[..., None]


def detect_stall(occs: list[Occurrence], v: Verdict, add: _Add) -> None:
    """No progress past the threshold (declared timeout, learned k × p99 or stall_after)."""
    if v.stall is None:
        return
    s = v.stall
    add(
        "stall",
        "warning",
        s.waiting_for,
        v.explanation,
        list(s.evidence),
        idle_ns=s.idle_ns,
        threshold_ns=s.threshold_ns,
        threshold_source=s.threshold_source,
        waiting_for=s.waiting_text,
    )


def detect_missing_compensation(occs: list[Occurrence], v: Verdict, add: _Add) -> None:
    """A completed compensable step of a failed saga whose compensation never ran."""
    if v.status != "compensation_missing":
        return
    for action in v.ledger.missing:
        text = (
            f"{action.name} completed but {action.compensation} never ran"
            + (f" after the saga failed at {v.failed_step}" if v.failed_step else "")
            + "."
        )
        add(
            "missing_compensation",
            "critical",
            action.name,
            text,
            _refs(action.refs, v.failure_refs),
            expected=action.compensation,
            inferred=action.inferred,
        )


def detect_compensation_failed(occs: list[Occurrence], v: Verdict, add: _Add) -> None:
    """A compensation that failed after all its attempts."""
    for comp in v.ledger.failed:
        attempts = f" after {comp.attempts} attempts" if comp.attempts > 1 else ""
        error = f": {comp.error}" if comp.error else ""
        add(
            "compensation_failed",
            "critical",
            comp.name,
            f"Compensation {comp.name} (undoing {comp.compensates}) failed{attempts}{error}.",
            _refs(comp.refs),
            compensates=comp.compensates,
            attempts=comp.attempts,
        )


def detect_out_of_order(occs: list[Occurrence], v: Verdict, add: _Add) -> None:
    """Orchestrated compensations must run in reverse order of the actions they undo."""
    pairs = [(a, c) for a, c in v.ledger.undone if c.kind == "action"]
    if len(pairs) < 2:
        return
    order = {id(o): i for i, o in enumerate(occs)}
    pairs.sort(key=lambda p: order[id(p[0])])
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            if pairs[i][1].start_ns < pairs[j][1].start_ns:
                ran = [c.name for _, c in sorted(pairs, key=lambda p: p[1].start_ns)]
                expected = [c.name for _, c in reversed(pairs)]
                add(
                    "compensation_out_of_order",
                    "warning",
                    "",
                    f"Compensations ran as {' → '.join(ran)}; expected {' → '.join(expected)} "
                    "(reverse order of the actions).",
                    _refs(*[a.refs + c.refs for a, c in pairs]),
                    ran=ran,
                    expected=expected,
                )
                return


def detect_duplicates(occs: list[Occurrence], v: Verdict, add: _Add) -> None:
    """An action executed more than once in one saga, outside retries.

    Consumer spans named after their queue are the same step only when they handled (or
    published) the same message type; without one they are never called duplicates.
    """
    groups: dict[str, list[Occurrence]] = {}
    for occ in occs:
        if occ.role != "action" or (occ.kind == "event" and not occ.compensation):
            continue
        key = match_key(occ.name)
        if occ.generic:
            if not occ.message_type:
                continue
            key = f"{key}|{match_key(occ.message_type)}"
        groups.setdefault(key, []).append(occ)
    for group in groups.values():
        if len(group) < 2:
            continue
        name = group[0].name
        add(
            "duplicate_step",
            "warning",
            name,
            f"{name} ran {len(group)} times in this saga outside retries "
            f"(at {', '.join(format_duration(max(0, o.start_ns - occs[0].start_ns)) for o in group)} "
            "into the saga).",
            _refs(*[o.refs for o in group]),
            occurrences=len(group),
        )


def detect_unexpected_compensation(occs: list[Occurrence], v: Verdict, add: _Add) -> None:
    """Undoing a step that never ran, or compensating a saga that did not fail."""
    stray = {id(c) for c in v.ledger.stray}
    for comp in v.ledger.compensations:
        if id(comp) in stray:
            text = f"{comp.name} undid {comp.compensates}, which never ran in this saga."
        elif not v.failed:
            text = f"{comp.name} ran although the saga did not fail."
        else:
            continue
        add(
            "unexpected_compensation",
            "warning",
            comp.name,
            text,
            _refs(comp.refs),
            compensates=comp.compensates,
            saga_failed=v.failed,
        )


DETECTORS = (
    detect_stall,
    detect_missing_compensation,
    detect_compensation_failed,
    detect_out_of_order,
    detect_duplicates,
    detect_unexpected_compensation,
)
