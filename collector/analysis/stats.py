"""What past sagas teach: per-transition duration percentiles and terminal steps per saga type.

A transition ``A->B`` lasts from the end of step A to the end of the following step B, i.e.
the gap between two moments of progress, which is exactly what a stall measures.
``A->*`` aggregates every transition leaving A, for when the next step is not known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from collector.analysis.model import AnalysisResult, Step

TERMINAL_SHARE = 0.95  # a step is terminal when it ends at least this share of the sagas it is in
_FAILED_LIKE = frozenset({"failed", "compensated", "compensation_missing", "compensation_failed"})


@dataclass(frozen=True, slots=True)
class TransitionStats:
    samples: int
    p99_ns: int


@dataclass(slots=True)
class LearnedStats:
    """Learned percentiles (saga type -> "A->B" -> stats) and terminal steps per saga type."""

    transitions: dict[str, dict[str, TransitionStats]] = field(default_factory=dict)
    terminal_steps: dict[str, frozenset[str]] = field(default_factory=dict)

    def transition(self, saga_type: str, key: str) -> TransitionStats | None:
        """Stats of one transition of a saga type, if any were learned."""
        return self.transitions.get(saga_type, {}).get(key)


def p99(samples: list[int]) -> int:
    """Nearest-rank 99th percentile."""
    ordered = sorted(samples)
    rank = max(0, -(-99 * len(ordered) // 100) - 1)
    return ordered[rank]


def learn_stats(
    source: AnalysisResult | Iterable[Step],
    saga_types: Mapping[str, str] | None = None,
    *,
    min_terminal_samples: int = 20,
) -> LearnedStats:
    """Learn transition percentiles and terminal steps from analysed sagas.

    Pass an ``AnalysisResult`` (saga types and statuses come from its sagas) or plain steps
    with ``saga_types`` (saga key -> type).
    """
    statuses: dict[str, str] = {}
    if isinstance(source, AnalysisResult):
        types = {s.saga_key: s.saga_type for s in source.sagas}
        statuses = {s.saga_key: s.status for s in source.sagas}
        steps: Iterable[Step] = source.steps
    else:
        types = dict(saga_types or {})
        steps = source
    by_saga: dict[str, list[Step]] = {}
    for step in steps:
        by_saga.setdefault(step.saga_key, []).append(step)
    samples: dict[str, dict[str, list[int]]] = {}
    last_count: dict[str, dict[str, int]] = {}
    seen_count: dict[str, dict[str, int]] = {}
    for saga_key, saga_steps in by_saga.items():
        saga_type = types.get(saga_key, "")
        saga_steps.sort(key=lambda s: s.seq)
        forward = [
            s
            for s in saga_steps
            if s.step_type != "compensation" and s.outcome == "ok" and s.end_ns > 0
        ]
        per_type = samples.setdefault(saga_type, {})
        for a, b in pairwise(forward):
            gap = max(0, b.end_ns - a.end_ns)
            per_type.setdefault(f"{a.name}->{b.name}", []).append(gap)
            per_type.setdefault(f"{a.name}->*", []).append(gap)
        if statuses.get(saga_key) in _FAILED_LIKE or not forward:
            continue
        seen = seen_count.setdefault(saga_type, {})
        for name in {s.name for s in forward}:
            seen[name] = seen.get(name, 0) + 1
        lasts = last_count.setdefault(saga_type, {})
        lasts[forward[-1].name] = lasts.get(forward[-1].name, 0) + 1
    stats = LearnedStats()
    for saga_type, per_type in samples.items():
        stats.transitions[saga_type] = {
            key: TransitionStats(len(values), p99(values)) for key, values in per_type.items()
        }
    for saga_type, lasts in last_count.items():
        seen = seen_count[saga_type]
        terminal = frozenset(
            name
            for name, count in lasts.items()
            if count >= min_terminal_samples and count >= TERMINAL_SHARE * seen[name]
        )
        if terminal:
            stats.terminal_steps[saga_type] = terminal
    return stats
