"""Where the choreographed services' CloudEvents go: the collector's batch endpoint, or a list."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


class PublishError(Exception):
    """The collector did not take a batch of events."""


class EventSink(Protocol):
    def publish(self, event: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...


def rfc3339(ns: int) -> str:
    """CloudEvents ``time``: RFC 3339 UTC with microseconds."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest // 1000:06d}Z"


def event_ns(event: dict[str, Any]) -> int:
    """An event's RFC 3339 ``time`` (as ``rfc3339`` writes it) in Unix nanoseconds."""
    stamp = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(stamp.replace(microsecond=0).timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


class EventList:
    """Keeps events in memory, in publication order (recording and tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def flush(self) -> None:
        return None


class BatchPoster:
    """Buffers events and POSTs them to ``/v1/events`` in CloudEvents HTTP batch mode.

    ``flush`` raises ``PublishError`` when the collector refuses or is unreachable; the
    events of a failed batch are kept and sent again with the next flush, which is safe
    because the collector deduplicates on source + id.
    """

    def __init__(
        self,
        collector_url: str,
        token: str = "",
        *,
        max_batch: int = 100,
        max_pending: int = 20_000,
        timeout: float = 10,
    ) -> None:
        self.url = collector_url.rstrip("/") + "/v1/events"
        headers = {"Content-Type": BATCH_CONTENT_TYPE}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=timeout)
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.dropped = 0
        self.sent = 0

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(event)
            full = len(self._pending) >= self.max_batch
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            response = self._client.post(self.url, content=json.dumps(batch).encode())
        except httpx.HTTPError as exc:
            self._requeue(batch)
            raise PublishError(f"POST {self.url} failed: {exc}") from exc
        if response.status_code != 200:
            if response.status_code in (429, 502, 503, 504):
                self._requeue(batch)
            raise PublishError(f"POST {self.url}: HTTP {response.status_code} {response.text}")
        rejected = response.json().get("rejected") or []
        if rejected:
            raise PublishError(f"POST {self.url}: events rejected: {rejected}")
        self.sent += len(batch)

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending[:0] = batch
            # a collector that stays away must not make the sender grow without bound
            excess = len(self._pending) - self.max_pending
            if excess > 0:
                del self._pending[:excess]
                self.dropped += excess

    def close(self) -> None:
        self._client.close()
