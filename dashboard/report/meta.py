"""Value objects describing a report: who asked for it, what it covers, how complete it is."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMATS = ("pdf", "csv", "json", "ocel")


def iso_ns(ns: int) -> str:
    """Format integer nanoseconds since the epoch as ISO 8601 UTC with milliseconds ('' for 0).

    Exports keep the exact ``*_ns`` integers next to these strings.
    """
    if not ns:
        return ""
    seconds, rem = divmod(int(ns), 1_000_000_000)
    return f"{_iso_seconds(seconds)}.{rem // 1_000_000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    # Steps of one saga mostly share their second; caching makes 100k-saga exports cheaper.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@dataclass(frozen=True, slots=True)
class ReportMeta:
    """Scope and provenance of a report, passed in by the caller (the builders never read the clock)."""

    generated_ns: int
    generated_by: str
    host: str
    sagalens_version: str
    from_ns: int = 0
    to_ns: int = 0
    saga_key: str = ""
    filters: Mapping[str, str] = field(default_factory=dict)
    title: str = "Saga audit report"

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "generated_at": iso_ns(self.generated_ns),
            "generated_ns": self.generated_ns,
            "generated_by": self.generated_by,
            "host": self.host,
            "sagalens_version": self.sagalens_version,
            "scope": {
                "from": iso_ns(self.from_ns),
                "from_ns": self.from_ns,
                "to": iso_ns(self.to_ns),
                "to_ns": self.to_ns,
                "saga_key": self.saga_key,
                "filters": dict(sorted(self.filters.items())),
            },
        }


@dataclass(frozen=True, slots=True)
class Completeness:
    """What the data behind a report covers and where it is known to be incomplete."""

    sources: tuple[str, ...] = ()
    record_counts: Mapping[str, int] = field(default_factory=dict)
    coverage_from_ns: int = 0
    coverage_to_ns: int = 0
    unresolved_records: int = 0
    gaps: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "record_counts": dict(sorted(self.record_counts.items())),
            "coverage_from": iso_ns(self.coverage_from_ns),
            "coverage_from_ns": self.coverage_from_ns,
            "coverage_to": iso_ns(self.coverage_to_ns),
            "coverage_to_ns": self.coverage_to_ns,
            "unresolved_records": self.unresolved_records,
            "gaps": list(self.gaps),
        }


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote."""

    fmt: str
    files: tuple[Path, ...]
    manifest: Path
    data_digest: str
    record_count: int
    saga_count: int
    signed: bool
    omitted_sagas: int = 0
