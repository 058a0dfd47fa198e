"""Real OpenTelemetry SDK plumbing for the sample systems: one provider per service.

Each sample service gets its own ``TracerProvider`` with its own ``service.name`` resource,
so the collector sees separate services exactly as it would from separate processes.
Timestamps come from a ``SagaClock`` so a saga can be played instantly yet look like it
took seconds, and ids from a seeded generator so recorded files are reproducible.
"""

from __future__ import annotations

import base64
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Tracer

ExporterFactory = Callable[[], SpanExporter]
SCOPE = "sagalens.sample_data"


class SeededIdGenerator(IdGenerator):
    """Trace and span ids from a seeded RNG (thread-safe)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._lock = threading.Lock()

    def generate_span_id(self) -> int:
        with self._lock:
            return self._rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        with self._lock:
            return self._rng.getrandbits(128) or 1


class SagaClock:
    """Simulated wall clock of one saga: starts at ``start_ns`` and moves by drawn steps."""

    def __init__(self, start_ns: int, rng: random.Random) -> None:
        self.now = start_ns
        self._rng = rng

    def tick(self, lo_ms: int = 5, hi_ms: int = 120) -> int:
        """Advance by a random number of milliseconds in [lo_ms, hi_ms]; return the new time."""
        self.now += self._rng.randint(lo_ms, hi_ms) * 1_000_000
        return self.now


def otlp_grpc_exporter(target: str, token: str = "", timeout: float = 10) -> ExporterFactory:
    """Factory of the official OTLP/gRPC span exporter for ``host:port``."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    headers = (("authorization", f"Bearer {token}"),) if token else None
    return lambda: OTLPSpanExporter(
        endpoint=target, insecure=True, headers=headers, timeout=timeout
    )


def otlp_http_exporter(url: str, token: str = "", timeout: float = 10) -> ExporterFactory:
    """Factory of the official OTLP/HTTP (protobuf) span exporter for a collector base URL."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    headers = {"Authorization": f"Bearer {token}"} if token else None
    endpoint = url.rstrip("/") + "/v1/traces"
    return lambda: OTLPSpanExporter(endpoint=endpoint, headers=headers, timeout=timeout)


class Telemetry:
    """Tracer providers per service name, all exporting through one kind of exporter.

    With ``exporter=None`` spans are kept in memory (see ``take_finished``), which is how
    the recorder captures them without a collector.
    """

    def __init__(
        self,
        exporter: ExporterFactory | None = None,
        *,
        rng: random.Random | None = None,
        schedule_delay_ms: int = 500,
    ) -> None:
        self._exporter = exporter
        self._ids: IdGenerator = SeededIdGenerator(rng) if rng is not None else RandomIdGenerator()
        self._delay = schedule_delay_ms
        self._providers: dict[str, TracerProvider] = {}
        self._memory: dict[str, InMemorySpanExporter] = {}
        self._lock = threading.Lock()

    def tracer(self, service: str) -> Tracer:
        """The tracer of one service (its provider is created on first use)."""
        with self._lock:
            provider = self._providers.get(service)
            if provider is None:
                provider = TracerProvider(
                    # a fixed instance id keeps recorded files reproducible
                    resource=Resource.create(
                        {
                            "service.name": service,
                            "service.namespace": "sagalens-demo",
                            "service.instance.id": f"{service}-1",
                        }
                    ),
                    id_generator=self._ids,
                )
                if self._exporter is None:
                    memory = self._memory[service] = InMemorySpanExporter()
                    provider.add_span_processor(SimpleSpanProcessor(memory))
                else:
                    provider.add_span_processor(
                        BatchSpanProcessor(self._exporter(), schedule_delay_millis=self._delay)
                    )
                self._providers[service] = provider
        return provider.get_tracer(SCOPE, "1.0")

    def take_finished(self) -> list[ReadableSpan]:
        """Finished spans kept in memory since the last call, grouped by service name."""
        spans: list[ReadableSpan] = []
        with self._lock:
            for service in sorted(self._memory):
                memory = self._memory[service]
                spans.extend(memory.get_finished_spans())
                memory.clear()
        return spans

    def flush(self, timeout_ms: int = 15_000) -> bool:
        """Export everything ended so far; False when an exporter did not finish in time."""
        with self._lock:
            providers = list(self._providers.values())
        return all(p.force_flush(timeout_ms) for p in providers)

    def shutdown(self) -> None:
        """Flush and close every provider."""
        with self._lock:
            providers = list(self._providers.values())
            self._providers.clear()
        for provider in providers:
            provider.shutdown()


def _hex(value: str) -> str:
    return base64.b64decode(value).hex()


def encode_otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """An ExportTraceServiceRequest in OTLP/JSON (hex ids, integer enums), as file exporters write."""
    message: dict[str, Any] = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in message.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for field in ("traceId", "spanId", "parentSpanId"):
                    if span.get(field):
                        span[field] = _hex(span[field])
                for link in span.get("links", []):
                    for field in ("traceId", "spanId"):
                        if link.get(field):
                            link[field] = _hex(link[field])
    return message
