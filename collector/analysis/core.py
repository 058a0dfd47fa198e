"""Entry point of the pure analysis core: records + config + now in, sagas/steps/findings out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.analysis.classify import classify
from collector.analysis.config import SagaConfig
from collector.analysis.detectors import detect_findings
from collector.analysis.identity import Resolution, resolve_identity
from collector.analysis.model import AnalysisResult, Finding, Saga, Step
from collector.analysis.stats import LearnedStats
from collector.analysis.timeline import build_timeline
from collector.normalize.records import EventRecord, LogRecord, SpanRecord

# The span fields that analysing gathered records reads (timelines, classification,
# findings, each saga's membership). Identity reads others too (links, the conversation id
# column); a rebuild resolves it from stored columns, then builds its records from these.
ANALYSED_SPAN_FIELDS = (
    "trace_id",
    "span_id",
    "name",
    "start_ns",
    "end_ns",
    "parent_span_id",
    "kind",
    "status_code",
    "status_message",
    "attributes",
    "service_name",
    "events",
)


def analyze(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord],
    events: Sequence[EventRecord],
    config: SagaConfig,
    now_ns: int,
    learned: LearnedStats | None = None,
) -> AnalysisResult:
    """Reconstruct, classify and explain every saga in the records.

    The result depends only on the arguments, never on record order: analysing any subset
    that holds every record of a saga gives that saga exactly as analysing everything does.
    """
    grouped = group_records(spans, logs, events, config)
    result = grouped.result
    result.sagas, result.steps, result.findings = analyze_sagas(
        grouped, grouped.saga_keys, config, now_ns, learned
    )
    result.membership = grouped.membership()
    return result


@dataclass
class Grouped:
    """The records of every saga, found by identity resolution: the first, global phase.

    ``result`` holds what that phase decides (identity, traces and events of each saga);
    sagas, steps and findings come from :func:`analyze_sagas`, one saga at a time, so any
    split of ``saga_keys`` can be analysed apart and the parts joined.
    """

    result: AnalysisResult
    saga_keys: list[str]
    spans: dict[str, list[SpanRecord]]
    logs: dict[str, list[LogRecord]]
    events: dict[str, list[EventRecord]]
    business: dict[str, set[str]]
    rule: dict[str, str]

    def membership(self) -> dict[str, str]:
        """Record ref -> saga key, for every record gathered."""
        out: dict[str, str] = {}
        for records in (self.spans, self.logs, self.events):
            for key, members in records.items():
                for record in members:
                    out[record.ref] = key
        return out


def group_records(
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord],
    events: Sequence[EventRecord],
    config: SagaConfig,
) -> Grouped:
    """Resolve saga identity over all the records and gather each saga's records, in order."""
    resolution = resolve_identity(spans, logs, events, config)
    return gather_records(
        resolution, spans, logs, resolution.log_saga, events, resolution.event_saga
    )


def gather_records(
    resolution: Resolution,
    spans: Sequence[SpanRecord],
    logs: Sequence[LogRecord],
    log_saga: Sequence[str],
    events: Sequence[EventRecord],
    event_saga: Sequence[str],
) -> Grouped:
    """Each saga's records, in order, as ``resolution`` assigns them.

    ``log_saga`` and ``event_saga`` are the saga of each log and event ("" for none); the
    records may be any part of those ``resolution`` was found over, so each part of the
    sagas can be gathered apart.
    """
    trace_saga = resolution.trace_saga
    saga_spans: dict[str, list[SpanRecord]] = {}
    # one sort of everything instead of one per saga: record order must not matter, and the
    # per-saga lists below inherit this order
    span_traces: set[str] = set()
    for span in sorted(spans, key=span_order):
        key = trace_saga.get(span.trace_id)
        if key:
            saga_spans.setdefault(key, []).append(span)
            span_traces.add(span.trace_id)
    return gather_with_spans(
        resolution, saga_spans, span_traces, logs, log_saga, events, event_saga
    )


