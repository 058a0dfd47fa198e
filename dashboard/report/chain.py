"""Hash chains: every record carries the SHA-256 of its canonical content and its predecessor's hash.

A record's content is ``{"seq", "kind", "data", "prev_hash"}``; its hash is the SHA-256 of the
canonical JSON of that content (sorted keys, no whitespace, UTF-8). The first record's
``prev_hash`` is ``GENESIS``. Sequence numbers let the verifier tell an altered record from a
missing or a reordered one.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64


def canonical(value: Any) -> str:
    """The canonical JSON text of a value: sorted keys, no whitespace, non-ASCII kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_content(seq: int, kind: str, data: Mapping[str, Any], prev_hash: str) -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "data": data, "prev_hash": prev_hash}


def chain_line(seq: int, kind: str, data: Mapping[str, Any], prev_hash: str) -> tuple[str, str]:
    """One JSON Lines record (without newline) and its hash."""
    body = canonical(record_content(seq, kind, data, prev_hash))
    digest = sha256_hex(body)
    # The line is the hashed text with the hash appended, so writing costs one serialization.
    return body[:-1] + ',"hash":"' + digest + '"}', digest


@dataclass(slots=True)
class VerifyReport:
    """Outcome of a verification: ``ok`` is true only when nothing is wrong."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def merge(self, other: VerifyReport) -> None:
        self.problems.extend(other.problems)
        self.checked.extend(other.checked)
        self.warnings.extend(other.warnings)

    def summary(self) -> str:
        """A short human text: verdict, then problems, then what was checked."""
        lines = [
            "VERIFIED: no alteration found"
            if self.ok
            else f"FAILED: {len(self.problems)} problem(s)"
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  checked: {c}" for c in self.checked]
        return "\n".join(lines)


@dataclass(slots=True)
class ChainRecord:
    """A parsed record as found in a file: the hash it claims and whether its content matches."""

    seq: int
    claimed_hash: str
    prev_hash: str
    intact: bool  # the content still hashes to claimed_hash
    label: str


def verify_chain(
    records: Sequence[ChainRecord],
    expected_count: int | None = None,
    expected_head: str | None = None,
    where: str = "",
    first: int = 0,
) -> VerifyReport:
    """Check content hashes, links, sequence order and head of records in file order.

    ``first`` is the sequence number of the chain's first record (its ``prev_hash`` is GENESIS).
    """
    report = VerifyReport()
    prefix = f"{where}: " if where else ""
    by_seq: dict[int, ChainRecord] = {}
    for rec in records:
        if rec.seq in by_seq:
            report.problems.append(f"{prefix}record {rec.seq} appears more than once (duplicated)")
        by_seq[rec.seq] = rec
        if not rec.intact:
            report.problems.append(
                f"{prefix}record {rec.seq}{rec.label} was altered: content hash mismatch"
            )
    for earlier, later in itertools.pairwise(records):
        if later.seq < earlier.seq:
            low, high = sorted((earlier.seq, later.seq))
            report.problems.append(f"{prefix}records {low} and {high} are out of order")
    top = max(by_seq, default=first - 1)
    if expected_count is not None:
        top = max(top, first + expected_count - 1)
    missing = [s for s in range(first, top + 1) if s not in by_seq]
    for s in missing:
        before = max((k for k in by_seq if k < s), default=None)
        after = min((k for k in by_seq if k > s), default=None)
        if after is None:
            report.problems.append(
                f"{prefix}record {s} is missing (file truncated after record {before})"
            )
        elif before is None:
            report.problems.append(f"{prefix}record {s} is missing (chain starts at {after})")
        else:
            report.problems.append(
                f"{prefix}record {s} is missing (chain break between {before} and {after})"
            )
    missing_set = set(missing)
    for seq in sorted(by_seq):
        rec = by_seq[seq]
        if seq == first:
            if rec.prev_hash != GENESIS:
                report.problems.append(
                    f"{prefix}record {seq} does not start the chain (prev_hash is not genesis)"
                )
            continue
        prev = by_seq.get(seq - 1)
        if prev is None or (seq - 1) in missing_set:
            continue
        if rec.prev_hash != prev.claimed_hash:
            report.problems.append(
                f"{prefix}chain break between records {seq - 1} and {seq}: record {seq - 1}"
                f"{prev.label} was replaced or rewritten with a recomputed hash"
            )
    if expected_count is not None and len(by_seq) > expected_count:
        report.problems.append(
            f"{prefix}{len(by_seq) - expected_count} record(s) more than the manifest lists (appended)"
        )
    if expected_head is not None and by_seq:
        last = by_seq[max(by_seq)]
        if last.claimed_hash != expected_head:
            report.problems.append(f"{prefix}chain head does not match the manifest")
    report.checked.append(f"{prefix}hash chain of {len(records)} record(s)")
    return report


def parse_chain(
    items: Iterable[tuple[int, Mapping[str, Any] | None]],
    label: Callable[[Mapping[str, Any]], str],
    where: str = "",
) -> tuple[list[ChainRecord], VerifyReport]:
    """Turn parsed JSON Lines records ``(line_no, obj | None)`` into chain records."""
    report = VerifyReport()
    out: list[ChainRecord] = []
    prefix = f"{where}: " if where else ""
    for line_no, obj in items:
        if (
            obj is None
            or not isinstance(obj.get("seq"), int)
            or not isinstance(obj.get("hash"), str)
        ):
            report.problems.append(
                f"{prefix}line {line_no} is not a valid record (edited or corrupted)"
            )
            continue
        content = record_content(
            obj["seq"], str(obj.get("kind", "")), obj.get("data", {}), str(obj.get("prev_hash", ""))
        )
        out.append(
            ChainRecord(
                seq=obj["seq"],
                claimed_hash=obj["hash"],
                prev_hash=str(obj.get("prev_hash", "")),
                intact=sha256_hex(canonical(content)) == obj["hash"],
                label=label(obj),
            )
        )
    return out, report
