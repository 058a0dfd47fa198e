"""Decode throughput: OTLP protobuf parse+decode and OTLP JSON decode, in spans per second.

Run: python benchmarks/decode.py [--spans 512] [--attributes 10] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.normalize.otlp import decode_traces_json, decode_traces_protobuf

_ATTRIBUTE_KEYS = [
    "messaging.system",
    "messaging.destination.name",
    "messaging.operation.type",
    "messaging.message.id",
    "server.address",
    "order.id",
    "saga.step",
    "http.response.status_code",
    "retry.count",
    "payload.size",
    "db.system",
    "feature.enabled",
]


def build_request(spans: int, attributes: int, seed: int = 7) -> ExportTraceServiceRequest:
    """A request shaped like a busy saga service: one resource, one scope, mixed attribute types."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (
        ("service.name", "orders"),
        ("service.version", "1.4.2"),
        ("host.name", "node-3"),
    ):
        kv = resource_spans.resource.attributes.add()
        kv.key = key
        kv.value.string_value = value
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "opentelemetry.instrumentation.aio_pika"
    scope_spans.scope.version = "0.50b0"
    trace_id = rng.randbytes(16)
    start = 1_700_000_000_000_000_000
    for index in range(spans):
        if index % 8 == 0:
            trace_id = rng.randbytes(16)
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = rng.randbytes(8)
        span.parent_span_id = rng.randbytes(8)
        span.name = f"orders.{rng.choice(['reserve', 'charge', 'ship'])} publish"
        span.kind = 4
        span.start_time_unix_nano = start + index * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randrange(1_000_000, 50_000_000)
        span.status.code = 1
        for position in range(attributes):
            kv = span.attributes.add()
            kv.key = _ATTRIBUTE_KEYS[position % len(_ATTRIBUTE_KEYS)] + (
                "" if position < len(_ATTRIBUTE_KEYS) else f".{position}"
            )
            kind = position % 5
            if kind == 3:
                kv.value.int_value = rng.randrange(1 << 40)
            elif kind == 4 and position % 2:
                kv.value.bool_value = True
            elif kind == 4:
                kv.value.double_value = rng.random()
            else:
                kv.value.string_value = f"value-{rng.randrange(10_000)}"
        if index % 4 == 0:
            event = span.events.add()
            event.name = "message.acked"
            event.time_unix_nano = span.end_time_unix_nano
    return request


def _spans_per_second(spans: int, seconds: float, run: Callable[[], object]) -> float:
    run()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return spans / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--attributes", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    request = build_request(args.spans, args.attributes)
    body = request.SerializeToString()
    # OTLP JSON uses hex ids, which the protobuf JSON mapping writes as base64.
    as_json = MessageToDict(request)
    for resource_spans in as_json["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    span[key] = __import__("base64").b64decode(span[key]).hex()
    text = json.dumps(as_json).encode()
    assert len(decode_traces_protobuf(body).spans) == args.spans
    assert len(decode_traces_json(text).spans) == args.spans

    print(
        f"{args.spans} spans x {args.attributes} attributes; protobuf {len(body)} B, JSON {len(text)} B"
    )
    rate = _spans_per_second(args.spans, args.seconds, lambda: decode_traces_protobuf(body))
    print(f"protobuf parse+decode: {rate:>10,.0f} spans/s")
    rate = _spans_per_second(
        args.spans, args.seconds, lambda: ExportTraceServiceRequest.FromString(body)
    )
    print(f"  (protobuf parse only: {rate:>10,.0f} spans/s)")
    rate = _spans_per_second(args.spans, args.seconds, lambda: decode_traces_json(text))
    print(f"JSON decode:           {rate:>10,.0f} spans/s")
    rate = _spans_per_second(args.spans, args.seconds, lambda: json.loads(text))
    print(f"  (json.loads only:    {rate:>10,.0f} spans/s)")


if __name__ == "__main__":
    main()
