"""The collector's HTTP application: OTLP/HTTP, CloudEvents, the query API, health, metrics."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector as MetricsSource
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.api import api_routes
from collector.receivers import otlp_http
from collector.store.queries import analysis_status
from collector.store.writer import COMMIT_BUCKETS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from collector.service import Collector


class _Metrics(MetricsSource):
    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterator[Metric]:
        s = self.collector.writer.stats
        counters = [
            ("sagalens_records_received", "Records offered by exporters and taps", s.received),
            ("sagalens_records_stored", "Records stored (new rows)", s.stored),
            ("sagalens_records_duplicates", "Records already stored (retries)", s.duplicates),
            ("sagalens_records_rejected", "Items rejected as unstorable", s.rejected),
            ("sagalens_overloaded", "Requests refused because the queue was full", s.overloaded),
            ("sagalens_commits", "Write transactions committed", s.commits),
            ("sagalens_commit_seconds", "Time spent committing", s.commit_seconds_total),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "sagalens_queue_rows",
            "Rows waiting in the write queue",
            value=self.collector.writer.pending_rows,
        )
        yield GaugeMetricFamily(
            "sagalens_last_commit_seconds",
            "Latency of the last commit",
            value=s.last_commit_seconds,
        )
        cumulative = list(itertools.accumulate(s.commit_buckets))
        yield HistogramMetricFamily(
            "sagalens_commit_duration_seconds",
            "Latency of commits of records (an answer to an exporter waits for one)",
            buckets=[
                *zip(map(str, COMMIT_BUCKETS), cumulative[:-1], strict=True),
                ("+Inf", cumulative[-1]),
            ],
            sum_value=s.commit_seconds_total,
        )
        yield CounterMetricFamily(
            "sagalens_checkpoints",
            "Commits in which DuckDB checkpointed (wrote its log into the file)",
            value=s.checkpoints,
        )
        yield CounterMetricFamily(
            "sagalens_checkpoint_commit_seconds",
            "Time of the commits that checkpointed",
            value=s.checkpoint_seconds_total,
        )
        runner = self.collector.runner
        cur = self.collector.writer.cursor()
        try:
            backlog = analysis_status(cur, runner.progress)
        finally:
            cur.close()
        yield GaugeMetricFamily(
            "sagalens_analysis_backlog",
            "Traces stored but not analysed yet",
            value=backlog["traces_waiting"],
        )
        yield GaugeMetricFamily(
            "sagalens_analysis_lag_seconds",
            "Ingest time the backlog spans: from its oldest commit to the latest",
            value=backlog["behind_s"],
        )
        yield CounterMetricFamily(
            "sagalens_analysis_paused_seconds",
            "Time analysis gave back to ingest while the writer was busy",
            value=runner.paused_s,
        )
        yield CounterMetricFamily(
            "sagalens_analysis_runs", "Incremental analysis passes", value=runner.runs
        )
        yield CounterMetricFamily(
            "sagalens_analysis_failures",
            "Analysis passes that failed (the log says why)",
            value=runner.failures,
        )
        requests = CounterMetricFamily(
            "sagalens_http_requests",
            "HTTP ingest requests by path and status",
            labels=["path", "status"],
        )
        for (path, status), n in sorted(self.collector.http_requests.items()):
            requests.add_metric([path, str(status)], n)
        yield requests
        yield from self._taps()

    def _taps(self) -> Iterator[Metric]:
        taps = sorted(self.collector.tap_stats.items())
        connected = GaugeMetricFamily(
            "sagalens_tap_connected",
            "1 while a broker tap consumes, 0 while it connects or reconnects",
            labels=["tap", "kind"],
        )
        for name, t in taps:
            connected.add_metric([name, t.kind], 1 if t.state == "connected" else 0)
        yield connected
        for metric, doc in (
            ("messages", "Messages a broker tap received and committed"),
            ("stored", "Events a broker tap stored (new rows)"),
            ("duplicates", "Redelivered or repeated messages a broker tap found already stored"),
            ("rejected", "Messages a broker tap could not read (recorded in rejections, acked)"),
            ("reconnects", "Times a broker tap reconnected after losing its broker"),
        ):
            family = CounterMetricFamily(f"sagalens_tap_{metric}", doc, labels=["tap"])
            for name, t in taps:
                family.add_metric([name], getattr(t, metric))
            yield family


def build_app(collector: Collector) -> Starlette:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Metrics(collector))

    async def traces(request: Request) -> Response:
        return await otlp_http.export(collector, request, "traces")

    async def logs(request: Request) -> Response:
        return await otlp_http.export(collector, request, "logs")

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                # lets `sagalens up` tell its own collector from another one on the port
                "pid": os.getpid(),
                "schema_version": collector.writer.schema_version,
                "queue_rows": collector.writer.pending_rows,
            }
        )

    async def metrics(request: Request) -> Response:
        text = await asyncio.to_thread(generate_latest, registry)  # the backlog is a query
        return Response(text, media_type="text/plain; version=0.0.4")

    routes = [
        Route("/v1/traces", traces, methods=["POST"]),
        Route("/v1/logs", logs, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        *api_routes(collector),
    ]
    from collector.receivers.extra import extra_routes

    routes.extend(extra_routes(collector))
    api_paths = sorted({r.path.replace(":path", "") for r in routes if r.path.startswith("/api/")})

    async def http_error(request: Request, exc: Exception) -> Response:
        """An unknown path or method: JSON like every other API answer, plain text elsewhere."""
        assert isinstance(exc, HTTPException)
        if not request.url.path.startswith("/api/"):
            return Response(exc.detail, status_code=exc.status_code, headers=exc.headers)
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code == 404:
            message += f"; the query API has {', '.join(api_paths)}"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
