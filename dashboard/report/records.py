"""The canonical record stream of a report: a header, then per saga its saga, step and finding
records, then a trailer with totals. JSON Lines and CSV exports are two spellings of it."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .chain import GENESIS, canonical, chain_line, record_content, sha256_hex
from .meta import Completeness, ReportMeta, iso_ns
from .redaction import RedactionRules

RECORD_FORMAT = "sagalens-report/1"

CSV_COLUMNS = (
    "seq",
    "kind",
    "saga_key",
    "saga_type",
    "status",
    "step_seq",
    "step",
    "step_type",
    "service",
    "start",
    "end",
    "outcome",
    "attempts",
    "actor",
    "origin",
    "resource",
    "compensates",
    "error",
    "finding_id",
    "finding_kind",
    "severity",
    "explanation",
    "evidence",
    "details",
    "prev_hash",
    "hash",
)
# Columns that carry the record's content; seq, kind and the two hashes frame it.
CSV_DATA_COLUMNS = CSV_COLUMNS[2:-2]


@dataclass(slots=True)
class Totals:
    """Counts accumulated while streaming, stated in the trailer."""

    sagas: int = 0
    steps: int = 0
    findings: int = 0
    redactions: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sagas": self.sagas,
            "steps": self.steps,
            "findings": self.findings,
            "redactions": dict(sorted(self.redactions.items())),
        }


def header_data(
    meta: ReportMeta, completeness: Completeness, rules: RedactionRules
) -> dict[str, Any]:
    """The header record: everything a reader needs to know before the data."""
    return {
        "record_format": RECORD_FORMAT,
        "report": meta.to_dict(),
        "completeness": completeness.to_dict(),
        "redaction": rules.to_dict(),
    }


def redacted_sagas(
    sagas: Iterable[Mapping[str, Any]], rules: RedactionRules, totals: Totals
) -> Iterator[dict[str, Any]]:
    """Each saga redacted, counted into ``totals`` as it passes."""
    for saga in sagas:
        clean = rules.redact(dict(saga), totals.redactions)
        totals.sagas += 1
        totals.steps += len(clean.get("steps") or ())
        totals.findings += len(clean.get("findings") or ())
        yield clean


def step_resource(saga: Mapping[str, Any], step: Mapping[str, Any]) -> str:
    """The affected resource of a step: its own, else the saga's business keys."""
    return str(step.get("resource") or ", ".join(saga.get("business_keys") or ()))


