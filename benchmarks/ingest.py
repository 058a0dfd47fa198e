"""Ingest benchmark: sustained spans/s with durable acknowledgement, latency, peak RSS.

Starts a real collector, drives it with several concurrent OTLP/HTTP exporters sending
pre-built protobuf batches (512 spans x ~10 attributes), and in the same run measures the
machine's pipeline limit on the same batches: protobuf parse alone, and bulk insert alone
into DuckDB; limit = 1 / (1/parse_rate + 1/insert_rate). It also prints the limit with the
collector's full decode (parse, normalize into records, build Arrow columns) in place of the
bare parse, which is what a Python decoder can reach, and what the collector's analysis made
of the run (sagas materialized, traces still waiting, failed passes), and what inserting
costs in commits of the size the collector makes under load, alone and while another thread
of the same process decodes (the two share the GIL).

    python benchmarks/ingest.py [--seconds 20] [--senders 8] [--no-analysis]
                                [--decode-processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.compiled import describe
from collector.decoding import DECODERS, decode_prepared
from collector.store.columns import PreparedBatch
from collector.store.writer import Writer

SPANS_PER_REQUEST = 512
MAGIC = b"\xab\xcd\xef\x01\x23\x45\x67\x89\x9a\xbc\xde\xf0"  # replaced per request
MAGIC_TEXT = MAGIC.hex().encode()  # the same, in saga and order ids


def template_request() -> bytes:
    """One realistic request; its trace ids start with MAGIC so copies can be made unique.

    Saga and order ids carry MAGIC's hex text for the same reason: each request holds its
    own sagas, as real traffic does, instead of adding to the same 32 sagas forever.
    """
    rng = random.Random(7)
    req = ExportTraceServiceRequest()
    services = ["orders", "payments", "inventory", "shipping"]
    steps = [
        "reserve_inventory",
        "charge_payment",
        "ship_order",
        "release_inventory",
        "refund_payment",
    ]
    for svc_index, svc in enumerate(services):
        rs = req.resource_spans.add()
        for key, value in (
            ("service.name", svc),
            ("service.version", "1.4.2"),
            ("deployment.environment", "prod"),
            ("host.name", f"node-{svc_index}"),
        ):
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        ss = rs.scope_spans.add()
        ss.scope.name, ss.scope.version = "sagalens.bench", "1.0"
        for j in range(SPANS_PER_REQUEST // len(services)):
            saga = j // 4  # ~4 spans per trace/saga in each service block
            span = ss.spans.add()
            span.trace_id = MAGIC + struct.pack(">I", saga)
            span.span_id = struct.pack(">II", svc_index + 1, j + 1)
            span.name = steps[j % len(steps)]
            span.kind = 2
            span.start_time_unix_nano = 1_700_000_000_000_000_000 + j * 1_000_000
            span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(1, 50) * 1_000_000
            attrs = {
                "saga.id": f"order-{MAGIC.hex()}-{saga}",
                "saga.name": "OrderSaga",
                "saga.step": span.name,
                "http.request.method": "POST",
                "http.route": f"/api/{span.name}",
                "http.response.status_code": 200,
                "order.id": f"{MAGIC.hex()}{saga:08d}",
                "customer.tier": rng.choice(["gold", "silver", "bronze"]),
                "amount": round(rng.uniform(1, 500), 2),
                "retry": False,
            }
            for key, value in attrs.items():
                kv = span.attributes.add()
                kv.key = key
                if isinstance(value, bool):
                    kv.value.bool_value = value
                elif isinstance(value, int):
                    kv.value.int_value = value
                elif isinstance(value, float):
                    kv.value.double_value = value
                else:
                    kv.value.string_value = value
    return req.SerializeToString()


def make_requests(count: int, offset: int = 0) -> list[bytes]:
    template = template_request()
    requests = []
    for i in range(count):
        unique = struct.pack(">Q", offset + i) + b"\x5a\x5a\x5a\x5a"
        requests.append(template.replace(MAGIC, unique).replace(MAGIC_TEXT, unique.hex().encode()))
    return requests


def measure_parse(requests: list[bytes]) -> float:
    """Protobuf parse alone (upb), the issue's definition of the parse side of the limit."""
    for body in requests[:5]:
        ExportTraceServiceRequest().ParseFromString(body)
    started = time.perf_counter()
    for body in requests:
        ExportTraceServiceRequest().ParseFromString(body)
    return SPANS_PER_REQUEST * len(requests) / (time.perf_counter() - started)


def prepare(body: bytes) -> PreparedBatch:
    """What the collector's OTLP/HTTP receiver does to a protobuf traces body."""
    return decode_prepared(DECODERS[("traces", False)], body)[0]


def measure_decode(requests: list[bytes]) -> float:
    """Everything the collector does to a body before the insert: parse, normalize, Arrow."""
    for body in requests[:5]:  # warm: first calls import and build caches
        prepare(body)
    started = time.perf_counter()
    spans = 0
    for body in requests:
        spans += prepare(body).rows
    return spans / (time.perf_counter() - started)


