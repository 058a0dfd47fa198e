"""Analysis benchmark: full rebuild over a stored population, and the incremental cost on ingest.

1. Stores a seeded population (default 100k sagas, ~10 spans each: about 1M spans) in a fresh
   DuckDB file, then times ``collector.rebuild.rebuild`` (load + analyse + store).
2. Drives a real collector with the ingest benchmark's batches, analysis off then on, for
   ``--pairs`` pairs of runs, and prints the throughput cost of incremental analysis in each
   pair and their median.

    python benchmarks/analysis.py [--sagas 100000] [--seconds 30] [--pairs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb

from benchmarks.ingest import analysis_health, drive, make_requests, run_collector
from collector.analysis.config import SagaConfig
from collector.compiled import describe
from collector.normalize.records import RecordBatch
from collector.rebuild import RebuildStats, rebuild
from collector.store.writer import Writer
from sample_data.shapes import build_population, combined_config


def store_population(path: str, sagas: int) -> int:
    pop = build_population(sagas, seed=1)
    writer = Writer(path, max_pending_rows=10_000_000).start()
    chunk = 20_000
    futures = []
    for i in range(0, len(pop.spans), chunk):
        futures.append(writer.submit(RecordBatch(spans=pop.spans[i : i + chunk])))
    for i in range(0, len(pop.events), chunk):
        futures.append(writer.submit(RecordBatch(events=pop.events[i : i + chunk])))
    if pop.logs:
        futures.append(writer.submit(RecordBatch(logs=pop.logs)))
    stored = sum(f.result().stored for f in futures)
    writer.close()
    return stored


def time_rebuild(path: str, config: SagaConfig) -> RebuildStats:
    conn = duckdb.connect(path)
    try:
        return rebuild(conn, config)
    finally:
        conn.close()


def ingest_rate(analysis: bool, seconds: float) -> tuple[float, dict[str, float]]:
    requests = make_requests(int(seconds * 60_000 / 512) + 20, offset=30_000_000 + analysis)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = run_collector(tmp, [] if analysis else ["--no-analysis"])
        result = asyncio.run(drive(url + "/v1/traces", requests, 8, seconds))
        health = analysis_health(url)
        proc.terminate()
        proc.wait(timeout=120)
    return result["spans_per_s"], health


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sagas", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument(
        "--pairs",
        type=int,
        default=5,
        help="ingest runs with analysis off and on (0: the rebuild alone)",
    )
    args = ap.parse_args()
    config = SagaConfig.from_dict(combined_config())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "population.duckdb")
        t = time.perf_counter()
        stored = store_population(path, args.sagas)
        print(
            f"stored {stored:,} records for {args.sagas:,} sagas in {time.perf_counter() - t:.1f}s"
        )
        built = time_rebuild(path, config)
    # Runs alternate, analysis off then on, and the cost is the median of the pairs: one
    # pair alone moves by several points with whatever else the machine is doing.
    pairs = []
    for _ in range(args.pairs):
        off, _ = ingest_rate(False, args.seconds)
        on, health = ingest_rate(True, args.seconds)
        pairs.append((off, on, health))
    costs = [1 - on / off for off, on, _ in pairs]
    print()
    print(describe())
    print(f"{'measure':<52}{'value':>12}   target")
    rows = [
        (f"full rebuild: read {built.records:,} records (s)", f"{built.load_s:.1f}", ""),
        (f"full rebuild: resolve {built.sagas:,} sagas (s)", f"{built.identity_s:.1f}", ""),
        (
            f"full rebuild: analyse and insert, {built.processes} proc. (s)",
            f"{built.analyse_s:.1f}",
            "",
        ),
        ("full rebuild: insert findings, commit (s)", f"{built.store_s:.1f}", ""),
        ("full rebuild total (s)", f"{built.total_s:.1f}", "< 10"),
    ]
    for i, ((off, on, _), cost) in enumerate(zip(pairs, costs, strict=True), 1):
        rows += [
            (f"pair {i}: ingest, analysis off (spans/s)", f"{off:,.0f}", ""),
            (f"pair {i}: ingest, incremental analysis on (spans/s)", f"{on:,.0f}", ""),
            (f"pair {i}: cost", f"{cost * 100:.0f}%", ""),
        ]
    if costs:
        median = statistics.median(costs)
        rows.append(("incremental analysis cost, median of pairs", f"{median * 100:.0f}%", "< 20%"))
    for name, value, target in rows:
        print(f"{name:<52}{value:>12}   {target}")
    for i, (_, _, health) in enumerate(pairs, 1):
        print(
            f"pair {i}, analysis on: {health['sagas']:,.0f} sagas materialized, "
            f"{health['backlog']:,.0f} traces still waiting (analysis {health['lag_s']:.1f} s "
            f"behind, paused {health['paused_s']:.1f} s for ingest), "
            f"{health['failures']:.0f} failed passes"
        )
    if any(health["failures"] for _, _, health in pairs):
        raise SystemExit("analysis passes failed: see the collector's log")


if __name__ == "__main__":
    main()