def saga_records(saga: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The saga, step and finding records of one (already redacted) saga."""
    head = {k: v for k, v in saga.items() if k not in ("steps", "findings")}
    head["started"] = iso_ns(int(head.get("started_ns") or 0))
    head["ended"] = iso_ns(int(head.get("ended_ns") or 0))
    head["last_progress"] = iso_ns(int(head.get("last_progress_ns") or 0))
    yield "saga", head
    steps = sorted(saga.get("steps") or (), key=lambda s: int(s.get("seq", 0)))
    for step in steps:
        data = dict(step)
        data["start"] = iso_ns(int(step.get("start_ns") or 0))
        data["end"] = iso_ns(int(step.get("end_ns") or 0))
        data["origin"] = str(step.get("origin") or step.get("service") or "")
        data["resource"] = step_resource(saga, step)
        yield "step", data
    for finding in saga.get("findings") or ():
        data = dict(finding)
        data["detected"] = iso_ns(int(finding.get("detected_ns") or 0))
        yield "finding", data


def report_records(
    sagas: Iterable[Mapping[str, Any]],
    meta: ReportMeta,
    completeness: Completeness,
    rules: RedactionRules,
    totals: Totals,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The whole canonical record stream, lazily."""
    yield "header", header_data(meta, completeness, rules)
    for saga in redacted_sagas(sagas, rules, totals):
        yield from saga_records(saga)
    yield "trailer", {"totals": totals.to_dict()}


class Chain:
    """Links records as they are produced; ``head`` is the last record's hash."""

    def __init__(self) -> None:
        self.seq = 0
        self.head = GENESIS

    def line(self, kind: str, data: Mapping[str, Any]) -> str:
        """The JSON Lines text of the next record."""
        text, self.head = chain_line(self.seq, kind, data, self.head)
        self.seq += 1
        return text

    def csv_row(self, kind: str, cells: Mapping[str, str]) -> list[str]:
        """The CSV cells of the next record, hashed over its data columns."""
        digest = sha256_hex(canonical(record_content(self.seq, kind, cells, self.head)))
        row = [str(self.seq), kind, *(cells[c] for c in CSV_DATA_COLUMNS), self.head, digest]
        self.seq += 1
        self.head = digest
        return row


def build_jsonl(records: Iterable[tuple[str, Mapping[str, Any]]], chain: Chain) -> Iterator[str]:
    """JSON Lines text, one newline-terminated record per item."""
    for kind, data in records:
        yield chain.line(kind, data) + "\n"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return canonical(value)


def csv_cells(kind: str, data: Mapping[str, Any]) -> dict[str, str]:
    """Flatten one canonical record into the CSV's data columns."""
    cells = dict.fromkeys(CSV_DATA_COLUMNS, "")
    if kind == "saga":
        cells.update(
            saga_key=_text(data.get("saga_key")),
            saga_type=_text(data.get("saga_type")),
            status=_text(data.get("status")),
            start=_text(data.get("started")),
            end=_text(data.get("ended")),
            resource=", ".join(data.get("business_keys") or ()),
            explanation=_text(data.get("explanation")),
        )
        rest = {
            k: v
            for k, v in data.items()
            if k not in ("saga_key", "saga_type", "status", "started", "ended", "explanation")
        }
        cells["details"] = canonical(rest)
    elif kind == "step":
        cells.update(
            saga_key=_text(data.get("saga_key")),
            step_seq=_text(data.get("seq")),
            step=_text(data.get("name")),
            step_type=_text(data.get("step_type")),
            service=_text(data.get("service")),
            start=_text(data.get("start")),
            end=_text(data.get("end")),
            outcome=_text(data.get("outcome")),
            attempts=_text(data.get("attempts")),
            actor=_text(data.get("actor")),
            origin=_text(data.get("origin")),
            resource=_text(data.get("resource")),
            compensates=_text(data.get("compensates")),
            error=_text(data.get("error")),
            evidence=" ".join(data.get("records") or ()),
            details=canonical(
                {
                    "compensation_inferred": bool(data.get("compensation_inferred")),
                    "start_ns": data.get("start_ns", 0),
                    "end_ns": data.get("end_ns", 0),
                }
            ),
        )
    elif kind == "finding":
        cells.update(
            saga_key=_text(data.get("saga_key")),
            step=_text(data.get("step")),
            start=_text(data.get("detected")),
            finding_id=_text(data.get("finding_id")),
            finding_kind=_text(data.get("kind")),
            severity=_text(data.get("severity")),
            explanation=_text(data.get("explanation")),
            evidence=" ".join(data.get("evidence") or ()),
            details=canonical(data.get("details") or {}),
        )
    else:
        cells["details"] = canonical(data)
    return cells


def build_csv(records: Iterable[tuple[str, Mapping[str, Any]]], chain: Chain) -> Iterator[str]:
    """CSV text: a header row, then one hash-chained row per record."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue()
    for kind, data in records:
        buf.seek(0)
        buf.truncate()
        writer.writerow(chain.csv_row(kind, csv_cells(kind, data)))
        yield buf.getvalue()


def record_label(kind: str, data: Mapping[str, Any]) -> str:
    """How a record is named in verification messages, e.g. ' (saga order-42 step charge)'."""
    key = data.get("saga_key")
    if kind == "saga":
        return f" (saga {key})"
    if kind == "step":
        return f" (saga {key} step {data.get('name') or data.get('step')})"
    if kind == "finding":
        return f" (saga {key} finding {data.get('kind') or data.get('finding_kind')})"
    return f" ({kind})" if kind else ""