def measure_insert(
    prepared: list[PreparedBatch],
    max_group_rows: int | None = None,
    decode_beside: list[bytes] | None = None,
) -> float:
    """Spans/s the writer commits ``prepared`` at, in groups of up to ``max_group_rows``
    (by default the writer's own bound: the bulk insert alone); with ``decode_beside``, while another
    thread of this process decodes those bodies as the collector's receivers do. DuckDB
    hands the GIL back and forth within every commit, and waits for it each time the
    decoding thread holds it.
    """
    stop = threading.Event()

    def decode_loop(bodies: list[bytes]) -> None:
        while not stop.is_set():
            for body in bodies:
                if stop.is_set():
                    return
                prepare(body)

    decoder = None
    with tempfile.TemporaryDirectory() as tmp:
        group = {} if max_group_rows is None else {"max_group_rows": max_group_rows}
        writer = Writer(os.path.join(tmp, "insert.duckdb"), max_pending_rows=10_000_000, **group)
        # All queued before the writer starts, so it takes them in full groups every run,
        # as it does under load, rather than however many had arrived when it woke up.
        futures = [writer.submit_prepared(p) for p in prepared]
        if decode_beside is not None:
            decoder = threading.Thread(target=decode_loop, args=(decode_beside,), daemon=True)
            decoder.start()
        try:
            started = time.perf_counter()
            writer.start()
            stored = sum(f.result().stored for f in futures)
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            if decoder is not None:
                decoder.join()
            writer.close()
    return stored / elapsed


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RssWatch(threading.Thread):
    """Peak memory of the collector and its helper processes (OTLP decoders, tap workers).

    RSS summed over the processes counts each page they share (the libraries every one of
    them maps) once per process; PSS splits a shared page among them, so its sum is what
    they hold together.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.peak_pss = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            try:
                rss = pss = 0
                for p in [self.proc, *self.proc.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        memory = p.memory_full_info()
                        rss += memory.rss
                        pss += memory.pss
                self.peak = max(self.peak, rss)
                self.peak_pss = max(self.peak_pss, pss)
            except psutil.Error:
                return
            time.sleep(0.05)


async def drive(url: str, requests: list[bytes], senders: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    acked = refused = 0
    index = 0
    deadline = time.perf_counter() + seconds

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal acked, refused, index
        while time.perf_counter() < deadline and index < len(requests):
            body = requests[index]
            index += 1
            t0 = time.perf_counter()
            r = await client.post(
                url, content=body, headers={"Content-Type": "application/x-protobuf"}
            )
            if r.status_code == 200:
                latencies.append(time.perf_counter() - t0)
                acked += SPANS_PER_REQUEST
            elif r.status_code in (429, 503):
                refused += 1
                await asyncio.sleep(float(r.headers.get("retry-after", "1")) / 10)
            else:
                raise SystemExit(f"unexpected {r.status_code}: {r.text[:200]}")

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=senders)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    pick = (
        (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000)
        if latencies
        else (lambda q: float("nan"))
    )
    return {
        "spans_per_s": acked / elapsed,
        "p50_ms": pick(0.5),
        "p99_ms": pick(0.99),
        "refused": refused,
        "acked_spans": acked,
        "seconds": elapsed,
    }


def scrape(url: str) -> dict[str, float]:
    """The collector's metrics: sample (name with labels) -> value."""
    metrics = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            metrics[name] = float(value)
    return metrics


def commit_health(url: str) -> dict[str, float]:
    """How the writer's commits went: how many, how many checkpointed, how many were slow."""
    metrics = scrape(url)
    commits = metrics.get("sagalens_commits_total", 0.0)
    return {
        "commits": commits,
        "slow": commits - metrics.get('sagalens_commit_duration_seconds_bucket{le="0.5"}', 0.0),
        "checkpoints": metrics.get("sagalens_checkpoints_total", 0.0),
        "checkpoint_s": metrics.get("sagalens_checkpoint_commit_seconds_total", 0.0),
        "commit_s": metrics.get("sagalens_commit_seconds_total", 0.0),
    }


def analysis_health(url: str) -> dict[str, float]:
    """What the collector's analysis made of the run: sagas stored, passes failed, backlog."""
    metrics = scrape(url)
    return {
        "sagas": httpx.get(url + "/api/v1/sagas", params={"limit": 1}, timeout=30).json()["total"],
        "failures": metrics.get("sagalens_analysis_failures_total", 0.0),
        "backlog": metrics.get("sagalens_analysis_backlog", 0.0),
        "lag_s": metrics.get("sagalens_analysis_lag_seconds", 0.0),
        "paused_s": metrics.get("sagalens_analysis_paused_seconds_total", 0.0),
    }


