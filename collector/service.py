"""The running collector: settings, the single writer, readers and the analysis runner."""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.store.queries import Reader
from collector.store.writer import Writer

DEFAULT_MAX_BODY = 64 * 1024 * 1024


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
    max_concurrent_decodes: int = 4
    analysis: bool = True
    analysis_interval_s: float = 0.5
    sweep_interval_s: float = 15.0
    config: dict[str, Any] = field(default_factory=dict)  # parsed --config file
    taps: list[dict[str, Any]] = field(default_factory=list)  # broker taps (``taps:``, --tap)


class Collector:
    """Owns the writer; receivers and the API talk to it."""

    def __init__(self, settings: Settings) -> None:
        from collector.runner import AnalysisRunner  # the runner imports the analysis core

        self.settings = settings
        Path(settings.db).parent.mkdir(parents=True, exist_ok=True)
        self.runner = AnalysisRunner(self, settings.config)
        self.writer = Writer(
            settings.db,
            max_pending_rows=settings.max_pending_rows,
            on_commit=self.runner.mark_dirty if settings.analysis else None,
        )
        self.started_ns = time.time_ns()
        self.http_requests: dict[tuple[str, int], int] = {}
        # Bounds the bodies held in memory while being decoded.
        self.decode_slots = asyncio.Semaphore(settings.max_concurrent_decodes)

    def start(self) -> None:
        self.writer.start()
        self.runner.start()

    def close(self) -> None:
        """Stop accepting, commit what was accepted, finish analysis, close the file."""
        self.runner.stop()
        self.writer.close()

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
