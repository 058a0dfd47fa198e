"""What a sample saga is meant to end as: the ground truth the sample systems hand back."""

from __future__ import annotations

import random
from dataclasses import dataclass

# outcome -> weight; mostly happy, with every kind of trouble the analysis should flag
OUTCOME_WEIGHTS: dict[str, float] = {
    "completed": 0.6,
    "compensated": 0.14,
    "compensation_missing": 0.1,
    "compensation_failed": 0.08,
    "stalled": 0.08,
}
OUTCOMES = tuple(OUTCOME_WEIGHTS)


@dataclass(frozen=True, slots=True)
class Expected:
    """The status a saga must get, and the step its finding (or wait) must name."""

    system: str  # "orchestrated" | "choreographed"
    status: str
    step: str = ""  # un-compensated action, failed compensation, or the step waited for
    order_id: str = ""
    retried: str = ""  # a step that failed transiently once and succeeded when retried


def draw_outcome(rng: random.Random) -> str:
    """One outcome drawn with ``OUTCOME_WEIGHTS``."""
    return rng.choices(OUTCOMES, weights=list(OUTCOME_WEIGHTS.values()))[0]


def run_tag(rng: random.Random) -> str:
    """A short tag that keeps order ids of different runs (and seeds) apart."""
    return f"{rng.getrandbits(24):06x}"


def plan_fields(rng: random.Random, outcome: str) -> dict[str, str]:
    """Which step fails or hangs and which undo is skipped or broken, for an outcome.

    Both sample systems share the same order flow (reserve, charge, ship) and draw their plans
    the same way, so the same seed gives the same story in either.
    """
    if outcome == "completed":
        # a happy saga may still hit a transient error (retried) or a redelivered event
        roll = rng.random()
        if roll < 0.25:
            return {"flaky": rng.choice(("reserve", "charge", "ship"))}
        if roll < 0.45:
            return {"duplicate": rng.choice(("OrderPlaced", "PaymentCharged"))}
        return {}
    if outcome == "stalled":
        return {"hang_at": rng.choice(("charge", "ship"))}
    fail_at = rng.choice(("charge", "ship"))
    undoable = ["release"] if fail_at == "charge" else ["refund", "release"]
    if outcome == "compensated":
        return {"fail_at": fail_at}
    if outcome == "compensation_missing":
        return {"fail_at": fail_at, "skip": rng.choice(undoable)}
    if outcome == "compensation_failed":
        return {"fail_at": fail_at, "broken": rng.choice(undoable)}
    raise ValueError(f"unknown outcome {outcome!r}")
