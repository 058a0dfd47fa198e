"""Write the recorded data files from the two sample systems (seeded, byte-for-byte stable).

``recorded/orders.otlp.jsonl`` holds one OTLP/JSON ExportTraceServiceRequest per line, as
the OpenTelemetry Collector's file exporter writes them; ``recorded/events.jsonl`` one
CloudEvent per line; ``recorded/expected.json`` the status every saga was generated as.
Regenerate with ``python -m sample_data.record``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from sample_data import RECORDED_EVENTS, RECORDED_TRACES
from sample_data.choreographed import LocalBus, Shop
from sample_data.orchestrated import STYLES, OrderServices, play_order_saga
from sample_data.outcomes import Expected, draw_outcome
from sample_data.publish import EventList
from sample_data.telemetry import Telemetry, encode_otlp_json

BASE_NS = 1_795_341_600 * 1_000_000_000  # 2026-11-22 10:00:00Z
SPACING_NS = 3_000_000_000
SEED = 2026


def _line(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False) + "\n"


def record(
    n_sagas: int = 200, *, seed: int = SEED, traces: Path = RECORDED_TRACES,
    events: Path = RECORDED_EVENTS,
) -> dict[str, Expected]:  # fmt: skip
    """Play ``n_sagas`` sagas (alternating systems) into the recorded files; return the truth."""
    rng = random.Random(seed)
    telemetry = Telemetry(rng=random.Random(seed + 1))
    sink = EventList()
    truth: dict[str, Expected] = {}
    traces.parent.mkdir(parents=True, exist_ok=True)
    shop = Shop(telemetry, LocalBus(sink))
    with OrderServices(telemetry) as services, open(traces, "w", encoding="utf-8") as out:
        for i in range(n_sagas):
            outcome = draw_outcome(rng)
            start = BASE_NS + i * SPACING_NS
            if i % 2 == 0:
                style = STYLES[(i // 2) % 2]
                key, expected = play_order_saga(
                    services, rng, f"A-rec-{i // 2:05d}", outcome, style, start
                )
            else:
                key, expected = shop.play(rng, f"B-rec-{i // 2:05d}", outcome, start)
            truth[key] = expected
            spans = telemetry.take_finished()
            if spans:
                out.write(_line(encode_otlp_json(spans)))
    with open(events, "w", encoding="utf-8") as out:
        for event in sink.events:
            out.write(_line(event))
    expected_file = traces.parent / "expected.json"
    expected_file.write_text(
        json.dumps(
            {k: {"system": e.system, "status": e.status, "step": e.step} for k, e in truth.items()},
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    return truth


def main(argv: list[str] | None = None) -> None:
    """Command line: regenerate the recorded files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=200)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=RECORDED_TRACES.parent)
    args = parser.parse_args(argv)
    truth = record(
        args.sagas,
        seed=args.seed,
        traces=args.out / RECORDED_TRACES.name,
        events=args.out / RECORDED_EVENTS.name,
    )
    print(f"recorded {len(truth)} sagas into {args.out}")


if __name__ == "__main__":
    main()
