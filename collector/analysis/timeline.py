"""One saga's records turned into an ordered list of step occurrences plus workflow signals.

Which spans are steps: with ``saga.step`` present, only those spans; with Temporal or
durabletask activities, the activities; otherwise the top-level service-entry spans of each
service, leaving out the saga-instance spans of MassTransit, NServiceBus and Axon (those are
the orchestrator, not a step). Events are steps of type ``event``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from collector.analysis.names import framework_step_name, is_failure_name
from collector.normalize.records import EventRecord, LogRecord, SpanRecord

SERVER, CLIENT, CONSUMER = 2, 3, 5
STATUS_ERROR, STATUS_OK = 2, 1
MAX_ATTEMPT = 1_000_000
_RETRY_ATTRIBUTES = ("saga.step.attempt", "retry.attempt", "attempt", "retry", "retry_count")
# Most spans carry none of a list of attributes: one check of the set says so at once.
_RETRY_ATTRIBUTE_SET = frozenset(_RETRY_ATTRIBUTES)
_ORCHESTRATOR_ATTRIBUTES = frozenset(
    {"messaging.masstransit.saga_id", "nservicebus.saga.saga_id", "axon.sagaIdentifier"}
)
_FRAMEWORK_NAME_ATTRIBUTES = (
    "messaging.masstransit.consumer_type",
    "nservicebus.handler.handler_type",
    "nservicebus.handler_type",
    "axon_payload_type",
    "axon.payload_type",
)
_FRAMEWORK_NAME_ATTRIBUTE_SET = frozenset(_FRAMEWORK_NAME_ATTRIBUTES)
_SIGNAL_ATTRIBUTES = frozenset(
    {
        "saga.name",
        "saga.step",
        "nservicebus.saga.saga_type",
        "messaging.masstransit.end_state",
        "messaging.masstransit.saga_id",
        "axon.sagaIdentifier",
    }
)
_SAGA_TYPE_ATTRIBUTES = ("messaging.masstransit.saga_type", "axon.saga_type", "axon_saga_type")
_FINAL_STATES = frozenset({"final", "completed", "finalized"})
_ACTOR_ATTRIBUTES = ("enduser.id", "user.id", "saga.actor")
_ACTOR_ATTRIBUTE_SET = frozenset(_ACTOR_ATTRIBUTES)
_DECLARED_ATTRIBUTES = frozenset({"saga.step.type", "saga.compensates"})
_MESSAGE_TYPE_ATTRIBUTES = ("messaging.message.type", "cloudevents.event_type")
# operation words of OTel messaging span names: "process billing", "billing receive"
_MESSAGING_OPERATIONS = frozenset({"process", "receive", "deliver", "settle", "consume"})


@dataclass(slots=True)
class Occurrence:
    """A step as seen in the records, before roles and classification."""

    name: str
    kind: str  # "action" (span-backed) or "event"
    service: str
    start_ns: int
    end_ns: int  # 0 while running
    outcome: str  # ok | failed | running
    error: str = ""
    actor: str = ""
    refs: list[str] = field(default_factory=list)
    attempts: int = 1
    attempt_no: int = 0  # attempt number carried by an attempt/retry attribute
    declared_type: str = ""  # saga.step.type
    declared_compensates: str = ""  # saga.compensates
    # filled by compensation.assign_roles
    role: str = ""  # action | compensation | ""
    compensation: str = ""  # for actions: the name of the step that undoes it
    compensates: str = ""  # for compensations: the action undone
    targets: tuple[str, ...] = ()
    inferred: bool = False
    # a consumer span named only after its queue ("process billing") says nothing about the
    # business step; the message type it handled (or published) tells its steps apart
    generic: bool = False
    message_type: str = ""

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        name: str,
        kind: str,
        service: str,
        start_ns: int,
        end_ns: int,
        outcome: str,
        error: str = "",
        actor: str = "",
        refs: list[str] | None = None,
        attempts: int = 1,
        attempt_no: int = 0,
        declared_type: str = "",
        declared_compensates: str = "",
        role: str = "",
        compensation: str = "",
        compensates: str = "",
        targets: tuple[str, ...] = (),
        inferred: bool = False,
        generic: bool = False,
        message_type: str = "",
    ) -> None:
        self.name = name
        self.kind = kind
        self.service = service
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.outcome = outcome
        self.error = error
        self.actor = actor
        self.refs = [] if refs is None else refs
        self.attempts = attempts
        self.attempt_no = attempt_no
        self.declared_type = declared_type
        self.declared_compensates = declared_compensates
        self.role = role
        self.compensation = compensation
        self.compensates = compensates
        self.targets = targets
        self.inferred = inferred
        self.generic = generic
        self.message_type = message_type


@dataclass(slots=True)
class Timeline:
    occurrences: list[Occurrence]
    saga_names: set[str] = field(default_factory=set)  # saga.name / workflow / saga types
    # saga types read off MassTransit/Axon saga spans: used when nothing names the saga better
    framework_types: set[str] = field(default_factory=set)
    completed: bool = False  # a workflow ended successfully
    workflow_failed: str = ""  # error of a workflow that ended in failure
    ended: bool = False  # the orchestrator finished, whatever the outcome
    completed_ns: int = 0  # when the workflow reported success (0: unknown or not completed)
    services: set[str] = field(default_factory=set)
    trace_ids: set[str] = field(default_factory=set)
    first_ns: int = 0
    last_ns: int = 0

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        occurrences: list[Occurrence],
        saga_names: set[str] | None = None,
        framework_types: set[str] | None = None,
        completed: bool = False,
        workflow_failed: str = "",
        ended: bool = False,
        completed_ns: int = 0,
        services: set[str] | None = None,
        trace_ids: set[str] | None = None,
        first_ns: int = 0,
        last_ns: int = 0,
    ) -> None:
        self.occurrences = occurrences
        self.saga_names = set() if saga_names is None else saga_names
        self.framework_types = set() if framework_types is None else framework_types
        self.completed = completed
        self.workflow_failed = workflow_failed
        self.ended = ended
        self.completed_ns = completed_ns
        self.services = set() if services is None else services
        self.trace_ids = set() if trace_ids is None else trace_ids
        self.first_ns = first_ns
        self.last_ns = last_ns


# span-name shapes: (kind, payload); cached because names repeat across millions of spans
@lru_cache(maxsize=65536)
def _name_shape(name: str) -> tuple[str, str]:
    head, sep, tail = name.partition(":")
    if sep and tail:
        if head in ("StartActivity", "RunActivity"):
            return head, tail
        if head in ("StartWorkflow", "RunWorkflow", "CompleteWorkflow", "StartChildWorkflow"):
            return head, tail
    head, sep, tail = name.partition("||")
    if sep and tail:
        if head == "activity":
            return "dt_activity", tail.split("||", 1)[0]
        if head == "orchestration":
            return "dt_orchestration", tail.split("||", 1)[0]
    return "", ""


def _failure(span: SpanRecord) -> tuple[bool, str]:
    failed = span.status_code == STATUS_ERROR
    error = span.status_message if failed else ""
    for ev in span.events:
        if ev.get("name") == "exception":
            failed = True
            if not error:
                attrs = ev.get("attributes") or {}
                error = str(attrs.get("exception.message") or attrs.get("exception.type") or "")
    return failed, error


def _attempt(attrs: dict[str, Any]) -> int:
    """1-based attempt number from attempt/retry attributes; 0 when none is carried."""
    if _RETRY_ATTRIBUTE_SET.isdisjoint(attrs):
        return 0
    for name in _RETRY_ATTRIBUTES:
        value = attrs.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        try:
            number = int(value)
        except (ValueError, OverflowError):
            continue
        if not 0 <= number <= MAX_ATTEMPT:
            continue  # not an attempt count a step could have made
        return number + 1 if name.startswith("retry") else number
    return 0


def _actor(attrs: dict[str, Any]) -> str:
    if _ACTOR_ATTRIBUTE_SET.isdisjoint(attrs):
        return ""
    for name in _ACTOR_ATTRIBUTES:
        value = attrs.get(name)
        if value:
            return str(value)
    return ""


def _step_name(span: SpanRecord, children: dict[str, list[SpanRecord]]) -> str:
    attrs = span.attributes
    step = attrs.get("saga.step")
    if step:
        return str(step)
    if not _FRAMEWORK_NAME_ATTRIBUTE_SET.isdisjoint(attrs):
        for name in _FRAMEWORK_NAME_ATTRIBUTES:
            if attrs.get(name):
                return framework_step_name(str(attrs[name]))
    for child in children.get(span.span_id, ()):
        if child.service_name == span.service_name and not (
            _FRAMEWORK_NAME_ATTRIBUTE_SET.isdisjoint(child.attributes)
        ):
            return _step_name(child, {})
    return span.name


@lru_cache(maxsize=65536)
def _is_queue_name(name: str) -> bool:
    """True for OTel messaging span names: ``process billing``, ``billing receive``."""
    parts = name.split(" ")
    return len(parts) == 2 and (
        parts[0] in _MESSAGING_OPERATIONS or parts[1] in _MESSAGING_OPERATIONS
    )


def _message_type(attrs: dict[str, Any]) -> str:
    for name in _MESSAGE_TYPE_ATTRIBUTES:
        value = attrs.get(name)
        if value:
            return str(value)
    return ""


def _occurrence(span: SpanRecord, name: str) -> Occurrence:
    failed, error = _failure(span)
    attrs = span.attributes
    occ = Occurrence(
        name=name,
        kind="action",
        service=span.service_name,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        outcome="failed" if failed else "ok",
        error=error,
        actor=_actor(attrs),
        refs=[span.ref],
        attempt_no=_attempt(attrs),
    )
    if not _DECLARED_ATTRIBUTES.isdisjoint(attrs):
        occ.declared_type = str(attrs.get("saga.step.type") or "")
        occ.declared_compensates = str(attrs.get("saga.compensates") or "")
    return occ


def _activities(
    spans: Sequence[SpanRecord], shapes: list[str]
) -> list[tuple[Occurrence, list[SpanRecord]]]:
    """Temporal/durabletask activities: the scheduling span plus its execution attempts.

    ``shapes`` holds each span's name shape (see :func:`_name_shape`)."""
    schedulers: dict[str, SpanRecord] = {}
    executors: list[SpanRecord] = []
    for span, shape in zip(spans, shapes, strict=True):
        if shape == "StartActivity" or (shape == "dt_activity" and span.kind == CLIENT):
            schedulers[span.span_id] = span
        elif shape in ("RunActivity", "dt_activity"):
            executors.append(span)
    groups: dict[str, list[SpanRecord]] = {}
    group_of_scheduler: dict[str, str] = {}
    for span in schedulers.values():
        aid = span.attributes.get("temporalActivityID")
        key = f"a:{span.attributes.get('temporalWorkflowID')}:{aid}" if aid else span.span_id
        group_of_scheduler[span.span_id] = key
        groups.setdefault(key, []).append(span)
    for span in executors:
        if span.parent_span_id in group_of_scheduler:
            key = group_of_scheduler[span.parent_span_id]
        else:
            aid = span.attributes.get("temporalActivityID")
            key = f"a:{span.attributes.get('temporalWorkflowID')}:{aid}" if aid else span.span_id
        groups.setdefault(key, []).append(span)
    out = []
    for members in groups.values():
        members.sort(key=lambda s: (s.start_ns, s.span_id))
        runs = [s for s in members if s.span_id not in schedulers]
        sched = [s for s in members if s.span_id in schedulers]
        name = _name_shape(members[0].name)[1]
        if runs:
            last = runs[-1]
            occ = _occurrence(last, name)
            occ.start_ns = members[0].start_ns
            occ.attempts = len(runs)
            occ.refs = [s.ref for s in members]
        else:
            first = sched[0]
            occ = _occurrence(first, name)
            occ.refs = [s.ref for s in members]
            if _name_shape(first.name)[0] == "StartActivity":
                # a hung activity never exports RunActivity: the start is all we know
                occ.end_ns = 0
                occ.outcome = "running" if occ.outcome == "ok" else occ.outcome
        out.append((occ, members))
    return out


