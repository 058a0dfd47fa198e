"""Saga type, failure, completion, status and the one-line explanation of a saga."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from collector.analysis.compensation import Ledger, assign_roles, settle
from collector.analysis.config import DEFAULT_STALL_AFTER_NS, SagaConfig, SagaDefinition
from collector.analysis.names import match_key, name_info
from collector.analysis.stats import LearnedStats
from collector.analysis.timeline import Occurrence, Timeline

MIN_LEARNED_THRESHOLD_NS = 1_000_000_000


def format_time(ns: int) -> str:
    """UTC wall time of an epoch-nanosecond timestamp, e.g. ``2026-11-22 10:04:11Z``."""
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def format_duration(ns: int) -> str:
    """Compact duration: ``250ms``, ``45s``, ``12m``, ``1h5m``, ``2d3h``."""
    if ns < 1_000_000_000:
        return f"{ns // 1_000_000}ms"
    seconds = ns // 1_000_000_000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds}s" if seconds and minutes < 10 else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def _join(names: list[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(slots=True)
class Stall:
    waiting_for: str  # step name awaited
    waiting_text: str  # "charge_payment to finish"
    since_text: str  # "charge_payment started at 2026-11-22 10:04:11Z"
    idle_ns: int
    threshold_ns: int
    threshold_source: str
    evidence: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Verdict:
    saga_type: str
    definition: SagaDefinition | None
    status: str
    explanation: str
    failed_step: str = ""
    failure_reason: str = ""
    failure_refs: list[str] = field(default_factory=list)
    failed: bool = False
    waiting_for: str = ""
    ended_ns: int = 0
    last_progress_ns: int = 0
    ledger: Ledger = field(default_factory=Ledger)
    stall: Stall | None = None

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        saga_type: str,
        definition: SagaDefinition | None,
        status: str,
        explanation: str,
        failed_step: str = "",
        failure_reason: str = "",
        failure_refs: list[str] | None = None,
        failed: bool = False,
        waiting_for: str = "",
        ended_ns: int = 0,
        last_progress_ns: int = 0,
        ledger: Ledger | None = None,
        stall: Stall | None = None,
    ) -> None:
        self.saga_type = saga_type
        self.definition = definition
        self.status = status
        self.explanation = explanation
        self.failed_step = failed_step
        self.failure_reason = failure_reason
        self.failure_refs = [] if failure_refs is None else failure_refs
        self.failed = failed
        self.waiting_for = waiting_for
        self.ended_ns = ended_ns
        self.last_progress_ns = last_progress_ns
        self.ledger = Ledger() if ledger is None else ledger
        self.stall = stall


def choose_type(tl: Timeline, config: SagaConfig) -> tuple[str, SagaDefinition | None]:
    """Saga type from saga.name / framework types, else the definition its steps match best."""
    named = sorted(tl.saga_names)
    for name in [*named, *sorted(tl.framework_types)]:
        if name in config.sagas:
            return name, config.sagas[name]
    # every definition that declares a step votes for it. OrderSaga's reserve_inventory and
    # OrderFulfillment's InventoryReserved are one match key: the other steps decide, and on
    # a tie the definition whose names put the verb where the records do (ReserveInventory
    # is an action's name, InventoryReserved an event's)
    votes: dict[str, tuple[int, int]] = {}
    names = [(match_key(occ.name), name_info(occ.name).verb_last) for occ in tl.occurrences]
    for saga, spelling in config.spellings.items():
        matched = [(spelling[key], verb_last) for key, verb_last in names if key in spelling]
        if matched:
            alike = sum(1 for name, verb_last in matched if name_info(name).verb_last == verb_last)
            votes[saga] = (len(matched), alike)
    if votes:
        best = min(votes, key=lambda s: (-votes[s][0], -votes[s][1], s))
        return (named[0] if named else best), config.sagas[best]
    named += sorted(tl.framework_types)
    return (named[0] if named else ""), None


def use_declared_names(occs: list[Occurrence], spelling: dict[str, str]) -> None:
    """Name each step as the definitions file spells it.

    One saga type may reach sagalens in several spellings (``saga.step`` says
    ``reserve_inventory``, a Temporal activity says ``ReserveInventory``); the file already
    treats them as one step, so its flow, timelines and findings use one name for it.
    """
    if not spelling:
        return
    for occ in occs:
        occ.name = spelling.get(match_key(occ.name), occ.name)
        if occ.declared_compensates:
            occ.declared_compensates = spelling.get(
                match_key(occ.declared_compensates), occ.declared_compensates
            )


def _fails_on(definition: SagaDefinition | None) -> frozenset[str]:
    if definition is None:
        return frozenset()
    return frozenset(match_key(n) for n in definition.fails_on)


def _find_failure(
    occs: list[Occurrence], definition: SagaDefinition | None, tl: Timeline
) -> tuple[bool, str, str, list[str]]:
    """(failed, failed step, reason, evidence)."""
    fails_on = _fails_on(definition)
    failing_action = next(
        (
            o
            for o in occs
            if o.kind == "action" and o.role != "compensation" and o.outcome == "failed"
        ),
        None,
    )
    failure_event = next(
        (
            o
            for o in occs
            if o.kind == "event"
            and o.role != "compensation"
            and (o.outcome == "failed" or match_key(o.name) in fails_on)
        ),
        None,
    )
    if failure_event is None and fails_on:
        failure_event = next((o for o in occs if match_key(o.name) in fails_on), None)
    if (
        failing_action is not None
        and failure_event is not None
        and failure_event.start_ns < failing_action.start_ns
    ):
        # the first failure in time is the saga's; a span failing after it runs in a consumer
        # reacting to that failure (a refund handler, say): part of compensating, not the cause
        failing_action = None
    if failure_event is not None and failure_event.kind == "event":
        failure_event.outcome = "failed"
        failure_event.error = failure_event.error or failure_event.name
    if failing_action is None and failure_event is not None:
        subject = set(name_info(failure_event.name).obj)
        for occ in occs:
            if occ is failure_event:
                break
            if (
                occ.role == "action"
                and occ.kind == "action"
                and subject
                and subject & set(name_info(occ.name).obj)
            ):
                failing_action = occ
        if failing_action is not None:
            failing_action.outcome = "failed"
            failing_action.error = failing_action.error or failure_event.name
    if failing_action is not None:
        reason = failing_action.error or "error"
        refs = list(failing_action.refs)
        if failure_event is not None and failure_event is not failing_action:
            reason = failure_event.name
            refs += failure_event.refs
        return True, failing_action.name, reason, refs
    if failure_event is not None:
        return True, failure_event.name, "", list(failure_event.refs)
    if tl.workflow_failed:
        return True, "", tl.workflow_failed, []
    return False, "", "", []


def _completion(
    tl: Timeline,
    occs: list[Occurrence],
    definition: SagaDefinition | None,
    learned: LearnedStats | None,
    saga_type: str,
) -> tuple[bool, str]:
    """(completed, the step that completed it): a completes_on step, the step the workflow
    ended after, or a learned terminal step.

    Steps that run after completion (a consumer updating the order's status) are not named.
    """
    if definition is not None and definition.completes_on:
        keys = {match_key(n) for n in definition.completes_on}
        hit = next((o for o in occs if o.outcome == "ok" and match_key(o.name) in keys), None)
        if hit is not None:
            return True, hit.name
    forward = [o for o in occs if o.role != "compensation" and o.outcome == "ok"]
    if tl.completed:
        ended = tl.completed_ns or tl.last_ns
        before = [o for o in forward if o.start_ns <= ended]
        return True, before[-1].name if before else ""
    if learned is not None:
        terminal = learned.terminal_steps.get(saga_type)
        finished = [o for o in forward if o.end_ns > 0]
        if terminal and finished and finished[-1].name in terminal:
            return True, finished[-1].name
    return False, ""


def _threshold(
    config: SagaConfig,
    learned: LearnedStats | None,
    saga_type: str,
    definition: SagaDefinition | None,
    prev: str,
    waiting: str,
    running: bool,
) -> tuple[int, str]:
    if running and definition is not None:
        key = match_key(waiting)
        for step in definition.steps:
            if step.timeout_ns and match_key(step.name) == key:
                return step.timeout_ns, "declared timeout"
    if learned is not None and prev:
        stats = learned.transition(saga_type, f"{prev}->{waiting}" if waiting else f"{prev}->*")
        if stats is not None and stats.samples >= config.stall_min_samples:
            value = max(int(config.stall_multiplier * stats.p99_ns), MIN_LEARNED_THRESHOLD_NS)
            return value, f"{config.stall_multiplier:g}× learned p99 over {stats.samples} samples"
    source = "default" if config.stall_after_ns == DEFAULT_STALL_AFTER_NS else "stall_after"
    return config.stall_after_ns, source


def _progress(occs: list[Occurrence]) -> tuple[str, list[str]]:
    """Describe the latest step boundary: 'charge_payment started at ...'."""
    best: tuple[int, str, Occurrence] | None = None
    for occ in occs:
        for when, verb in ((occ.start_ns, "started"), (occ.end_ns, "finished")):
            if occ.kind == "event":
                verb = "arrived"
            if when and (best is None or when >= best[0]):
                best = (when, verb, occ)
    if best is None:
        return "", []
    return f"{best[2].name} {best[1]} at {format_time(best[0])}", list(best[2].refs)


def _waiting(
    occs: list[Occurrence], definition: SagaDefinition | None, ledger: Ledger, failed_like: bool
) -> tuple[str, str, bool, str]:
    """(awaited step, text, is a running step, previous finished step)."""
    forward = [o for o in occs if o.role != "compensation" and o.kind == "action"]
    running = next((o for o in reversed(occs) if o.outcome == "running"), None)
    done = [o for o in forward if o.outcome == "ok" and o is not running]
    prev = done[-1].name if done else ""
    if running is not None:
        return running.name, f"{running.name} to finish", True, prev
    if failed_like and ledger.missing:
        name = ledger.missing[-1].compensation
        names = [o.compensation for o in reversed(ledger.missing)]
        return name, f"compensation {_join(names)}", False, prev
    if definition is not None and not failed_like:
        seen = {match_key(o.name) for o in occs}
        for step in definition.steps:
            if match_key(step.name) not in seen:
                return step.name, f"{step.name} to start", False, prev
    last = occs[-1].name if occs else ""
    return "", f"the step after {last}" if last else "its first step", False, prev


def classify(
    tl: Timeline, config: SagaConfig, now_ns: int, learned: LearnedStats | None
) -> Verdict:
    """Status, explanation and stall/compensation state of one saga's timeline."""
    saga_type, definition = choose_type(tl, config)
    occs = tl.occurrences
    if definition is not None:
        use_declared_names(occs, config.spellings.get(definition.name, {}))
    assign_roles(occs, definition, config)
    failed, failed_step, reason, refs = _find_failure(occs, definition, tl)
    ledger = settle(occs)
    last_progress = max([tl.last_ns] + [max(o.start_ns, o.end_ns) for o in occs])
    v = Verdict(
        saga_type,
        definition,
        "running",
        "",
        failed_step,
        reason,
        refs,
        failed,
        last_progress_ns=last_progress,
        ledger=ledger,
    )

    completed, completing = _completion(tl, occs, definition, learned, saga_type)
    failed_like = failed or bool(ledger.compensations)
    head = _failure_head(v)
    waiting, waiting_text, running, prev = _waiting(occs, definition, ledger, failed_like)
    idle = max(0, now_ns - last_progress)
    threshold, source = _threshold(config, learned, saga_type, definition, prev, waiting, running)
    overdue = idle >= threshold
    if failed_like:
        if ledger.failed:
            v.status = "compensation_failed"
            parts = [
                f"undoing {c.compensates} failed ({c.name})"
                if c.kind == "event"
                else f"compensation {c.name} failed" + (f" ({c.error})" if c.error else "")
                for c in ledger.failed
            ]
            v.explanation = f"{head}; {'; '.join(parts)}."
        elif (
            (ledger.missing or ledger.pending)
            and not (tl.ended and not ledger.pending)
            and not overdue
        ):
            v.status = "running"
            v.waiting_for = waiting
            v.explanation = f"{head}; compensating, waiting for {waiting_text}."
        elif ledger.missing:
            v.status = "compensation_missing"
            parts = [f"{a.name} completed but {a.compensation} never ran" for a in ledger.missing]
            undone = _undone_text(ledger)
            v.explanation = f"{head}; {'; '.join(parts)}" + (f"; {undone}" if undone else "") + "."
        elif ledger.pending:
            v.status = "stalled"
            v.waiting_for = waiting
        elif ledger.undone:
            v.status = "compensated"
            v.explanation = f"{head}; {_undone_text(ledger)}."
        else:
            v.status = "failed"
            v.explanation = f"{head}; nothing to undo."
    elif completed:
        v.status = "completed"
        v.explanation = (
            f"Completed after {completing} ({len(occs)} steps)." if completing else "Completed."
        )
    else:
        v.waiting_for = waiting
        v.status = "stalled" if overdue else "running"
        if v.status == "running":
            v.explanation = f"Running; waiting for {waiting_text}."
    if v.status == "stalled":
        since, evidence = _progress(occs)
        v.stall = Stall(waiting, waiting_text, since, idle, threshold, source, evidence)
        v.explanation = stall_text(v.stall)
    if v.status not in ("running", "stalled"):
        v.ended_ns = last_progress
    return v


def stall_text(stall: Stall) -> str:
    """'No progress for 12m since X started at T; waiting for X to finish (threshold 5m, default)'."""
    since = f" since {stall.since_text}" if stall.since_text else ""
    return (
        f"No progress for {format_duration(stall.idle_ns)}{since}; waiting for "
        f"{stall.waiting_text} (threshold {format_duration(stall.threshold_ns)}, "
        f"{stall.threshold_source})"
    )


def _failure_head(v: Verdict) -> str:
    if not v.failed:
        return "Compensated without a recorded failure"
    if v.failed_step and v.failure_reason and v.failure_reason != v.failed_step:
        return f"Failed at {v.failed_step} ({v.failure_reason})"
    if v.failed_step:
        # a failure event on its own: "Failed: PaymentDeclined"
        return f"Failed: {v.failed_step}"
    return f"Failed ({v.failure_reason})" if v.failure_reason else "Failed"


def _undone_text(ledger: Ledger) -> str:
    return ", ".join(f"{a.name} was undone by {c.name}" for a, c in ledger.undone)
