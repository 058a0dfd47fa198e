"""What a sample saga is meant to end as: the ground truth the sample systems hand back."""

from __future__ import annotations

import argparse
import random
from collections.abc import Mapping
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


def draw_outcome(rng: random.Random, weights: Mapping[str, float] | None = None) -> str:
    """One outcome drawn with ``weights`` (default ``OUTCOME_WEIGHTS``)."""
    w = weights or OUTCOME_WEIGHTS
    return rng.choices(OUTCOMES, weights=[w.get(o, 0.0) for o in OUTCOMES])[0]


def parse_faults(spec: str) -> dict[str, float]:
    """Outcome weights from ``"compensation_missing=0.3,stalled=0.1"``.

    Each named trouble gets its share of sagas (0..1); ``completed`` gets the rest.
    Troubles not named keep their default share. Raises ``ValueError`` with a clear message.
    """
    weights = dict(OUTCOME_WEIGHTS)
    troubles = [o for o in OUTCOMES if o != "completed"]
    named: set[str] = set()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in troubles:
            raise ValueError(
                f"fault rate {item!r}: expected NAME=SHARE with NAME one of {', '.join(troubles)}"
            )
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"fault rate {item!r}: {value.strip()!r} is not a number") from None
        if not 0 <= share <= 1:
            raise ValueError(f"fault rate {item!r}: the share must be between 0 and 1")
        weights[name] = share
        named.add(name)
    rest = 1 - sum(weights[o] for o in troubles)
    if rest < -1e-9:
        kept = ", ".join(f"{o}={weights[o]:g}" for o in troubles if o not in named)
        raise ValueError(
            f"fault rates add up to {1 - rest:.2f}, more than 1"
            + (f" (troubles not named keep their default share: {kept})" if kept else "")
        )
    weights["completed"] = max(rest, 0.0)
    return weights


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


def faults_argument(spec: str) -> dict[str, float]:
    """``parse_faults`` for argparse: a bad spec is reported with its reason."""
    try:
        return parse_faults(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_faults_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--faults`` option of the sample systems' command lines."""
    parser.add_argument(
        "--faults",
        type=faults_argument,
        default=None,
        help="share of sagas per trouble, e.g. compensation_missing=0.3,stalled=0.1 "
        "(the rest complete)",
    )