def build_timeline(
    spans: Sequence[SpanRecord], logs: Sequence[LogRecord], events: Sequence[EventRecord]
) -> Timeline:
    """Order one saga's records into step occurrences and collect workflow-level signals."""
    tl = Timeline(occurrences=[])
    by_id: dict[str, SpanRecord] = {}
    children: dict[str, list[SpanRecord]] = {}
    has_step_attr = False
    has_activities = False
    first = last = 0
    signal_free = _SIGNAL_ATTRIBUTES.isdisjoint
    shapes: list[str] = []  # name shape per span, reused when picking the step spans
    services, trace_ids = tl.services, tl.trace_ids
    for span in spans:
        by_id[span.span_id] = span
        parent_id = span.parent_span_id
        if parent_id:
            siblings = children.get(parent_id)
            if siblings is None:
                children[parent_id] = [span]
            else:
                siblings.append(span)
        attrs = span.attributes
        if not signal_free(attrs):
            _attribute_signals(tl, span)
            if "saga.step" in attrs:
                has_step_attr = True
        shape, payload = _name_shape(span.name)
        shapes.append(shape)
        if shape:
            if shape in ("StartActivity", "RunActivity", "dt_activity"):
                has_activities = True
            elif shape in ("StartWorkflow", "RunWorkflow", "dt_orchestration"):
                tl.saga_names.add(payload)
                if shape != "StartWorkflow":
                    _workflow_end(tl, span, explicit_ok=shape == "RunWorkflow")
            elif shape == "CompleteWorkflow":
                tl.saga_names.add(payload)
                _workflow_end(tl, span)
        if span.service_name:
            services.add(span.service_name)
        trace_ids.add(span.trace_id)
        start, end = span.start_ns, span.end_ns
        if not first or start < first:
            first = start
        if end > last:
            last = end
        if start > last:
            last = start

    step_spans: list[tuple[Occurrence, list[SpanRecord]]] = []
    if has_step_attr:
        step_spans = [
            (_occurrence(s, str(s.attributes["saga.step"])), [s])
            for s in spans
            if "saga.step" in s.attributes
        ]
    elif has_activities:
        step_spans = _activities(spans, shapes)
    else:
        orchestrator_free = _ORCHESTRATOR_ATTRIBUTES.isdisjoint
        for span, shape in zip(spans, shapes, strict=True):
            parent = by_id.get(span.parent_span_id) if span.parent_span_id else None
            if parent is not None and (
                parent.service_name == span.service_name or span.kind not in (SERVER, CONSUMER)
            ):
                continue
            if shape or not orchestrator_free(span.attributes):
                continue
            if "saga.name" in span.attributes:
                continue
            occ = _occurrence(span, _step_name(span, children))
            if occ.name == span.name and _is_queue_name(span.name):
                occ.generic = True
                occ.message_type = _message_type(span.attributes)
            step_spans.append((occ, [span]))

    owner: dict[str, Occurrence] = {}
    for occ, members in step_spans:
        for member in members:
            owner[member.span_id] = occ
    # child spans and logs are evidence of the step that encloses them
    for span in spans:
        if span.span_id in owner:
            continue
        chain = []
        cur: SpanRecord | None = span
        found: Occurrence | None = None
        while cur is not None:
            hit = owner.get(cur.span_id)
            if hit is not None:
                found = hit
                break
            chain.append(cur.span_id)
            cur = by_id.get(cur.parent_span_id) if cur.parent_span_id else None
        if found is not None:
            found.refs.append(span.ref)
            for sid in chain:
                owner[sid] = found
    for log in logs:
        holder = owner.get(log.span_id) if log.span_id else None
        if holder is not None:
            holder.refs.append(log.ref)
        if log.time_ns:
            last = max(last, log.time_ns)
            first = min(first, log.time_ns) if first else log.time_ns
    occurrences = [occ for occ, _ in step_spans]
    for event in events:
        when = event.time_ns or event.received_ns
        publisher = owner.get(event.parent_span_id) if event.parent_span_id else None
        if publisher is not None and publisher.generic and not publisher.message_type:
            # the event a generic consumer published names what it did
            publisher.message_type = event.type
        occurrences.append(
            Occurrence(
                name=event.type,
                kind="event",
                service=event.source,
                start_ns=when,
                end_ns=when,
                outcome="failed" if is_failure_name(event.type) else "ok",
                error=event.type if is_failure_name(event.type) else "",
                refs=[event.ref],
                attempt_no=_attempt(event.extensions),
            )
        )
        if event.source:
            # a choreographed saga may be events alone: their sources are its services
            services.add(event.source)
        if event.trace_id:
            tl.trace_ids.add(event.trace_id)
        if when:
            last = max(last, when)
            first = min(first, when) if first else when
    for occ in occurrences:
        occ.refs.sort()
    occurrences.sort(key=lambda o: (o.start_ns, o.end_ns or 1 << 62, o.name, o.refs[0]))
    tl.occurrences = merge_retries(occurrences)
    tl.first_ns, tl.last_ns = first, last
    return tl


