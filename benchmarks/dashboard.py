"""Dashboard benchmark: page time to visible content in Chromium and API query p95.

Starts `sagalens up` on free ports, loads ``--sagas`` sagas of ``--steps`` spans each (OTLP
protobuf with the ``saga.*`` convention, posted in parallel) plus one saga of ``--big-steps``
steps, waits until analysis has caught up, then times each API query behind the pages
(p95 over ``--repeats`` calls) and each page from navigation until its content is visible.

    python benchmarks/dashboard.py [--sagas 100000] [--steps 10] [--big-steps 1000] [--db FILE]

With ``--db FILE`` the store is kept there; a later run with the same file skips the loading.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MIN = 60_000_000_000
SEC = 1_000_000_000
STEPS = ["reserve_inventory", "charge_payment", "allocate_truck", "ship_order", "notify_customer"]
COMPENSATION = {
    "reserve_inventory": "release_inventory",
    "charge_payment": "refund_payment",
    "allocate_truck": "release_truck",
}
SERVICES = {
    "reserve_inventory": "inventory",
    "release_inventory": "inventory",
    "charge_payment": "payment",
    "refund_payment": "payment",
    "allocate_truck": "fleet",
    "release_truck": "fleet",
    "ship_order": "shipping",
    "notify_customer": "notifications",
    "update_loyalty": "loyalty",
    "send_invoice": "billing",
    "archive_order": "orders",
    "record_audit": "audit",
}
AFTER = ["update_loyalty", "send_invoice", "archive_order", "record_audit"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attr(span: object, key: str, value: str | int) -> None:
    kv = span.attributes.add()  # type: ignore[attr-defined]
    kv.key = key
    if isinstance(value, int):
        kv.value.int_value = value
    else:
        kv.value.string_value = value


def saga_spans(index: int, steps: int, now_ns: int, rng: random.Random) -> list[tuple]:
    """(service, trace id, span id, name, start, end, error, attrs) rows for one saga."""
    key = f"bench-{index:07d}"
    trace = index.to_bytes(8, "big") + b"\x5a" * 8
    t0 = now_ns - rng.randint(6, 7 * 24 * 60) * MIN
    fate = rng.random()
    # distinct step names: a real saga repeats a step only on retries
    names = (STEPS + AFTER)[: steps - 1]
    rows: list[tuple] = []
    t = t0
    stalled = fate < 0.01
    fail_at = len(names) // 2 if fate < 0.08 else -1
    for i, name in enumerate(names):
        if stalled and i == 2:
            break
        dur = rng.randint(5, 400) * 1_000_000
        failed = i == fail_at
        rows.append(
            (
                SERVICES[name],
                trace,
                name,
                t,
                t + dur,
                "declined" if failed else "",
                {"saga.name": "OrderSaga", "saga.step": name, "saga.step.type": "action"},
            )
        )
        t += dur
        if failed:
            done = [n for n in names[:i] if n in COMPENSATION]
            skip = fate < 0.03  # some failures leave a step never undone
            for n in reversed(done[1:] if skip else done):
                dur = rng.randint(5, 100) * 1_000_000
                rows.append(
                    (
                        SERVICES[COMPENSATION[n]],
                        trace,
                        COMPENSATION[n],
                        t,
                        t + dur,
                        "",
                        {
                            "saga.name": "OrderSaga",
                            "saga.step": COMPENSATION[n],
                            "saga.step.type": "compensation",
                            "saga.compensates": n,
                        },
                    )
                )
                t += dur
            break
    if not stalled:
        rows.insert(
            0,
            (
                "orders",
                trace,
                "OrderSaga",
                t0,
                t + SEC,
                "failed" if fail_at >= 0 else "",
                {"saga.name": "OrderSaga"},
            ),
        )
    return [
        (svc, tr, f"{key}/{j}", name, s, e, err, {"saga.id": key, **a})
        for j, (svc, tr, name, s, e, err, a) in enumerate(rows)
    ]


def request(rows: list[tuple]) -> bytes:
    """One OTLP protobuf ExportTraceServiceRequest for the rows."""
    req = ExportTraceServiceRequest()
    by_service: dict[str, list[tuple]] = {}
    for row in rows:
        by_service.setdefault(row[0], []).append(row)
    for service, members in by_service.items():
        rs = req.resource_spans.add()
        _attr(rs.resource, "service.name", service)
        ss = rs.scope_spans.add()
        for _, trace, sid, name, start, end, error, attrs in members:
            span = ss.spans.add()
            span.trace_id = trace
            span.span_id = abs(hash(sid)).to_bytes(8, "big", signed=False)[-8:]
            span.name, span.kind = name, 2
            span.start_time_unix_nano, span.end_time_unix_nano = start, end
            span.status.code = 2 if error else 1
            span.status.message = error
            for k, v in attrs.items():
                _attr(span, k, v)
    return req.SerializeToString()


def load(collector: str, sagas: int, steps: int, big_steps: int) -> None:
    rng = random.Random(42)
    now = time.time_ns()
    batch: list[tuple] = []
    bodies: list[bytes] = []
    for i in range(sagas):
        batch += saga_spans(i, steps, now, rng)
        if len(batch) >= 2000:
            bodies.append(request(batch))
            batch = []
    big_trace = b"\xbb" * 16
    big = [
        (
            "orders",
            big_trace,
            "big/root",
            "OrderSaga",
            now - 30 * MIN,
            now - 10 * MIN,
            "",
            {"saga.id": "big-saga", "saga.name": "OrderSaga"},
        )
    ]
    for j in range(big_steps):
        name = STEPS[j % len(STEPS)] + f"_{j // len(STEPS)}"
        big.append(
            (
                SERVICES[STEPS[j % len(STEPS)]],
                big_trace,
                f"big/{j}",
                name,
                now - 30 * MIN + j * SEC,
                now - 30 * MIN + j * SEC + SEC // 2,
                "",
                {"saga.id": "big-saga", "saga.step": name, "saga.step.type": "action"},
            )
        )
    bodies.append(request(batch + big))
    started = time.perf_counter()
    headers = {"Content-Type": "application/x-protobuf"}
    with httpx.Client(timeout=120) as http, concurrent.futures.ThreadPoolExecutor(4) as pool:

        def post(body: bytes) -> None:
            while True:
                r = http.post(collector + "/v1/traces", content=body, headers=headers)
                if r.status_code == 200:
                    return
                time.sleep(0.5)  # 503: the write queue is full; back off like an exporter

        list(pool.map(post, bodies))
    print(f"posted {len(bodies)} requests in {time.perf_counter() - started:.1f} s")
    expected = sagas + 1
    while True:
        got = httpx.get(collector + "/api/v1/stats", timeout=30).json()["counts"]
        if got["sagas"] >= expected:
            break
        print(f"  analysed {got['sagas']:,}/{expected:,} sagas, {got['spans']:,} spans", end="\r")
        time.sleep(2)
    print(f"\nloaded and analysed in {time.perf_counter() - started:.1f} s: {got}")


def p95(samples: list[float]) -> float:
    return sorted(samples)[max(int(len(samples) * 0.95) - 1, 0)]


def time_queries(collector: str, repeats: int) -> list[tuple[str, float, float]]:
    queries = {
        "overview": "/api/v1/overview",
        "sagas (default page)": "/api/v1/sagas",
        "sagas status=stalled": "/api/v1/sagas?status=stalled",
        "sagas finding=missing": "/api/v1/sagas?finding=missing_compensation",
        "sagas q=search, sort": "/api/v1/sagas?q=bench-00042&sort=duration",
        "sagas page 100": "/api/v1/sagas?offset=5000",
        "saga detail": "/api/v1/sagas/" + quote("saga.id:bench-0000007", safe=""),
        "saga detail 1000 steps": "/api/v1/sagas/" + quote("saga.id:big-saga", safe=""),
        "findings": "/api/v1/findings?limit=1000",
        "flow OrderSaga": "/api/v1/flow/OrderSaga",
    }
    out = []
    with httpx.Client(base_url=collector, timeout=60) as http:
        for name, path in queries.items():
            samples = []
            for _ in range(repeats):
                t = time.perf_counter()
                http.get(path).raise_for_status()
                samples.append(time.perf_counter() - t)
            out.append((name, statistics.median(samples) * 1000, p95(samples) * 1000))
    return out


def time_pages(dashboard: str, repeats: int) -> list[tuple[str, float, float]]:
    from playwright.sync_api import expect, sync_playwright

    pages = [
        ("Overview", "/overview", "Worst offenders"),
        ("Sagas", "/sagas", "sagas match"),
        ("Sagas filtered", "/sagas?status=stalled", "sagas match"),
        ("Saga detail", "/saga?key=" + quote("saga.id:bench-0000007"), "Steps"),
        ("Saga detail 1000 steps", "/saga?key=" + quote("saga.id:big-saga"), "Steps"),
        ("Flow", "/flow?type=OrderSaga", "Distinct steps"),
        ("Findings", "/findings", "open findings"),
    ]
    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(dashboard + "/overview")  # warm the server's imports once
        expect(page.get_by_text("Worst offenders")).to_be_visible(timeout=60_000)
        for name, path, marker in pages:
            samples = []
            for _ in range(repeats):
                t = time.perf_counter()
                page.goto(dashboard + path)
                expect(page.get_by_text(marker).first).to_be_visible(timeout=60_000)
                if "detail" in name or name == "Flow":
                    expect(page.locator(".js-plotly-plot .point").first).to_be_visible(
                        timeout=60_000
                    )
                samples.append(time.perf_counter() - t)
            out.append((name, statistics.median(samples) * 1000, max(samples) * 1000))
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sagas", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=10, help="spans per saga")
    ap.add_argument("--big-steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--page-repeats", type=int, default=3)
    ap.add_argument("--db", default="", help="keep the store in this file and reuse it")
    args = ap.parse_args()
    if not 2 <= args.steps <= len(STEPS) + len(AFTER) + 1:
        ap.error(f"--steps must be between 2 and {len(STEPS) + len(AFTER) + 1}")
    tmp = tempfile.mkdtemp(prefix="sagalens-bench-")
    db = args.db or os.path.join(tmp, "b.duckdb")
    reuse = os.path.exists(db)
    http, grpc, port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "up",
            "--db",
            db,
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--port",
            str(port),
        ],
        stdout=open(os.path.join(tmp, "up.log"), "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    collector, dashboard = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{port}"
    try:
        for url in (collector + "/healthz", dashboard + "/_stcore/health"):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
        if reuse:
            print(f"reusing {db}: {httpx.get(collector + '/api/v1/stats').json()['counts']}")
        else:
            load(collector, args.sagas, args.steps, args.big_steps)
        queries = time_queries(collector, args.repeats)
        pages = time_pages(dashboard, args.page_repeats)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"\n{'API query':<28}{'median ms':>12}{'p95 ms':>10}  target < 200 ms p95")
    for name, med, p in queries:
        print(f"{name:<28}{med:>12.1f}{p:>10.1f}  {'ok' if p < 200 else 'SLOW'}")
    print(f"\n{'page (to visible content)':<28}{'median ms':>12}{'max ms':>10}  target")
    for name, med, worst in pages:
        target = 1000 if "1000" in name else 2000
        print(
            f"{name:<28}{med:>12.0f}{worst:>10.0f}  < {target} ms "
            f"{'ok' if worst < target else 'SLOW'}"
        )


if __name__ == "__main__":
    main()
