"""Report export at scale: 100k seeded sagas streamed into each format.

Each format runs in its own child process so peak RSS is that format's alone::

    .venv/bin/python benchmarks/report.py [--sagas 100000] [--formats json,csv,ocel,pdf]

Targets: JSON under 60 s and 500 MB peak RSS.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sagas", type=int, default=100_000)
    parser.add_argument("--formats", default="json,csv,ocel,pdf")
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


if __name__ == "__main__":
    main()
