"""Report export at scale: 100k seeded sagas streamed into each format.

Each format runs in its own child process so peak RSS is that format's alone::

    .venv/bin/python benchmarks/report.py [--sagas 100000] [--formats json,csv,ocel,pdf]
        [--stored]

Targets: JSON under 60 s and 500 MB peak RSS.

With ``--stored`` it also stores the analysis benchmark's population of ``--sagas`` sagas,
analyses it, and times ``sagalens report --format json`` over all of it as a user runs it:
from the file, and through a collector serving that file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.report import Completeness, ReportMeta, export_report, verify
from dashboard.report.sample import generate_sagas

T0 = 1_767_225_600 * 1_000_000_000


def run_one(fmt: str, sagas: int, out_dir: Path) -> dict[str, object]:
    """Export ``sagas`` sagas as ``fmt`` in this process and measure it."""
    meta = ReportMeta(
        generated_ns=T0,
        generated_by="bench",
        host="bench",
        sagalens_version="bench",
        from_ns=T0,
        to_ns=T0 + 86_400 * 10**9,
    )
    completeness = Completeness(sources=("generator",), record_counts={"sagas": sagas})
    out = out_dir / f"report.{fmt}"
    start = time.perf_counter()
    result = export_report(generate_sagas(sagas, seed=1), fmt, out, meta, completeness, None, None)
    export_s = time.perf_counter() - start
    export_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    ok = verify(out).ok
    verify_s = time.perf_counter() - start
    return {
        "format": fmt,
        "sagas": result.saga_count,
        "records": result.record_count,
        "export_s": round(export_s, 1),
        "verify_s": round(verify_s, 1),
        "verified": ok,
        "size_mb": round(out.stat().st_size / 1e6, 1),
        "export_rss_mb": round(export_rss),
        "verify_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """Run ``sagalens ARGS`` in a child: (seconds, peak RSS in MB, the line saying what it
    wrote). The peak is the child's own high-water mark, polled from /proc, since
    getrusage counts this process's size at the fork into it."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    status_file = Path(f"/proc/{proc.pid}/status")
    peak_kb = 0
    while proc.poll() is None:
        try:
            for line in status_file.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    assert proc.stdout is not None
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"sagalens {' '.join(args)} failed:\n{output}")
    wrote = [line for line in output.splitlines() if line.startswith("wrote ")]
    return seconds, peak_kb / 1024, wrote[-1] if wrote else output.strip()


def stored_exports(sagas: int) -> None:
    """``sagalens report`` over an analysed store of ``sagas`` sagas: file, then collector."""
    from benchmarks.analysis import store_population, time_rebuild
    from benchmarks.ingest import run_collector
    from collector.analysis.config import SagaConfig
    from sample_data.shapes import combined_config

    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "b.duckdb")  # the file run_collector serves
        store_population(db, sagas)
        time_rebuild(db, SagaConfig.from_dict(combined_config()))
        out = os.path.join(tmp, "report.json")
        rows = [
            (
                "from the file (--db)",
                *run_cli(["report", "--db", db, "--format", "json", "--out", out]),
            )
        ]
        proc, url = run_collector(tmp, ["--no-analysis"])
        try:
            rows.append(
                (
                    "through the collector (--collector)",
                    *run_cli(["report", "--collector", url, "--format", "json", "--out", out]),
                )
            )
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    print()
    print(f"sagalens report --format json over an analysed store of {sagas:,} sagas")
    print(f"{'read':<36} {'s':>7} {'client RSS MB':>14}   what it wrote")
    for name, seconds, rss, line in rows:
        print(f"{name:<36} {seconds:>7.1f} {rss:>14,.0f}   {line.split(': ', 1)[-1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--formats", default="json,csv,ocel,pdf")
    parser.add_argument("--stored", action="store_true", help="also export a stored population")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(args.child, args.sagas, Path(tmp))))
        return
    print(
        f"{'format':<6} {'sagas':>8} {'records':>9} {'export s':>9} {'verify s':>9} "
        f"{'MB':>7} {'export RSS MB':>14} {'+verify RSS MB':>15}"
    )
    for fmt in args.formats.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", fmt, "--sagas", str(args.sagas)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['format']:<6} {r['sagas']:>8,} {r['records']:>9,} {r['export_s']:>9} "
            f"{r['verify_s']:>9} {r['size_mb']:>7} {r['export_rss_mb']:>14,} "
            f"{r['verify_rss_mb']:>15,}" + ("" if r["verified"] else "  VERIFY FAILED")
        )
    if args.stored:
        stored_exports(args.sagas)


if __name__ == "__main__":
    main()
