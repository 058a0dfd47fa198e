"""Time the pure analysis core over a seeded population (default 100k sagas, ~10 spans each).

Run: python benchmarks/analysis_core.py [--sagas N] [--seed S] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from collector.analysis.config import SagaConfig
from collector.analysis.core import analyze
from sample_data.shapes import build_population, combined_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    t0 = time.perf_counter()
    pop = build_population(args.sagas, seed=args.seed)
    built = time.perf_counter() - t0
    config = SagaConfig.from_dict(combined_config())
    print(
        f"built {args.sagas} sagas: {len(pop.spans)} spans, {len(pop.logs)} logs, "
        f"{len(pop.events)} events in {built:.1f}s"
    )
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    result = analyze(pop.spans, pop.logs, pop.events, config, pop.now_ns)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    statuses: dict[str, int] = {}
    for saga in result.sagas:
        statuses[saga.status] = statuses.get(saga.status, 0) + 1
    print(
        f"analyze: {len(result.sagas)} sagas, {len(result.steps)} steps, "
        f"{len(result.findings)} findings in {elapsed:.2f}s wall, {cpu:.2f}s cpu"
    )
    print(f"{len(pop.spans) / elapsed:,.0f} spans/s wall, {len(pop.spans) / cpu:,.0f} spans/s cpu")
    print("statuses:", dict(sorted(statuses.items())))


if __name__ == "__main__":
    main()