def run_collector(tmp: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port, grpc_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "collector",
            "collector",
            "--db",
            os.path.join(tmp, "b.duckdb"),
            "--http-port",
            str(port),
            "--grpc-port",
            str(grpc_port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("collector did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--overload-senders", type=int, default=48)
    ap.add_argument("--no-analysis", action="store_true")
    ap.add_argument("--decode-processes", type=int, default=0)
    args = ap.parse_args()

    print(f"building requests ({SPANS_PER_REQUEST} spans x ~10 attributes each)...", flush=True)
    n = int(args.seconds * 80_000 / SPANS_PER_REQUEST) + 50
    requests = make_requests(n)
    sample = requests[:40]
    parse_rate = measure_parse(sample)
    decode_rate = measure_decode(sample)
    insert_rate = measure_insert([prepare(b) for b in make_requests(40, offset=10_000_000)])
    # Commits of three requests each, the group size the collector commits under load.
    grouped = [prepare(b) for b in make_requests(60, offset=11_000_000)]
    grouped_rate = measure_insert(grouped, 3 * SPANS_PER_REQUEST)
    grouped_beside_rate = measure_insert(grouped, 3 * SPANS_PER_REQUEST, decode_beside=sample)
    limit = 1 / (1 / parse_rate + 1 / insert_rate)
    decode_limit = 1 / (1 / decode_rate + 1 / insert_rate)

    extra = ["--no-analysis"] if args.no_analysis else []
    extra += ["--decode-processes", str(args.decode_processes)]
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = run_collector(tmp, extra)
        watch = RssWatch(proc.pid)
        watch.start()
        sustained = asyncio.run(drive(url + "/v1/traces", requests, args.senders, args.seconds))
        steady_peak = watch.peak
        health = analysis_health(url)
        commits = commit_health(url)
        overload = asyncio.run(
            drive(
                url + "/v1/traces",
                make_requests(n, offset=20_000_000),
                args.overload_senders,
                args.seconds / 2,
            )
        )
        watch.running = False
        proc.terminate()
        proc.wait(timeout=60)

    mib = 1024 * 1024
    print()
    print(describe())
    print(f"{'measure':<44}{'value':>14}   target")
    rows = [
        ("protobuf parse alone (spans/s)", f"{parse_rate:,.0f}", ""),
        ("full decode alone: parse, normalize, Arrow", f"{decode_rate:,.0f}", ""),
        ("bulk insert alone into DuckDB (spans/s)", f"{insert_rate:,.0f}", ""),
        ("insert, 3 requests a commit, alone (spans/s)", f"{grouped_rate:,.0f}", ""),
        ("the same beside a decoding thread (spans/s)", f"{grouped_beside_rate:,.0f}", ""),
        ("pipeline limit, parse + insert (spans/s)", f"{limit:,.0f}", ""),
        ("limit with the full decode (spans/s)", f"{decode_limit:,.0f}", ""),
        (
            f"sustained, durable ack, {args.senders} senders (spans/s)",
            f"{sustained['spans_per_s']:,.0f}",
            ">= 50,000",
        ),
        ("ratio to pipeline limit", f"{sustained['spans_per_s'] / limit:.2f}", ">= 0.5"),
        (
            "ratio to the limit with the full decode",
            f"{sustained['spans_per_s'] / decode_limit:.2f}",
            "",
        ),
        ("request latency p50 (ms)", f"{sustained['p50_ms']:.1f}", ""),
        ("request latency p99 (ms)", f"{sustained['p99_ms']:.1f}", ""),
        ("peak RSS incl. helpers, sustained (MB)", f"{steady_peak / mib:.0f}", ""),
        (
            f"overload: {args.overload_senders} senders, acked spans/s",
            f"{overload['spans_per_s']:,.0f}",
            "",
        ),
        ("overload: requests refused with 503", f"{overload['refused']:.0f}", ""),
        ("peak RSS incl. helpers and overload (MB)", f"{watch.peak / mib:.0f}", "< 400"),
        ("the same as PSS, shared pages split (MB)", f"{watch.peak_pss / mib:.0f}", ""),
    ]
    for name, value, target in rows:
        print(f"{name:<44}{value:>14}   {target}")
    print(
        f"commits during the sustained run: {commits['commits']:,.0f} "
        f"({commits['commit_s']:.1f} s), {commits['slow']:,.0f} of them over 0.5 s; "
        f"{commits['checkpoints']:,.0f} checkpointed ({commits['checkpoint_s']:.1f} s)"
    )
    print(
        f"analysis during ingest: {'off' if args.no_analysis else 'on'}; "
        f"decode processes: {args.decode_processes}"
    )
    if not args.no_analysis:
        print(
            f"after the sustained run: {health['sagas']:,.0f} sagas materialized, "
            f"{health['backlog']:,.0f} traces still waiting "
            f"(analysis {health['lag_s']:.1f} s behind, paused {health['paused_s']:.1f} s "
            "for ingest), "
            f"{health['failures']:.0f} failed analysis passes"
        )
        if health["failures"]:
            raise SystemExit("analysis passes failed: see the collector's log")


if __name__ == "__main__":
    main()