def _attribute_signals(tl: Timeline, span: SpanRecord) -> None:
    attrs = span.attributes
    if "saga.name" in attrs:
        tl.saga_names.add(str(attrs["saga.name"]))
        if "saga.step" not in attrs:
            _workflow_end(tl, span)
    saga_type = attrs.get("nservicebus.saga.saga_type")
    if saga_type:
        tl.saga_names.add(framework_step_name(str(saga_type)))
    if "messaging.masstransit.saga_id" in attrs or "axon.sagaIdentifier" in attrs:
        framework_type = _framework_saga_type(span)
        if framework_type:
            tl.framework_types.add(framework_type)
    end_state = attrs.get("messaging.masstransit.end_state")
    if end_state and str(end_state).lower() in _FINAL_STATES:
        tl.completed = tl.ended = True
        tl.completed_ns = max(tl.completed_ns, span.end_ns or span.start_ns)


def _framework_saga_type(span: SpanRecord) -> str:
    """Saga type of a MassTransit or Axon saga-instance span.

    From a saga type attribute, else the span name: Axon's ``SagaManager[OrderSaga].invokeSaga``
    or MassTransit's ``OrderState process`` (the saga state type and the operation).
    """
    attrs = span.attributes
    for name in _SAGA_TYPE_ATTRIBUTES:
        if attrs.get(name):
            return _saga_type_name(str(attrs[name]))
    return _saga_type_from_span_name(span.name)