def gather_with_spans(
    resolution: Resolution,
    saga_spans: dict[str, list[SpanRecord]],
    span_traces: Iterable[str],
    logs: Sequence[LogRecord],
    log_saga: Sequence[str],
    events: Sequence[EventRecord],
    event_saga: Sequence[str],
) -> Grouped:
    """:func:`gather_records`, with the spans already gathered: each saga's in
    :func:`span_order`, and the traces they are of."""
    saga_logs: dict[str, list[LogRecord]] = {}
    saga_events: dict[str, list[EventRecord]] = {}
    order = sorted(range(len(logs)), key=lambda i: _log_order(logs[i]))
    logs = [logs[i] for i in order]
    log_saga = [log_saga[i] for i in order]
    order = sorted(range(len(events)), key=lambda i: _event_order(events[i]))
    events = [events[i] for i in order]
    event_saga = [event_saga[i] for i in order]
    for log, key in zip(logs, log_saga, strict=True):
        if key:
            saga_logs.setdefault(key, []).append(log)
    for event, key in zip(events, event_saga, strict=True):
        if key:
            saga_events.setdefault(key, []).append(event)

    trace_saga = resolution.trace_saga
    result = AnalysisResult(
        identity=resolution.identity,
        trace_saga={t: trace_saga[t] for t in span_traces},
        event_saga={e.event_key: k for e, k in zip(events, event_saga, strict=True) if k},
        links=resolution.links,
    )
    return Grouped(
        result=result,
        saga_keys=sorted(set(saga_spans) | set(saga_events) | set(saga_logs)),
        spans=saga_spans,
        logs=saga_logs,
        events=saga_events,
        business=resolution.business,
        rule=resolution.rule,
    )


def analyze_sagas(
    grouped: Grouped,
    saga_keys: Iterable[str],
    config: SagaConfig,
    now_ns: int,
    learned: LearnedStats | None = None,
) -> tuple[list[Saga], list[Step], list[Finding]]:
    """Timeline, classification and findings of each of ``saga_keys``, in that order."""
    sagas: list[Saga] = []
    all_steps: list[Step] = []
    all_findings: list[Finding] = []
    for saga_key in saga_keys:
        s_spans = grouped.spans.get(saga_key, [])
        s_logs = grouped.logs.get(saga_key, [])
        s_events = grouped.events.get(saga_key, [])
        tl = build_timeline(s_spans, s_logs, s_events)
        verdict = classify(tl, config, now_ns, learned)
        findings = detect_findings(saga_key, tl.occurrences, verdict, now_ns)
        steps = [
            Step(
                saga_key=saga_key,
                seq=seq,
                name=occ.name,
                step_type="event"
                if occ.kind == "event"
                else ("compensation" if occ.role == "compensation" else "action"),
                service=occ.service,
                start_ns=occ.start_ns,
                end_ns=occ.end_ns,
                outcome=occ.outcome,
                attempts=occ.attempts,
                compensates=occ.compensates,
                compensation_inferred=occ.inferred and occ.role == "compensation",
                error=occ.error,
                actor=occ.actor,
                records=occ.refs,
            )
            for seq, occ in enumerate(tl.occurrences)
        ]
        all_steps.extend(steps)
        all_findings.extend(findings)
        sagas.append(
            Saga(
                saga_key=saga_key,
                saga_type=verdict.saga_type,
                status=verdict.status,
                started_ns=tl.first_ns,
                ended_ns=verdict.ended_ns,
                last_progress_ns=verdict.last_progress_ns,
                explanation=verdict.explanation,
                services=sorted(tl.services),
                trace_ids=sorted(tl.trace_ids),
                business_keys=sorted(grouped.business.get(saga_key, ())),
                step_count=len(steps),
                finding_count=len(findings),
                record_count=len(s_spans) + len(s_logs) + len(s_events),
                failed_step=verdict.failed_step,
                waiting_for=verdict.waiting_for,
                identity_rule=grouped.rule.get(saga_key, ""),
            )
        )
    return sagas, all_steps, all_findings


def span_order(span: SpanRecord) -> tuple[int, str, str]:
    """The order of a saga's spans: by start, then trace and span id."""
    return span.start_ns, span.trace_id, span.span_id


def _log_order(log: LogRecord) -> tuple[int, str]:
    return log.time_ns, log.record_id


def _event_order(event: EventRecord) -> tuple[int, str]:
    return event.time_ns or event.received_ns, event.event_key
