"""Live sample traffic for ``sagalens demo``: both sample systems, continuously.

The orchestrated system exports over OTLP/gRPC, the choreographed one over OTLP/HTTP; its
events travel on RabbitMQ (seen by the collector's tap) when ``amqp_url`` is given, else on
an in-process bus that posts them to ``POST /v1/events``. Failures (a collector that is not
up yet, a refused batch) are logged and traffic goes on: the demo must never crash because
of its sample data.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sample_data.choreographed import LocalBus, Shop
from sample_data.orchestrated import STYLES, OrderServices, play_order_saga
from sample_data.outcomes import Expected, draw_outcome, run_tag
from sample_data.publish import BatchPoster
from sample_data.telemetry import Telemetry, otlp_grpc_exporter, otlp_http_exporter

if TYPE_CHECKING:
    from sample_data.rabbit import RabbitBus

log = logging.getLogger(__name__)

LEAD_NS = 3_000_000_000  # sagas are played instantly, stamped as if they began this long ago
FLUSH_EVERY_S = 1.0
ERROR_LOG_EVERY_S = 30.0
STOP_TIMEOUT_S = 4.0
EXPORT_TIMEOUT_S = 4.0
# exporter loggers that report every retry; silenced once the demo is stopping
_EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp", "opentelemetry.sdk.trace.export")


def _loopback(target: str) -> str:
    host, sep, port = target.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]", ""):
        return f"127.0.0.1{sep}{port}"
    return target


class DemoTraffic:
    """Background generator of sagas from both sample systems at about ``rate`` sagas/s."""

    def __init__(
        self,
        collector_url: str,
        grpc_target: str,
        token: str = "",
        rate: float = 2.0,
        *,
        seed: int | None = None,
        amqp_url: str = "",
        amqp_exchange: str = "",
        faults: Mapping[str, float] | None = None,
    ) -> None:
        self.collector_url = collector_url.rstrip("/")
        self.grpc_target = _loopback(grpc_target)
        self.token = token
        self.rate = max(rate, 0.01)
        self.rng = random.Random(seed if seed is not None else time.time_ns())
        self.tag = run_tag(self.rng)
        self.truth: dict[str, Expected] = {}  # saga key -> what it was generated as
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log = 0.0
        self._orchestrated: Telemetry | None = None
        self._choreographed: Telemetry | None = None
        self._poster: BatchPoster | None = None
        self._services: OrderServices | None = None
        self._shop: Shop | None = None
        self._bus: RabbitBus | None = None
        self.amqp_url = amqp_url
        self.amqp_exchange = amqp_exchange
        self.faults = faults

    @property
    def generated(self) -> int:
        """Sagas played so far."""
        return len(self.truth)

    def start(self) -> DemoTraffic:
        """Start the background thread; returns self."""
        self._orchestrated = Telemetry(
            otlp_grpc_exporter(self.grpc_target, self.token, timeout=EXPORT_TIMEOUT_S)
        )
        self._choreographed = Telemetry(
            otlp_http_exporter(self.collector_url, self.token, timeout=EXPORT_TIMEOUT_S)
        )
        self._services = OrderServices(self._orchestrated)
        if self.amqp_url:
            from sample_data.rabbit import EXCHANGE, RabbitBus

            self._bus = RabbitBus(self.amqp_url, self.amqp_exchange or EXCHANGE)
            self._shop = Shop(self._choreographed, self._bus)
            self._bus.start()
        else:
            self._poster = BatchPoster(self.collector_url, self.token, timeout=EXPORT_TIMEOUT_S)
            self._shop = Shop(self._choreographed, LocalBus(self._poster))
        self._thread = threading.Thread(
            target=self._loop, name="sagalens-demo-traffic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop generating, flush what was generated and release the exporters (bounded time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
        # Ctrl-C reaches the collector too, so the last exports often find it gone; one
        # line below says so instead of a retry warning per exporter and attempt.
        for name in _EXPORTER_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        closer = threading.Thread(target=self._close, name="sagalens-demo-flush", daemon=True)
        closer.start()
        closer.join(timeout=STOP_TIMEOUT_S)
        if closer.is_alive():
            log.warning("demo traffic: gave up flushing after %.0fs", STOP_TIMEOUT_S)

    def _close(self) -> None:
        if self._services is not None:
            self._services.close()
        if self._bus is not None:
            try:
                self._bus.close()
            except Exception as exc:
                self._error("closing the RabbitMQ connection", exc)
        if self._poster is not None:
            self._flush_events()
            self._poster.close()
        for telemetry in (self._orchestrated, self._choreographed):
            if telemetry is not None:
                try:
                    telemetry.shutdown()
                except Exception as exc:  # an exporter must not break shutdown
                    self._error("closing an exporter", exc)

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        next_flush = time.monotonic() + FLUSH_EVERY_S
        n = 0
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                outcome = draw_outcome(self.rng, self.faults)
                start_ns = time.time_ns() - LEAD_NS
                if n % 2 == 0:
                    assert self._services is not None
                    style = STYLES[(n // 2) % 2]
                    key, expected = play_order_saga(
                        self._services, self.rng, f"A-{self.tag}-{n // 2:05d}", outcome,
                        style, start_ns,
                    )  # fmt: skip
                else:
                    assert self._shop is not None
                    key, expected = self._shop.play(
                        self.rng, f"B-{self.tag}-{n // 2:05d}", outcome, start_ns
                    )
                self.truth[key] = expected
            except Exception as exc:
                self._error("playing a saga", exc)
            n += 1
            if time.monotonic() >= next_flush:
                self._flush_events()
                next_flush = time.monotonic() + FLUSH_EVERY_S
            self._stop.wait(max(0.0, interval - (time.monotonic() - began)))

    def _flush_events(self) -> None:
        if self._poster is None:
            return
        try:
            self._poster.flush()
        except Exception as exc:  # PublishError or anything unexpected: keep going
            self._error("sending events", exc)

    def _error(self, doing: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:
            self._last_error_log = now
            log.warning("demo traffic: error while %s (continuing): %s", doing, exc)