@lru_cache(maxsize=4096)
def _saga_type_from_span_name(name: str) -> str:
    head, sep, tail = name.partition("[")
    if sep and head.endswith("SagaManager") and "]" in tail:
        return _saga_type_name(tail.split("]", 1)[0])
    if _is_queue_name(name):
        first, second = name.split(" ")
        return _saga_type_name(second if first in _MESSAGING_OPERATIONS else first)
    return ""


def _saga_type_name(type_name: str) -> str:
    """``Shop.Sagas.OrderStateMachine`` -> ``OrderStateMachine`` (namespace dropped)."""
    return type_name.rsplit(".", 1)[-1].rsplit("+", 1)[-1]


def _workflow_end(tl: Timeline, span: SpanRecord, explicit_ok: bool = False) -> None:
    failed, error = _failure(span)
    if failed:
        tl.workflow_failed = error or span.name
        tl.ended = True
    elif not explicit_ok or span.status_code == STATUS_OK:
        tl.completed = tl.ended = True
        tl.completed_ns = max(tl.completed_ns, span.end_ns or span.start_ns)


def merge_retries(occurrences: list[Occurrence]) -> list[Occurrence]:
    """Fold retries into one step with several attempts.

    A repeat of the previous action with the same name is a retry when the earlier attempt
    failed or the repeat carries an attempt/retry attribute; anything else stays separate
    (and may be a duplicate).
    """
    out: list[Occurrence] = []
    previous: dict[str, Occurrence] = {}  # kind -> last occurrence of that kind
    for occ in occurrences:
        prev = previous.get(occ.kind)
        if (
            prev is not None
            and prev.name == occ.name
            and prev.message_type == occ.message_type
            and (prev.outcome == "failed" or occ.attempt_no > 1)
        ):
            prev.attempts += occ.attempts
            prev.end_ns = occ.end_ns
            prev.outcome = occ.outcome
            prev.error = occ.error if occ.outcome == "failed" else ""
            prev.refs = sorted(prev.refs + occ.refs)
            prev.attempt_no = max(prev.attempt_no, occ.attempt_no)
            continue
        out.append(occ)
        previous[occ.kind] = occ
    for occ in out:
        # earlier attempts may have left no records; the attempt number still counts them
        occ.attempts = max(occ.attempts, occ.attempt_no)
    return out
