"""The PDF audit document: title page, summary, completeness, compensation coverage, findings,
flagged saga timelines and a verification appendix. Every page carries the data digest and
"Page N of M"."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Frame,
    KeepTogether,
    LongTable,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from .meta import iso_ns
from .redaction import RedactionRules, describe_rules
from .summary import PdfSummary
from .timeline import build_timeline_drawing

NAVY = colors.HexColor("#1F3A5F")
INK = colors.HexColor("#26313D")
MUTED = colors.HexColor("#5B6773")
RULE = colors.HexColor("#C8CED6")
ZEBRA = colors.HexColor("#F3F5F8")
ALERT = colors.HexColor("#B3261E")
BAD_STATUSES = {"stalled", "compensation_missing", "compensation_failed", "failed"}
MARGIN = 18 * mm
PAGE_W, PAGE_H = A4
BODY_W = PAGE_W - 2 * MARGIN
_DEJAVU = "/usr/share/fonts/truetype/dejavu/"


def _fonts() -> tuple[str, str, str]:
    """Regular, bold and mono font names; DejaVu when present for non-Latin text."""
    try:
        if "SL-Sans" not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont("SL-Sans", os.path.join(_DEJAVU, "DejaVuSans.ttf")))
            pdfmetrics.registerFont(TTFont("SL-Bold", os.path.join(_DEJAVU, "DejaVuSans-Bold.ttf")))
            pdfmetrics.registerFont(TTFont("SL-Mono", os.path.join(_DEJAVU, "DejaVuSansMono.ttf")))
        return "SL-Sans", "SL-Bold", "SL-Mono"
    except Exception:  # fonts missing: the base-14 fonts still render Latin-1 text
        return "Helvetica", "Helvetica-Bold", "Courier"


class _Styles:
    def __init__(self) -> None:
        self.regular, self.bold, self.mono = _fonts()
        base = ParagraphStyle("body", fontName=self.regular, fontSize=9, leading=12, textColor=INK)
        self.body = base
        self.small = ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5)
        self.muted = ParagraphStyle("muted", parent=base, fontSize=8, leading=10.5, textColor=MUTED)
        self.cell = ParagraphStyle(
            "cell", parent=base, fontSize=7.2, leading=8.8, alignment=TA_LEFT
        )
        self.cell_mono = ParagraphStyle(
            "cellmono", parent=self.cell, fontName=self.mono, fontSize=6.6
        )
        self.cell_num = ParagraphStyle("cellnum", parent=self.cell, alignment=TA_RIGHT)
        self.head = ParagraphStyle(
            "head", parent=self.cell, fontName=self.bold, textColor=colors.white
        )
        self.head_num = ParagraphStyle("headnum", parent=self.head, alignment=TA_RIGHT)
        self.h1 = ParagraphStyle(
            "h1",
            parent=base,
            fontName=self.bold,
            fontSize=15,
            leading=19,
            textColor=NAVY,
            spaceBefore=10,
            spaceAfter=8,
        )
        self.h2 = ParagraphStyle(
            "h2",
            parent=base,
            fontName=self.bold,
            fontSize=11,
            leading=14,
            textColor=NAVY,
            spaceBefore=10,
            spaceAfter=4,
        )
        self.title = ParagraphStyle(
            "title", parent=base, fontName=self.bold, fontSize=28, leading=34, textColor=NAVY
        )
        self.subtitle = ParagraphStyle(
            "subtitle", parent=base, fontSize=13, leading=18, textColor=MUTED
        )
        self.digest = ParagraphStyle(
            "digest", parent=base, fontName=self.mono, fontSize=8.5, leading=11
        )


def _p(text: Any, style: ParagraphStyle) -> Paragraph:
    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def _table(
    st: _Styles,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    widths: Sequence[float],
    mono: Sequence[int] = (),
    numeric: Sequence[int] = (),
    highlight: Callable[[Sequence[Any]], bool] | None = None,
) -> LongTable:
    """A table that splits across pages and repeats its header row; widths are relative."""

    head_styles = [st.head_num if j in numeric else st.head for j in range(len(header))]
    cell_styles = [
        st.cell_mono if j in mono else st.cell_num if j in numeric else st.cell
        for j in range(len(header))
    ]
    # A column is at least as wide as its widest word ("Severity", "compensation"): words
    # are broken between their parts only when no width would hold them.
    least = [
        max(
            [_unbreakable_width(h, head_styles[j])]
            + [_unbreakable_width(str(row[j]), cell_styles[j]) for row in rows]
        )
        + _PADDING
        for j, h in enumerate(header)
    ]
    scaled = _column_widths(widths, least, BODY_W)
    room = [w - _PADDING for w in scaled]

    def cell(j: int, v: Any) -> Paragraph:
        return _p(_fit_words(str(v), cell_styles[j], room[j]), cell_styles[j])

    data: list[list[Any]] = [
        [_p(_fit_words(h, head_styles[j], room[j]), head_styles[j]) for j, h in enumerate(header)]
    ]
    style = [
        ("BACKGROUND", (0, 0), (-1, 0), NAVY),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
        ("BOX", (0, 0), (-1, -1), 0.6, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3.5),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3.5),
    ]
    for i, row in enumerate(rows, start=1):
        data.append([cell(j, v) for j, v in enumerate(row)])
        if i % 2 == 0:
            style.append(("BACKGROUND", (0, i), (-1, i), ZEBRA))
        if highlight is not None and highlight(row):
            style.append(("LINEBEFORE", (0, i), (0, i), 2.2, ALERT))
    return LongTable(data, colWidths=scaled, repeatRows=1, style=TableStyle(style), hAlign="LEFT")


# pieces of an identifier a line may end after: a word of a camelCase or PascalCase name, or a
# run of characters ending in punctuation (order.id: / B- / 107055-)
_PIECES = re.compile(r"[A-Z]?[a-z0-9]+[^A-Za-z0-9\s]*|[A-Z]+(?![a-z])[^A-Za-z0-9\s]*|\S")


_PADDING = 7.5  # a cell's left and right padding (see _table)
_PLAIN_WORD = re.compile(r"[^\W\d_]+[.,;:)]?")


def _unbreakable_width(text: str, style: ParagraphStyle) -> float:
    """The widest part of ``text`` a line should never break: a plain word, or else the
    widest part of an identifier (see :func:`_fit_words`) but for numbers and digests, which
    may break anywhere."""
    widest = 0.0
    for word in text.split():
        parts = [word] if _PLAIN_WORD.fullmatch(word) else _PIECES.findall(word)
        for part in parts:
            if any(c.isdigit() for c in part):
                continue
            widest = max(widest, pdfmetrics.stringWidth(part, style.fontName, style.fontSize))
    return widest


def _column_widths(weights: Sequence[float], least: Sequence[float], total: float) -> list[float]:
    """``total`` shared in proportion to ``weights``, but each column given at least
    ``least``, taken from the columns that have room to spare; as weighted when the least
    widths do not fit at all."""
    scaled = [w * total / sum(weights) for w in weights]
    if sum(least) > total:
        return scaled
    for _ in range(len(scaled)):
        short = [j for j, w in enumerate(scaled) if w < least[j]]
        if not short:
            break
        needed = sum(least[j] - scaled[j] for j in short)
        for j in short:
            scaled[j] = least[j]
        spare = {j: w - least[j] for j, w in enumerate(scaled) if j not in short and w > least[j]}
        room = sum(spare.values())
        for j, extra in spare.items():
            scaled[j] -= needed * extra / room
    return scaled


def _fit_words(text: str, style: ParagraphStyle, width: float) -> str:
    """Break words wider than ``width`` between their parts, not mid-word.

    A table cell otherwise splits an over-long word anywhere (InventoryReleaseFa / iled);
    step names and saga keys are identifiers an auditor searches for, so each line ends
    after a whole part of the name. Characters are never added or removed.
    """

    def fits(word: str) -> bool:
        return bool(pdfmetrics.stringWidth(word, style.fontName, style.fontSize) <= width)

    lines = []
    for line in text.split("\n"):
        words = []
        for word in line.split(" "):
            if fits(word):
                words.append(word)
                continue
            chunks = [""]
            for piece in _PIECES.findall(word):
                for part in [piece] if fits(piece) else list(piece):
                    if chunks[-1] and not fits(chunks[-1] + part):
                        chunks.append("")
                    chunks[-1] += part
            words.append("\n".join(chunks))
        lines.append(" ".join(words))
    return "\n".join(lines)


def _duration(start_ns: int, end_ns: int) -> str:
    if not start_ns or not end_ns:
        return ""
    ms = (end_ns - start_ns) / 1e6
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _when(iso: Any) -> str:
    """ISO 8601 UTC as printed in tables: '2026-01-01 00:00:16.200'."""
    return str(iso or "").replace("T", " ").removesuffix("Z")


def _status(status: Any) -> str:
    return str(status or "").replace("_", " ")


_SHORT_STATUS = {"compensation_missing": "comp. missing", "compensation_failed": "comp. failed"}


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "–"


def _numbered_canvas(digest: str, st: _Styles, title: str, generated: str) -> type[canvas.Canvas]:
    """A canvas that defers pages so the footer can say 'Page N of M'."""

    class NumberedCanvas(canvas.Canvas):  # type: ignore[misc]  # reportlab ships no types
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for page in self._pages:
                self.__dict__.update(page)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            self.saveState()
            self.setStrokeColor(RULE)
            self.setLineWidth(0.5)
            self.line(MARGIN, 14 * mm, PAGE_W - MARGIN, 14 * mm)
            self.setFillColor(MUTED)
            self.setFont(st.regular, 6.5)
            label = "Verification digest (SHA-256 chain head): "
            self.drawString(MARGIN, 10 * mm, label)
            self.setFont(st.mono, 6.5)
            offset = pdfmetrics.stringWidth(label, st.regular, 6.5)
            self.drawString(MARGIN + offset, 10 * mm, digest)
            self.setFont(st.regular, 7.5)
            self.drawRightString(PAGE_W - MARGIN, 10 * mm, f"Page {self._pageNumber} of {total}")
            if self._pageNumber > 1:
                self.line(MARGIN, PAGE_H - 13 * mm, PAGE_W - MARGIN, PAGE_H - 13 * mm)
                self.setFont(st.bold, 7.5)
                self.drawString(MARGIN, PAGE_H - 11 * mm, f"sagalens · {title}")
                self.setFont(st.regular, 7.5)
                self.drawRightString(PAGE_W - MARGIN, PAGE_H - 11 * mm, f"Generated {generated}")
            self.restoreState()

    return NumberedCanvas


def render_pdf(summary: PdfSummary, data_digest: str, path: str) -> None:
    """Write the PDF for ``summary`` to ``path``; ``data_digest`` goes on every page."""
    st = _Styles()
    header = summary.header
    report = header.get("report", {})
    title = str(report.get("title") or "Saga audit report")
    generated = _when(report.get("generated_at")) + " UTC"
    doc = BaseDocTemplate(
        path,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=20 * mm,
        bottomMargin=20 * mm,
        title=title,
        author=str(report.get("generated_by", "")),
        subject=f"sagalens audit report, data digest {data_digest}",
        creator="sagalens",
    )
    frame = Frame(MARGIN, 20 * mm, BODY_W, PAGE_H - 40 * mm, id="body", showBoundary=0)
    doc.addPageTemplates([PageTemplate("title", [frame]), PageTemplate("body", [frame])])
    story: list[Flowable] = [NextPageTemplate("body")]
    story += _title_page(st, summary, data_digest)
    story += _summary_section(st, summary)
    story += _completeness_section(st, header, summary)
    story += _findings_section(st, summary)
    story += _sagas_section(st, summary)
    story += _appendix(st, header, summary, data_digest)
    doc.build(story, canvasmaker=_numbered_canvas(data_digest, st, title, generated))


def _title_page(st: _Styles, s: PdfSummary, digest: str) -> list[Flowable]:
    report = s.header.get("report", {})
    scope = report.get("scope", {})
    start = _when(scope.get("from")) or "beginning of data"
    period = f"{start} to {_when(scope.get('to')) or 'end of data'} (UTC)"
    facts = [
        ("Period", period),
        ("Saga key", scope.get("saga_key") or "all sagas"),
        (
            "Filters",
            ", ".join(f"{k} = {v}" for k, v in (scope.get("filters") or {}).items()) or "none",
        ),
        ("Generated at", _when(report.get("generated_at")) + " UTC"),
        ("Generated by", f"{report.get('generated_by', '')} on {report.get('host', '')}"),
        ("sagalens version", report.get("sagalens_version", "")),
        (
            "Sagas covered",
            f"{s.saga_count:,}  ({s.step_count:,} steps, {s.finding_count:,} findings)",
        ),
    ]
    rows = [[_p(k, st.small), _p(v, st.body)] for k, v in facts]
    table = LongTable(rows, colWidths=[38 * mm, BODY_W - 38 * mm], hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, RULE),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TEXTCOLOR", (0, 0), (0, -1), MUTED),
                ("TOPPADDING", (0, 0), (-1, -1), 5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 5),
            ]
        )
    )
    verify = LongTable(
        [
            [_p("Verification digest", st.h2)],
            [_p(digest, st.digest)],
            [
                _p(
                    "SHA-256 head of the hash chain over the report's canonical records. The same data "
                    "exported as JSON ends in this hash; the manifest next to this file lists the file "
                    "digest and, when signed, an Ed25519 signature. Check with: sagalens verify <file>",
                    st.muted,
                )
            ],
        ],
        colWidths=[BODY_W],
        hAlign="LEFT",
    )
    verify.setStyle(
        TableStyle(
            [
                ("BOX", (0, 0), (-1, -1), 0.8, NAVY),
                ("BACKGROUND", (0, 0), (-1, -1), ZEBRA),
                ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return [
        Spacer(1, 30 * mm),
        _p("SAGA AUDIT REPORT", st.muted),
        Spacer(1, 3 * mm),
        _p(report.get("title") or "Saga audit report", st.title),
        Spacer(1, 4 * mm),
        _p(period, st.subtitle),
        Spacer(1, 14 * mm),
        table,
        Spacer(1, 12 * mm),
        verify,
        PageBreak(),
    ]


def _summary_section(st: _Styles, s: PdfSummary) -> list[Flowable]:
    out: list[Flowable] = [_p("1. Summary", st.h1)]
    out.append(
        _p(
            f"{s.saga_count:,} sagas were analysed; {s.flagged_count:,} are flagged (stalled, "
            "failed, with a missing or failed compensation, or with findings) and "
            f"{s.finding_count:,} findings were raised.",
            st.body,
        )
    )
    if not s.saga_count:
        return out  # tables of nothing would only repeat that there is nothing
    out.append(_p("Sagas by status", st.h2))
    rows = [[_status(x), f"{n:,}", _pct(n, s.saga_count)] for x, n in s.by_status.most_common()]
    out.append(
        _table(
            st,
            ["Status", "Sagas", "Share"],
            rows,
            [3, 1, 1],
            numeric=(1, 2),
            highlight=lambda r: r[0].replace(" ", "_") in BAD_STATUSES,
        )
    )
    out.append(_p("Sagas by type and status", st.h2))
    types = sorted({t for t, _ in s.by_type_status})
    statuses = [x for x, _ in s.by_status.most_common()]
    rows = [
        [
            t or "(untyped)",
            *(f"{s.by_type_status[(t, x)]:,}" for x in statuses),
            f"{sum(s.by_type_status[(t, x)] for x in statuses):,}",
        ]
        for t in types
    ]
    header = ["Saga type", *(_SHORT_STATUS.get(x, _status(x)) for x in statuses), "Total"]
    out.append(
        _table(
            st,
            header,
            rows,
            [1.5]
            + [max(1.0, 0.11 * max((len(w) for w in h.split()), default=1)) for h in header[1:]],
            numeric=tuple(range(1, len(statuses) + 2)),
        )
    )
    out.append(_p("Compensation coverage", st.h2))
    cov = s.coverage()
    total = cov["failed_sagas"]
    needing = total - cov["nothing_to_undo"]
    rows = [
        ["Failed sagas (all)", f"{total:,}", ""],
        ["Failed before anything needed undoing", f"{cov['nothing_to_undo']:,}", ""],
        ["Needed compensation", f"{needing:,}", "100.0 %" if needing else "–"],
        [
            "Fully compensated",
            f"{cov['fully_compensated']:,}",
            _pct(cov["fully_compensated"], needing),
        ],
        [
            "Compensation missing",
            f"{cov['compensation_missing']:,}",
            _pct(cov["compensation_missing"], needing),
        ],
        [
            "Compensation failed",
            f"{cov['compensation_failed']:,}",
            _pct(cov["compensation_failed"], needing),
        ],
    ]
    out.append(
        _table(
            st,
            ["", "Sagas", "Share of sagas needing compensation"],
            rows,
            [3, 1, 2],
            numeric=(1, 2),
            highlight=lambda r: r[0].startswith("Compensation") and r[1] != "0",
        )
    )
    if s.by_finding:
        out.append(_p("Findings by kind and severity", st.h2))
        rows = [[_status(k), sev, f"{n:,}"] for (k, sev), n in sorted(s.by_finding.items())]
        out.append(
            _table(
                st,
                ["Finding kind", "Severity", "Count"],
                rows,
                [3, 1.5, 1],
                numeric=(2,),
                highlight=lambda r: r[1] == "critical",
            )
        )
    return out


def _completeness_section(st: _Styles, header: dict[str, Any], s: PdfSummary) -> list[Flowable]:
    c = header.get("completeness", {})
    out: list[Flowable] = [CondPageBreak(60 * mm), _p("2. Data completeness", st.h1)]
    sources = ", ".join(c.get("sources") or []) or "not stated"
    first, last = _when(c.get("coverage_from")), _when(c.get("coverage_to"))
    held = (
        f"The source held sagas from {first} to {last} UTC when this report was made."
        if first and last
        else "The period the source covers was not recorded with this report."
    )
    if s.first_ns:
        ran = (
            f"The sagas in this report ran from {_when(iso_ns(s.first_ns))} to "
            f"{_when(iso_ns(max(s.last_ns, s.first_ns)))} UTC."
        )
    else:
        ran = "No saga falls within this report's scope."
    out.append(_p(f"Sources: {sources}. {held} {ran}", st.body))
    counts = c.get("record_counts") or {}
    if counts:
        out.append(Spacer(1, 3 * mm))
        rows = [[k, f"{v:,}"] for k, v in counts.items()]
        out.append(_table(st, ["Record kind", "Records in the source"], rows, [3, 1], numeric=(1,)))
    gaps = list(c.get("gaps") or [])
    if c.get("unresolved_records"):
        gaps.insert(0, f"{c['unresolved_records']:,} records could not be attributed to a saga.")
    out.append(_p("Known gaps", st.h2))
    out.append(_p("\n".join(f"• {g}" for g in gaps) if gaps else "No gaps are known.", st.body))
    return out


def _findings_section(st: _Styles, s: PdfSummary) -> list[Flowable]:
    # a section that is one sentence long shares the page; a table starts its own
    out: list[Flowable] = [
        PageBreak() if s.findings else CondPageBreak(40 * mm),
        _p("3. Findings", st.h1),
    ]
    if not s.findings:
        return [*out, _p("No findings were raised for the sagas in scope.", st.body)]
    rows = [
        [
            f.get("saga_key", ""),
            _status(f.get("kind")),
            f.get("severity", ""),
            f.get("step", ""),
            f.get("explanation", ""),
            "\n".join(f.get("evidence") or []),
            _when(f.get("detected")),
        ]
        for f in s.findings
    ]
    header = ["Saga", "Kind", "Severity", "Step", "Explanation", "Evidence", "Detected (UTC)"]
    out.append(
        _table(
            st,
            header,
            rows,
            [70, 56, 40, 80, 100, 84, 63],
            mono=(5,),
            highlight=lambda r: r[2] == "critical",
        )
    )
    if s.omitted_findings:
        out.append(Spacer(1, 2 * mm))
        out.append(
            _p(
                f"{s.omitted_findings:,} further findings are not printed here; the JSON and "
                "CSV exports of the same data contain every finding.",
                st.muted,
            )
        )
    return out


def _sagas_section(st: _Styles, s: PdfSummary) -> list[Flowable]:
    out: list[Flowable] = [
        PageBreak() if s.flagged else CondPageBreak(40 * mm),
        _p("4. Flagged sagas", st.h1),
    ]
    if not s.flagged:
        out.append(_p("No saga was flagged.", st.body))
    else:
        note = f"{len(s.flagged):,} of {s.flagged_count:,} flagged sagas are shown with their timeline."
        if s.omitted_sagas:
            note += (
                f" {s.omitted_sagas:,} flagged sagas are omitted from this document; the JSON "
                "and CSV exports list them in full."
            )
        out.append(_p(note, st.body))
    for saga in s.flagged:
        out.extend(_saga_block(st, saga))
    out += [PageBreak() if s.register else CondPageBreak(40 * mm), _p("5. Saga register", st.h1)]
    if not s.register:
        return [*out, _p("No saga falls within this report's scope.", st.body)]
    rows = [
        [
            g.get("saga_key", ""),
            g.get("saga_type", ""),
            _status(g.get("status")),
            _when(g.get("started")),
            _duration(int(g.get("started_ns") or 0), int(g.get("ended_ns") or 0)),
            g.get("step_count", ""),
            g.get("finding_count", ""),
            ", ".join(g.get("business_keys") or []),
        ]
        for g in s.register
    ]
    header = [
        "Saga",
        "Type",
        "Status",
        "Started (UTC)",
        "Duration",
        "Steps",
        "Findings",
        "Business keys",
    ]
    out.append(
        _table(
            st,
            header,
            rows,
            [68, 60, 70, 92, 44, 30, 44, 85],
            numeric=(4, 5, 6),
            highlight=lambda r: r[2].replace(" ", "_") in BAD_STATUSES,
        )
    )
    if s.saga_count > len(s.register):
        out.append(Spacer(1, 2 * mm))
        out.append(
            _p(
                f"The first {len(s.register):,} of {s.saga_count:,} sagas are listed; the JSON "
                "and CSV exports list all of them.",
                st.muted,
            )
        )
    return out


def _saga_block(st: _Styles, saga: dict[str, Any]) -> list[Flowable]:
    steps = saga.get("steps") or []
    keys = ", ".join(saga.get("business_keys") or []) or "none"
    title = (
        f"{saga.get('saga_key', '')} · {saga.get('saga_type', '')} · {_status(saga.get('status'))}"
    )
    facts = (
        f"Started {_when(saga.get('started')) or '?'} UTC; "
        f"{'ended ' + _when(saga.get('ended')) + ' UTC' if saga.get('ended') else 'not ended'}. "
        f"Affected resource (business keys): {keys}. "
        f"Traces: {', '.join(saga.get('trace_ids') or []) or 'none'}."
    )
    head: list[Flowable] = [
        _p(title, st.h2),
        _p(saga.get("explanation", ""), st.body),
        _p(facts, st.muted),
        Spacer(1, 2 * mm),
        build_timeline_drawing(saga, BODY_W, st.regular),
        Spacer(1, 2 * mm),
    ]
    # Origin and resource are shown per step only where they say more than service / saga keys.
    own_origin = any(x.get("origin") and x.get("origin") != x.get("service") for x in steps)
    own_resource = any(x.get("resource") and x.get("resource") != keys for x in steps)
    header = ["#", "Step", "Type", "Service", "Start (UTC)", "Duration", "Outcome", "Actor"]
    widths = [15, 80, 60, 50, 112, 47, 71, 58]
    if own_origin:
        header.append("Origin")
        widths.append(56)
    if own_resource:
        header.append("Resource")
        widths.append(70)
    rows = []
    for x in steps:
        outcome = str(x.get("outcome", "")) + (f": {x['error']}" if x.get("error") else "")
        row = [
            x.get("seq", ""),
            x.get("name", "") + (f"\n(undoes {x['compensates']})" if x.get("compensates") else ""),
            x.get("step_type", ""),
            x.get("service", ""),
            _when(x.get("start")),
            # An event is a moment: it has no duration, as on the dashboard.
            "–"
            if x.get("step_type") == "event"
            else _duration(int(x.get("start_ns") or 0), int(x.get("end_ns") or 0)) or "running",
            outcome,
            x.get("actor") or "–",
        ]
        if own_origin:
            row.append(x.get("origin", ""))
        if own_resource:
            row.append(x.get("resource", ""))
        rows.append(row)
    table = _table(
        st, header, rows, widths, numeric=(0, 5), highlight=lambda r: str(r[6]).startswith("failed")
    )
    findings = [
        f"{f.get('severity', '')} · {_status(f.get('kind'))}: {f.get('explanation', '')}"
        for f in saga.get("findings") or []
    ]
    tail: list[Flowable] = [_p("\n".join(f"• {x}" for x in findings), st.small)] if findings else []
    return [
        CondPageBreak(90 * mm),
        KeepTogether(head),
        table,
        Spacer(1, 1.5 * mm),
        *tail,
        Spacer(1, 6 * mm),
    ]


def _appendix(st: _Styles, header: dict[str, Any], s: PdfSummary, digest: str) -> list[Flowable]:
    red = header.get("redaction", {})
    rules = RedactionRules(
        tuple(red.get("attributes") or ()), tuple((red.get("patterns") or {}).items())
    )
    out: list[Flowable] = [
        CondPageBreak(90 * mm),
        _p("6. Privacy and verification", st.h1),
        _p("Redaction rules applied", st.h2),
    ]
    out.append(_p("\n".join(f"• {line}" for line in describe_rules(rules)), st.body))
    counts = (s.trailer.get("totals") or {}).get("redactions") or {}
    if counts:
        out.append(Spacer(1, 2 * mm))
        out.append(
            _table(
                st, ["Rule", "Values masked"], [[k, f"{v:,}"] for k, v in counts.items()], [3, 1]
            )
        )
    out.append(_p("How to verify this report", st.h2))
    out.append(
        _p(
            "Each record of the JSON and CSV exports carries the SHA-256 of its canonical content and the "
            "hash of the record before it, so changing, removing or reordering any record breaks the chain. "
            "The manifest lists the SHA-256 digest of every file and the chain heads, and may be signed with "
            "Ed25519. This document states the chain head of the data it summarises:",
            st.body,
        )
    )
    out.append(Spacer(1, 2 * mm))
    out.append(_p(digest, st.digest))
    out.append(Spacer(1, 2 * mm))
    out.append(
        _p(
            f"Report generated {iso_ns(int(header.get('report', {}).get('generated_ns') or 0))}.",
            st.muted,
        )
    )
    return out
