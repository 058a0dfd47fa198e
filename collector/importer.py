"""``sagalens import``: OTLP JSON lines and CloudEvents files into a DuckDB file or a collector.

Accepted files:
- OTLP JSON lines, the OpenTelemetry Collector file exporter's format: one
  ``ExportTraceServiceRequest`` or ``ExportLogsServiceRequest`` JSON object per line;
- CloudEvents JSON: a single event, an array of events, or one event (or array) per line.
Lines of both kinds may be mixed. Bad lines are reported by line number, recorded as
rejections and never stop the import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.normalize.cloudevents import Envelope, decode_items, structured_event
from collector.normalize.otlp import DecodeError, decode_otlp_json_object
from collector.normalize.records import RecordBatch, Rejection

FLUSH_RECORDS = 5000
_OTLP_KEYS = ("resourceSpans", "resource_spans", "resourceLogs", "resource_logs")
_CE_KEYS = ("specversion", "id", "source", "type")

Progress = Callable[[int], None]


class ImporterError(Exception):
    """The import cannot proceed (store locked, collector unreachable or refusing)."""


@dataclass
class ImportSummary:
    stored: int = 0
    duplicates: int = 0
    accepted: int = 0  # sent to a collector over OTLP: stored or already present
    rejected: list[tuple[str, int, str]] = field(default_factory=list)  # (file, line, reason)
    files: int = 0
    lines: int = 0


@dataclass(slots=True)
class Item:
    """One unit of a file: an OTLP request, a list of CloudEvents, or a line that failed."""

    file: str
    line: int
    kind: str  # "otlp" | "events" | "error"
    obj: Any = None
    reason: str = ""


def _classify(file: str, line: int, obj: Any) -> Item:
    if isinstance(obj, list):
        return Item(file, line, "events", obj)
    if isinstance(obj, dict):
        if any(k in obj for k in _OTLP_KEYS):
            return Item(file, line, "otlp", obj)
        if any(k in obj for k in _CE_KEYS):
            return Item(file, line, "events", [obj])
        keys = ", ".join(sorted(obj)[:5]) or "none"
        return Item(
            file,
            line,
            "error",
            reason=(
                "neither an OTLP request (resourceSpans/resourceLogs) nor a CloudEvent "
                f"(specversion, id, source, type); keys: {keys}"
            ),
        )
    return Item(
        file, line, "error", reason=f"expected a JSON object or array, got {type(obj).__name__}"
    )


def read_items(path: Path, progress: Progress | None = None) -> Iterator[Item]:
    """Split a file into items, one per line (or one for a whole-file JSON document)."""
    name = path.name
    data = path.read_bytes()
    stripped = data.lstrip()
    if stripped[:1] == b"[":
        try:
            yield _classify(name, 1, json.loads(data))
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        else:
            if progress:
                progress(len(data))
            return
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if progress:
            progress(len(raw) + 1)
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            if number == 1 and stripped[:1] in (b"{", b"["):
                # Not JSON lines: perhaps one pretty-printed JSON document.
                try:
                    obj = json.loads(data)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    pass
                else:
                    if progress:
                        progress(len(data) - len(raw) - 1)
                    yield _classify(name, 1, obj)
                    return
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            yield Item(name, number, "error", reason=f"not valid JSON: {detail}")
            continue
        yield _classify(name, number, obj)


def decode_item(item: Item, received_ns: int) -> RecordBatch:
    """Decode one item into records; every problem becomes a rejection labelled with its line."""
    label = f"import:{item.file}:{item.line}"
    if item.kind == "error":
        return RecordBatch(rejections=[Rejection(label, item.reason)])
    if item.kind == "otlp":
        try:
            batch = decode_otlp_json_object(item.obj)
        except DecodeError as exc:
            return RecordBatch(rejections=[Rejection(label, str(exc))])
        for r in batch.rejections:
            r.source = label
        return batch
    env = Envelope("file", received_ns, label)
    if len(item.obj) == 1 and isinstance(item.obj, list):
        try:
            return RecordBatch(events=[structured_event(item.obj[0], env)])
        except ValueError as exc:
            return RecordBatch(rejections=[Rejection(label, str(exc))])
    decoded = decode_items(item.obj, env)
    return RecordBatch(events=decoded.events, rejections=[r for _, r in decoded.rejections])


def _note_rejections(summary: ImportSummary, item: Item, batch: RecordBatch) -> None:
    for r in batch.rejections:
        summary.rejected.append((item.file, item.line, r.reason))


# -- into a DuckDB file ---------------------------------------------------------------------


def import_into_db(
    paths: list[Path], db: str, config: dict[str, Any], progress: Progress | None = None
) -> ImportSummary:
    """Write the files straight into ``db`` (no collector may hold it), then rebuild the analysis."""
    import duckdb

    from collector.analysis.config import SagaConfig
    from collector.rebuild import rebuild
    from collector.store.columns import PreparedBatch, prepare_batch
    from collector.store.writer import StoreOpenError, Writer

    saga_config = SagaConfig.from_dict(config)
    try:
        writer = Writer(db).start()
    except StoreOpenError as exc:
        hint = "; stop it or import through it with --collector URL" if exc.locked else ""
        raise ImporterError(f"{exc}{hint}") from None
    summary = ImportSummary()
    pending = RecordBatch()
    items: list[tuple[Item, RecordBatch]] = []  # what `pending` holds, line by line
    now = time.time_ns()

    def write(prepared: PreparedBatch) -> None:
        result = writer.write_blocking(prepared)
        summary.stored += result.stored
        summary.duplicates += result.duplicates

    def flush() -> None:
        if not (len(pending) or pending.rejections):
            return
        prepared = prepare_batch(pending)
        if len(prepared.rejections) == len(pending.rejections):
            write(prepared)
        else:
            # Some record holds a value no column can (a time beyond 64 bits): rare, so
            # only then are the lines prepared one by one, to say which line it was on.
            for item, batch in items:
                one = prepare_batch(batch)
                refused = one.rejections[len(batch.rejections) :]
                label = f"import:{item.file}:{item.line}"
                one.rejections[len(batch.rejections) :] = [(label, r, s) for _, r, s in refused]
                summary.rejected += [(item.file, item.line, r) for _, r, _ in refused]
                write(one)
        pending.spans, pending.logs, pending.events, pending.rejections = [], [], [], []
        items.clear()

    try:
        for path in paths:
            summary.files += 1
            for item in read_items(path, progress):
                summary.lines += 1
                batch = decode_item(item, now)
                _note_rejections(summary, item, batch)
                pending.extend(batch)
                items.append((item, batch))
                if len(pending) >= FLUSH_RECORDS:
                    flush()
        flush()

        def analyse(conn: duckdb.DuckDBPyConnection) -> None:
            # rebuild() runs its own transaction; end the one the writer opened around us.
            conn.execute("COMMIT")
            try:
                rebuild(conn, saga_config, now_ns=None)
            finally:
                conn.execute("BEGIN")

        writer.run(analyse).result()
    finally:
        writer.close()
    return summary


# -- through a collector --------------------------------------------------------------------


class _CollectorSink:
    def __init__(self, url: str, token: str, summary: ImportSummary) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.client = httpx.Client(
            timeout=60, headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        self.summary = summary
        self.otlp: dict[str, list[dict[str, Any]]] = {"traces": [], "logs": []}
        self.otlp_records = {"traces": 0, "logs": 0}
        self.events: list[tuple[Item, int, Any]] = []  # (item, index within item, event)

    def post(self, path: str, body: bytes, content_type: str) -> Any:
        import httpx

        for _attempt in range(30):
            try:
                r = self.client.post(
                    self.url + path, content=body, headers={"Content-Type": content_type}
                )
            except httpx.HTTPError as exc:
                raise ImporterError(f"cannot reach the collector at {self.url}: {exc}") from exc
            if r.status_code == 503:
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            if r.status_code == 401:
                raise ImporterError("the collector refused the token (401); pass --token")
            if r.status_code >= 400 and path != "/v1/events":
                raise ImporterError(
                    f"the collector answered {r.status_code} on {path}: {r.text[:300]}"
                )
            return r.json() if r.content else {}
        raise ImporterError("the collector stayed overloaded (503); try again later")

    def add_otlp(self, item: Item, decoded: RecordBatch) -> None:
        obj = item.obj
        for kind, keys in (
            ("traces", ("resourceSpans", "resource_spans")),
            ("logs", ("resourceLogs", "resource_logs")),
        ):
            for key in keys:
                if key in obj:
                    self.otlp[kind].extend(obj[key])
        self.otlp_records["traces"] += len(decoded.spans)
        self.otlp_records["logs"] += len(decoded.logs)
        if sum(self.otlp_records.values()) >= FLUSH_RECORDS:
            self.flush_otlp()

    def flush_otlp(self) -> None:
        for kind, key in (("traces", "resourceSpans"), ("logs", "resourceLogs")):
            if self.otlp[kind]:
                self.post(
                    f"/v1/{kind}", json.dumps({key: self.otlp[kind]}).encode(), "application/json"
                )
                self.summary.accepted += self.otlp_records[kind]
            self.otlp[kind] = []
            self.otlp_records[kind] = 0

    def add_events(self, item: Item) -> None:
        self.events.extend((item, i, e) for i, e in enumerate(item.obj))
        if len(self.events) >= FLUSH_RECORDS:
            self.flush_events()

    def flush_events(self) -> None:
        if not self.events:
            return
        body = json.dumps([e for _, _, e in self.events]).encode()
        answer = self.post("/v1/events", body, "application/cloudevents-batch+json")
        if "error" in answer and "rejected" not in answer:
            raise ImporterError(f"the collector refused the events: {answer['error']}")
        self.summary.stored += int(answer.get("stored", 0))
        self.summary.duplicates += int(answer.get("duplicates", 0))
        for rejected in answer.get("rejected", []):
            item, index, _ = self.events[int(rejected["index"])]
            reason = str(rejected["reason"]).split(": ", 1)[-1]
            where = f"event {index}: " if len(item.obj) > 1 else ""
            self.summary.rejected.append((item.file, item.line, where + reason))
        self.events = []


def import_via_collector(
    paths: list[Path], url: str, token: str = "", progress: Progress | None = None
) -> ImportSummary:
    """POST the files to a running collector: OTLP to /v1/traces|logs, events to /v1/events."""
    summary = ImportSummary()
    sink = _CollectorSink(url, token, summary)
    now = time.time_ns()
    try:
        for path in paths:
            summary.files += 1
            for item in read_items(path, progress):
                summary.lines += 1
                if item.kind == "events":
                    sink.add_events(item)
                    continue
                # Decode locally too, so bad records are reported with their line number.
                decoded = decode_item(item, now)
                _note_rejections(summary, item, decoded)
                if item.kind == "otlp" and len(decoded):
                    sink.add_otlp(item, decoded)
        sink.flush_otlp()
        sink.flush_events()
    finally:
        sink.client.close()
    return summary
