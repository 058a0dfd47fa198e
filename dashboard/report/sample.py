"""Seeded generator of saga dicts (``Saga.to_dict()`` plus steps and findings) for tests, demos
and benchmarks. Same seed, same sagas."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from collector.analysis.model import Finding, Saga, Step

_ORDER_STEPS = (
    ("reserve_inventory", "release_inventory", "inventory"),
    ("charge_payment", "refund_payment", "payments"),
    ("ship_order", "", "shipping"),
)
_TRIP_STEPS = (
    ("book_flight", "cancel_flight", "flights"),
    ("book_hotel", "cancel_hotel", "hotels"),
    ("book_car", "cancel_car", "cars"),
)
_ACTORS = ("alice@example.com", "svc-checkout", "bob", "")
_SECOND = 1_000_000_000
_FIELDS = {cls: tuple(f.name for f in fields(cls)) for cls in (Saga, Step, Finding)}


def generate_sagas(
    n: int, seed: int = 42, start_ns: int = 1_767_225_600 * _SECOND
) -> Iterator[dict[str, Any]]:
    """``n`` saga dicts with a realistic mix of outcomes; lazily, so 100k cost no memory."""
    rng = random.Random(seed)
    t = start_ns
    for i in range(n):
        t += rng.randint(1, 30) * _SECOND // 10
        yield _saga(rng, i, t)


def _saga(rng: random.Random, i: int, t0: int) -> dict[str, Any]:
    orders = rng.random() < 0.7
    saga_type = "OrderSaga" if orders else "TripBooking"
    plan = _ORDER_STEPS if orders else _TRIP_STEPS
    key = f"{'order' if orders else 'trip'}-{i:06d}"
    business_key = f"order.id={1000 + i}" if orders else f"booking.id=B{i:06d}"
    roll = rng.random()
    fail_at = -1
    status = "completed"
    if roll < 0.08:
        fail_at, status = 1, "compensated"
    elif roll < 0.11:
        fail_at, status = 2, "compensation_missing"
    elif roll < 0.13:
        fail_at, status = 2, "compensation_failed"
    elif roll < 0.15:
        status = "stalled"
    elif roll < 0.17:
        fail_at, status = 0, "failed"
    actor = rng.choice(_ACTORS)
    trace = f"{rng.getrandbits(128):032x}"
    steps: list[Step] = []
    t = t0
    done: list[tuple[str, str, str]] = []
    for pos, (name, comp, service) in enumerate(plan):
        if status == "stalled" and pos == 2:
            steps.append(
                _step(key, len(steps), name, "action", service, t, 0, "running", actor, trace, rng)
            )
            break
        dur = rng.randint(20, 900) * 1_000_000
        failed = pos == fail_at
        steps.append(
            _step(
                key,
                len(steps),
                name,
                "action",
                service,
                t,
                t + dur,
                "failed" if failed else "ok",
                actor,
                trace,
                rng,
            )
        )
        if failed:
            steps[-1].error = (
                "card 4111 1111 1111 1111 declined"
                if "payment" in name
                else f"{service} unavailable"
            )
        t += dur + rng.randint(1, 50) * 1_000_000
        if failed:
            break
        done.append((name, comp, service))
    findings: list[Finding] = []
    if fail_at >= 0 and status != "failed":
        for pos, (name, comp, service) in enumerate(reversed(done)):
            if not comp:
                continue
            outcome = "ok"
            if status == "compensation_missing" and pos == 0:
                findings.append(
                    Finding(
                        finding_id=f"f-{key}-missing-{comp}",
                        saga_key=key,
                        kind="missing_compensation",
                        severity="critical",
                        step=name,
                        explanation=f"{name} completed but {comp} never ran after the saga failed.",
                        evidence=[f"span:{trace}:{len(steps):016x}"],
                        detected_ns=t + 300 * _SECOND,
                        details={"expected": comp},
                    )
                )
                continue
            if status == "compensation_failed" and pos == 0:
                outcome = "failed"
            dur = rng.randint(10, 400) * 1_000_000
            s = _step(
                key, len(steps), comp, "compensation", service, t, t + dur, outcome, "", trace, rng
            )
            s.compensates = name
            if outcome == "failed":
                s.error = "timeout talking to " + service
                findings.append(
                    Finding(
                        finding_id=f"f-{key}-compfail-{comp}",
                        saga_key=key,
                        kind="compensation_failed",
                        severity="critical",
                        step=comp,
                        explanation=f"{comp} failed, so {name} is still in effect.",
                        evidence=list(s.records),
                        detected_ns=t + dur,
                    )
                )
            steps.append(s)
            t += dur + rng.randint(1, 50) * 1_000_000
    if status == "stalled":
        findings.append(
            Finding(
                finding_id=f"f-{key}-stall",
                saga_key=key,
                kind="stall",
                severity="warning",
                step=steps[-1].name,
                explanation=f"No progress for 5m; waiting for {steps[-1].name} to finish.",
                evidence=list(steps[-1].records),
                detected_ns=t + 300 * _SECOND,
                details={"stall_after_s": 300},
            )
        )
    ended = 0 if status == "stalled" else t
    failed_step = next(
        (s.name for s in steps if s.outcome == "failed" and s.step_type == "action"), ""
    )
    saga = Saga(
        saga_key=key,
        saga_type=saga_type,
        status=status,
        started_ns=t0,
        ended_ns=ended,
        last_progress_ns=t,
        explanation=_explain(status, failed_step),
        services=sorted({s.service for s in steps}),
        trace_ids=[trace],
        business_keys=[business_key] + (["user.email=" + actor] if "@" in actor else []),
        step_count=len(steps),
        finding_count=len(findings),
        record_count=sum(len(s.records) for s in steps),
        failed_step=failed_step,
        waiting_for=steps[-1].name if status == "stalled" else "",
        identity_rule="saga.id",
    )
    d = _plain(saga)
    d["steps"] = [_plain(s) for s in steps]
    d["findings"] = [_plain(f) for f in findings]
    return d


def _plain(obj: Saga | Step | Finding) -> dict[str, Any]:
    """``obj.to_dict()`` without ``asdict``'s deep copy: the objects are fresh and unshared."""
    return {name: getattr(obj, name) for name in _FIELDS[type(obj)]}


def _step(
    key: str,
    seq: int,
    name: str,
    step_type: str,
    service: str,
    start: int,
    end: int,
    outcome: str,
    actor: str,
    trace: str,
    rng: random.Random,
) -> Step:
    span = f"{rng.getrandbits(64):016x}"
    records = [f"span:{trace}:{span}"]
    if service in ("payments", "shipping"):
        # These services talk over the broker, so their steps carry the message they consumed.
        records.append(f"event:rabbitmq:{rng.getrandbits(48):012x}")
    return Step(
        saga_key=key,
        seq=seq,
        name=name,
        step_type=step_type,
        service=service,
        start_ns=start,
        end_ns=end,
        outcome=outcome,
        actor=actor,
        records=records,
    )


def _explain(status: str, failed_step: str) -> str:
    return {
        "completed": "All steps completed.",
        "compensated": f"{failed_step} failed and every completed step was undone.",
        "compensation_missing": f"{failed_step} failed and a completed step was never undone.",
        "compensation_failed": f"{failed_step} failed and a compensation failed.",
        "stalled": "No progress within the stall threshold.",
        "failed": f"{failed_step} failed before anything needed undoing.",
    }.get(status, status)
