"""The running collector: settings, the single writer, readers and the analysis runner."""

from __future__ import annotations

import asyncio
import hmac
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from collector.helpers import decode_process_init, ready
from collector.store.queries import Reader
from collector.store.writer import Writer

if TYPE_CHECKING:
    from collector.receivers.taps import TapStats

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_DECODE_PROCESSES = 0
# While ingest keeps the writer busy, analysis passes take at most this share of the time.
# Ingest nearly stops while a pass runs (both need the GIL, and the pass stores through the
# writer), so the throughput analysis costs is about this share: at 0.2 five pairs of 30 s
# runs cost 4-25% (median 19%); at 0.15, 4-14% (median 12%), under the 20% budget
# (benchmarks/analysis.py).
DEFAULT_ANALYSIS_SHARE = 0.15

log = logging.getLogger("sagalens")

T = TypeVar("T")


@dataclass
class Settings:
    db: str = "sagalens.duckdb"
    host: str = "127.0.0.1"
    http_port: int = 4318
    grpc_port: int = 4317
    token: str = ""
    config_file: str = ""
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_pending_rows: int = 20_000
    # Decoding is Python under the GIL, so a second decoding thread adds no throughput; it
    # only makes the writer wait longer for the GIL each time DuckDB hands it back.
    max_concurrent_decodes: int = 1
    # OTLP bodies are decoded in this many worker processes (0: in threads of this process),
    # so protobuf decoding runs beside the writer and the analysis instead of sharing the GIL.
    # Off by default: under overload each process adds about 75 MB to the peak memory
    # (about 370 MB with none, 510 with two), for about a sixth more throughput with two on
    # two cores (benchmarks/ingest.py --decode-processes 2).
    decode_processes: int = DEFAULT_DECODE_PROCESSES
    analysis: bool = True
    # See DEFAULT_ANALYSIS_SHARE; the rest of the backlog waits in the store (1: no limit).
    analysis_share: float = DEFAULT_ANALYSIS_SHARE
    analysis_interval_s: float = 0.5
    sweep_interval_s: float = 15.0
    config: dict[str, Any] = field(default_factory=dict)  # parsed --config file
    taps: list[dict[str, Any]] = field(default_factory=list)  # broker taps (``taps:``, --tap)


class Collector:
    """Owns the writer; receivers and the API talk to it."""

    def __init__(self, settings: Settings) -> None:
        from collector.runner import AnalysisRunner  # the runner imports the analysis core

        self.settings = settings
        # Arrow's default allocator (mimalloc) keeps freed pages of every thread that built a
        # batch; the system allocator gives them back, which keeps the collector's peak RSS
        # under overload about 80 MB lower at the same throughput.
        pa.set_memory_pool(pa.system_memory_pool())
        Path(settings.db).parent.mkdir(parents=True, exist_ok=True)
        self.runner = AnalysisRunner(self, settings.config)
        self.writer = Writer(
            settings.db,
            max_pending_rows=settings.max_pending_rows,
            on_commit=self.runner.mark_dirty if settings.analysis else None,
        )
        self.started_ns = time.time_ns()
        self.http_requests: dict[tuple[str, int], int] = {}
        self.tap_stats: dict[str, TapStats] = {}  # filled by the broker taps as they start
        # Bounds the bodies held in memory while being decoded.
        self.decode_slots = asyncio.Semaphore(
            max(settings.max_concurrent_decodes, settings.decode_processes)
        )
        self._decoders: ProcessPoolExecutor | None = None

    def start(self) -> None:
        self.writer.start()
        self.runner.start()
        if self.settings.decode_processes > 0:
            self._decoders = self._decode_pool()

    def close(self) -> None:
        """Stop accepting, commit what was accepted, stop analysis, close the file.

        What analysis has not reached yet waits in the store for the next start.
        """
        if self._decoders is not None:
            self._decoders.shutdown(wait=True, cancel_futures=True)
            self._decoders = None
        self.runner.stop()
        self.writer.close()

    def _decode_pool(self) -> ProcessPoolExecutor:
        count = self.settings.decode_processes
        pool = ProcessPoolExecutor(
            count,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a threaded process
            initializer=decode_process_init,
            initargs=(os.getpid(),),
        )
        for _ in range(count):
            pool.submit(ready)  # start the processes now, not on the first request
        return pool

    async def decode(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a pure decoder off the event loop: in a decode process, else in a thread.

        A decode process that dies (killed, out of memory) takes its pool with it; the pool
        is replaced and the request decoded here, so no request fails for it.
        """
        pool = self._decoders
        if pool is None:
            return await asyncio.to_thread(fn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if self._decoders is pool:
                log.warning("a decode process stopped; starting new ones")
                self._decoders = self._decode_pool()
                pool.shutdown(wait=False, cancel_futures=True)
            return await asyncio.to_thread(fn, *args)

    def reader(self) -> Reader:
        return Reader(self.writer.cursor())

    def authorized(self, header_value: str | None) -> bool:
        """Constant-time check of an ``Authorization: Bearer <token>`` value."""
        if not self.settings.token:
            return True
        if not header_value:
            return False
        scheme, _, value = header_value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(value.strip().encode(), self.settings.token.encode())

    def count_request(self, path: str, status: int) -> None:
        key = (path, status)
        self.http_requests[key] = self.http_requests.get(key, 0) + 1
