"""Compensation pairs: which steps undo which, declared or inferred, and what is still owed.

Sources, strongest first: ``saga.step.type``/``saga.compensates`` on the span, the saga's
definition in the definitions file (then any definition), and finally the wording of the
names (reserve/release, charge/refund, ... and undo-/compensate-/revert-/rollback- prefixes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from collector.analysis.config import SagaConfig, SagaDefinition
from collector.analysis.names import match_key, name_info, pairing, render
from collector.analysis.timeline import Occurrence


def _definition_tables(
    definition: SagaDefinition | None, config: SagaConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """(action match key -> compensation name, compensation match key -> action name)."""
    if definition is not None:
        actions = {match_key(s.name): s.compensation for s in definition.steps}
        undoes = {match_key(s.compensation): s.name for s in definition.steps if s.compensation}
        return actions, undoes
    actions = {}
    for saga in config.sagas.values():
        for s in saga.steps:
            actions.setdefault(match_key(s.name), s.compensation)
    return actions, {k: v for k, v in config.compensation_of.items()}


def assign_roles(
    occurrences: Sequence[Occurrence], definition: SagaDefinition | None, config: SagaConfig
) -> None:
    """Decide for every occurrence whether it is a compensable action or a compensation."""
    declared_actions, declared_undo = _definition_tables(definition, config)
    present = {match_key(o.name): o.name for o in occurrences}
    observed_undo: dict[str, str] = {}  # action match key -> compensation seen for it
    for occ in occurrences:
        if occ.declared_compensates:
            observed_undo.setdefault(match_key(occ.declared_compensates), occ.name)
    for occ in occurrences:
        key = match_key(occ.name)
        info = name_info(occ.name)
        if info.failure:
            # InventoryReleaseFailed: a compensation that failed, not a new saga failure
            pair = pairing(render(info.stem, info.style))
            if pair.role == "compensation":
                occ.role = "compensation"
                occ.inferred = True
                occ.targets = pair.targets
                occ.compensates = next(
                    (present[t] for t in pair.targets if t in present), pair.counterpart
                )
            continue
        if occ.declared_type == "compensation" or occ.declared_compensates:
            occ.role = "compensation"
            target = occ.declared_compensates or pairing(occ.name).counterpart
            if not occ.declared_compensates:
                occ.inferred = True
                occ.targets = pairing(occ.name).targets or (match_key(target),)
            else:
                occ.targets = (match_key(target),)
            occ.compensates = present.get(occ.targets[0], target) if occ.targets else target
            for t in occ.targets:
                if t in present:
                    occ.compensates = present[t]
                    break
            continue
        if key in declared_undo:
            occ.role = "compensation"
            occ.compensates = declared_undo[key]
            occ.targets = (match_key(occ.compensates),)
            continue
        if key in declared_actions:
            occ.role = "action"
            occ.compensation = declared_actions[key] or observed_undo.get(key, "")
            continue
        if key in observed_undo:
            occ.role = "action"
            occ.compensation = observed_undo[key]
            continue
        if occ.declared_type == "action":
            occ.role = "action"
            pair = pairing(occ.name)
            if pair.role == "action":
                occ.compensation, occ.inferred = pair.counterpart, True
            continue
        pair = pairing(occ.name)
        if pair.role == "compensation" and (pair.strong or any(t in present for t in pair.targets)):
            occ.role = "compensation"
            occ.inferred = True
            occ.targets = pair.targets
            occ.compensates = next(
                (present[t] for t in pair.targets if t in present), pair.counterpart
            )
        elif pair.role == "action":
            occ.role = "action"
            occ.compensation = pair.counterpart
            occ.inferred = True
        elif occ.kind == "action":
            occ.role = "action"


@dataclass(slots=True)
class Ledger:
    """What the compensations of one saga settled and what they left open."""

    undone: list[tuple[Occurrence, Occurrence]] = field(default_factory=list)  # action, comp
    missing: list[Occurrence] = field(default_factory=list)  # compensable, done, never undone
    pending: list[Occurrence] = field(default_factory=list)  # compensations still running
    failed: list[Occurrence] = field(default_factory=list)  # compensations that failed
    stray: list[Occurrence] = field(default_factory=list)  # undo a step that never ran
    compensations: list[Occurrence] = field(default_factory=list)

    # Written out, not generated: see SpanRecord.__init__ (collector/normalize/records.py).
    def __init__(
        self,
        undone: list[tuple[Occurrence, Occurrence]] | None = None,
        missing: list[Occurrence] | None = None,
        pending: list[Occurrence] | None = None,
        failed: list[Occurrence] | None = None,
        stray: list[Occurrence] | None = None,
        compensations: list[Occurrence] | None = None,
    ) -> None:
        self.undone = [] if undone is None else undone
        self.missing = [] if missing is None else missing
        self.pending = [] if pending is None else pending
        self.failed = [] if failed is None else failed
        self.stray = [] if stray is None else stray
        self.compensations = [] if compensations is None else compensations


def settle(occurrences: Sequence[Occurrence]) -> Ledger:
    """Match completed compensable actions to the compensations that undid them."""
    ledger = Ledger()
    comps = [o for o in occurrences if o.role == "compensation"]
    ledger.compensations = comps
    ran = {match_key(o.name) for o in occurrences if o.role == "action"}
    by_target: dict[str, list[Occurrence]] = {}
    for comp in comps:
        for target in comp.targets:
            by_target.setdefault(target, []).append(comp)
        if comp.outcome == "failed":
            ledger.failed.append(comp)
        elif comp.outcome == "running":
            ledger.pending.append(comp)
        if not any(t in ran for t in comp.targets):
            ledger.stray.append(comp)
    for occ in occurrences:
        if occ.role != "action" or occ.outcome != "ok" or not occ.compensation:
            continue
        candidates = by_target.get(match_key(occ.name), [])
        done = next((c for c in candidates if c.outcome == "ok"), None)
        if done is not None:
            ledger.undone.append((occ, done))
        elif not candidates:
            ledger.missing.append(occ)
    return ledger
