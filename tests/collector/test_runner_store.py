"""What the collector's analysis runner reads back from the store: learned stats, due sagas."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from collector.analysis.config import SagaConfig
from collector.analysis.model import Step
from collector.analysis.stats import learn_stats
from collector.runner import _DUE_TRACES, earliest_stall_ns, learn_from_store
from collector.store.writer import migrate

SECOND = 1_000_000_000


def random_steps(rng: random.Random, sagas: int) -> tuple[list[Step], dict[str, str]]:
    names = ["reserve", "charge", "ship", "notify", "release", "refund"]
    steps: list[Step] = []
    types: dict[str, str] = {}
    for i in range(sagas):
        key = f"saga-{i}"
        types[key] = rng.choice(["Order", "Booking", ""])
        t = rng.randrange(1, 10**6) * SECOND
        count = rng.randint(0, 6)
        for seq in range(count):
            t += rng.randrange(0, 30) * SECOND // 10
            steps.append(
                Step(
                    saga_key=key,
                    seq=seq,
                    name=rng.choice(names[:4]) if seq < count - 1 else rng.choice(names),
                    step_type=rng.choice(["action", "action", "action", "compensation", "event"]),
                    service="svc",
                    start_ns=t - SECOND,
                    end_ns=rng.choice([t, t, t, t, 0]),
                    outcome=rng.choice(["ok", "ok", "ok", "ok", "failed", "running"]),
                )
            )
    return steps, types


def store_with(path: Path, steps: list[Step], types: dict[str, str]) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path))
    migrate(conn)
    conn.executemany(
        "INSERT INTO sagas (saga_key, saga_type, status, last_progress_ns) VALUES (?, ?, ?, ?)",
        [
            [key, saga_type or None, "running", i]
            for i, (key, saga_type) in enumerate(types.items())
        ],
    )
    conn.executemany(
        "INSERT INTO steps (saga_key, seq, name, step_type, service, start_ns, end_ns, outcome) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            [s.saga_key, s.seq, s.name, s.step_type, s.service, s.start_ns, s.end_ns, s.outcome]
            for s in steps
        ],
    )
    return conn


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stats_learned_in_the_store_equal_those_learned_in_python(
    tmp_path: Path, seed: int
) -> None:
    steps, types = random_steps(random.Random(seed), 400)
    conn = store_with(tmp_path / "s.duckdb", steps, types)
    expected = learn_stats(steps, types, min_terminal_samples=5)
    got = learn_from_store(conn, min_terminal_samples=5)
    assert got.transitions == expected.transitions
    assert got.terminal_steps == expected.terminal_steps
    assert sum(len(t) for t in got.transitions.values()) > 10
    assert got.terminal_steps, "the data should have some terminal steps to compare"


def test_only_the_most_recent_sagas_teach(tmp_path: Path) -> None:
    steps, types = random_steps(random.Random(9), 200)
    conn = store_with(tmp_path / "s.duckdb", steps, types)
    recent = set(list(types)[-50:])  # last_progress_ns grows with the insertion order
    expected = learn_stats([s for s in steps if s.saga_key in recent], types)
    assert learn_from_store(conn, recent_sagas=50).transitions == expected.transitions


def test_the_sweep_takes_idle_running_sagas_and_stale_stall_texts_only(tmp_path: Path) -> None:
    now = 10_000 * SECOND
    conn = duckdb.connect(str(tmp_path / "d.duckdb"))
    migrate(conn)
    rows = [
        # key, status, last progress, last written
        ("busy", "running", now - SECOND // 2, now - SECOND // 2),
        ("idle", "running", now - 5 * SECOND, now - 5 * SECOND),
        ("fresh-stall", "stalled", now - 3600 * SECOND, now - 60 * SECOND),
        ("stale-stall", "stalled", now - 3600 * SECOND, now - 400 * SECOND),
        ("done", "completed", now - 3600 * SECOND, now - 3600 * SECOND),
    ]
    conn.executemany(
        "INSERT INTO sagas (saga_key, status, last_progress_ns, updated_ns) VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.executemany(
        "INSERT INTO saga_traces VALUES (?, ?)", [[f"trace-{r[0]}", r[0]] for r in rows]
    )
    earliest = earliest_stall_ns(SagaConfig.from_dict({}))
    assert earliest == SECOND  # learned thresholds never go below a second
    due = {
        r[0]
        for r in conn.execute(_DUE_TRACES, {"idle_since": now - earliest, "now": now}).fetchall()
    }
    assert due == {"trace-idle", "trace-stale-stall"}


def test_a_declared_timeout_shorter_than_a_second_makes_sagas_due_sooner() -> None:
    config = SagaConfig.from_dict(
        {"sagas": {"Order": {"steps": [{"name": "charge", "timeout": "200ms"}]}}}
    )
    assert earliest_stall_ns(config) == 200_000_000
