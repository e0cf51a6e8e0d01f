"""Render an intake run as one self-contained HTML page for the plant manager.

The report is read offline, archived and printed, so it carries no scripts, links or
external resources: every chart is inline SVG drawn here by hand.  Cell ids, reasons and
designs come from untrusted tags, so all text passes through ``html.escape``; malformed
numbers (None, NaN, inf, strings) are skipped rather than allowed to break the page.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["render_report"]

# (grade, meaning, colour) in display order.
_GRADES: tuple[tuple[str, str, str], ...] = (
    ("A", "remanufacture", "#2e7d32"),
    ("B", "EV reuse", "#7cb342"),
    ("C", "stationary storage", "#f9a825"),
    ("D", "recycle", "#ef6c00"),
    ("TEST-REQUIRED", "needs testing", "#1e88e5"),
    ("QUARANTINE", "quarantined", "#8e24aa"),
    ("UNVERIFIED", "failed verification", "#c62828"),
    ("ERROR", "processing error", "#424242"),
)
_OTHER_COLOUR = "#9e9e9e"
_BIN = 2.5  # histogram bin width in SoH percentage points
_MAX_BINS = 200
_MAX_FRACTION = 1e4  # SoH beyond 1,000,000 % is garbage, not data
_MISSING = "(missing)"
_NO_DESIGN = "(unknown design)"

_CSS = """
body{font:14px/1.4 sans-serif;margin:1.5em;color:#222}
h1{margin:0 0 .3em}h2{margin:1.4em 0 .4em;font-size:1.15em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #bbb;padding:2px 8px;
text-align:left}td.n{text-align:right}dl{display:grid;grid-template-columns:auto 1fr;
gap:0 1em;margin:0}dt{font-weight:bold}dd{margin:0}code{word-break:break-all}
figure{display:inline-block;margin:0 1em 1em 0}figcaption{font-size:.9em;color:#555}
svg{max-width:100%;height:auto}svg text{font:11px sans-serif;fill:#333}
.ok{fill:#4a78b0;fill-opacity:.45}.fl{fill:#d62728;stroke:#7f0000;stroke-width:.5}
section{break-inside:avoid}@media print{body{margin:0}}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> float | None:
    """Return a finite float, or None for anything not a usable number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _pct(value: Any) -> float | None:
    """A usable fraction as percent; absurd magnitudes are dropped so plot maths stays finite."""
    frac = _num(value)
    return frac * 100.0 if frac is not None and abs(frac) <= _MAX_FRACTION else None


def _flagged(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) and bool(value)


def _grade(cell: Mapping[str, Any]) -> str:
    grade = cell.get("grade")
    return grade if isinstance(grade, str) and grade else _MISSING


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick positions covering [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{_esc(label)}">' + "".join(body) + "</svg>"
    )


def _header(cells: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    policy = summary.get("policy")
    policy = policy if isinstance(policy, Mapping) else {}
    rows = [
        ("Run finished", summary.get("finished", "—")),
        ("Cells", len(cells)),
        ("Policy", f"{policy.get('id', '—')} v{policy.get('version', '—')}"),
        ("Policy sha256", policy.get("sha256", "—")),
        ("Alerts", summary.get("alerts", "—")),
        ("Failed verification", summary.get("unverified", "—")),
        ("Errors", summary.get("errors", "—")),
        ("Tests unlike the SoH model's reference cells", summary.get("unlike_reference", "—")),
    ]
    items = "".join(
        f"<dt>{_esc(k)}</dt><dd><code>{_esc(v)}</code></dd>"
        if k == "Policy sha256"
        else f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>"
        for k, v in rows
    )
    return f'<h1>Intake report</h1><dl class="header">{items}</dl>'


def _grade_section(cells: Sequence[Mapping[str, Any]]) -> str:
    counts = Counter(_grade(c) for c in cells)
    known = {g: (meaning, colour) for g, meaning, colour in _GRADES}
    order = [g for g, _, _ in _GRADES if g in counts]
    order += sorted(g for g in counts if g not in known)
    total = sum(counts.values())
    peak = max(counts.values())
    row_h, label_w, bar_w = 24, 180, 300
    body: list[str] = []
    rows: list[str] = []
    for i, grade in enumerate(order):
        meaning, colour = known.get(grade, ("unrecognised grade", _OTHER_COLOUR))
        n = counts[grade]
        y = i * row_h + 4
        width = bar_w * n / peak
        body.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_esc(grade)}</text>'
            f'<rect class="bar" data-grade="{_esc(grade)}" x="{label_w}" y="{y}" '
            f'width="{_fmt(width)}" height="{row_h - 6}" fill="{colour}">'
            f"<title>{_esc(grade)}: {n}</title></rect>"
            f'<text x="{_fmt(label_w + width + 4)}" y="{y + 15}">{n}</text>'
        )
        rows.append(
            f'<tr data-grade="{_esc(grade)}"><td>{_esc(grade)}</td><td>{_esc(meaning)}</td>'
            f'<td class="n">{n}</td><td class="n">{100 * n / total:.1f}%</td></tr>'
        )
    chart = _svg(label_w + bar_w + 50, len(order) * row_h + 8, "Grade distribution", body)
    table = (
        '<table class="grades"><thead><tr><th>Grade</th><th>Meaning</th><th>Cells</th>'
        f"<th>Share</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return f'<section id="grades"><h2>Grade distribution</h2>{chart}{table}</section>'


def _histogram(design: str, values: list[float]) -> str:
    pct = np.asarray(values, dtype=float)
    lo = math.floor(pct.min() / _BIN) * _BIN
    nbins = math.floor((pct.max() - lo) / _BIN) + 1  # bins are [a, a + 2.5)
    width_pp = _BIN if nbins <= _MAX_BINS else (pct.max() - lo) / _MAX_BINS
    nbins = min(nbins, _MAX_BINS)
    edges = lo + width_pp * np.arange(nbins + 1)
    edges[-1] = max(edges[-1], pct.max())  # float rounding must not drop the top value
    counts, _ = np.histogram(pct, bins=edges)
    w, h, left, right, top, bottom = 340, 190, 40, 10, 10, 42
    pw, ph = w - left - right, h - top - bottom
    peak = max(int(counts.max()), 1)
    bw = pw / nbins
    body = [
        f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
    ]
    for i, n in enumerate(counts.tolist()):
        bh = ph * n / peak
        body.append(
            f'<rect class="hbar" x="{_fmt(left + i * bw)}" y="{_fmt(top + ph - bh)}" '
            f'width="{_fmt(max(bw - 1, 0.5))}" height="{_fmt(bh)}" fill="#4a78b0">'
            f"<title>{edges[i]:.1f} to {edges[i + 1]:.1f}%: {n}</title></rect>"
        )
    step = max(1, math.ceil(nbins / 6))
    for i in range(0, nbins + 1, step):
        x = left + i * bw
        body.append(
            f'<text x="{_fmt(x)}" y="{top + ph + 14}" text-anchor="middle">{edges[i]:g}</text>'
        )
    for n in sorted({0, peak}):
        y = top + ph - ph * n / peak
        body.append(f'<text x="{left - 4}" y="{_fmt(y + 4)}" text-anchor="end">{n}</text>')
    body.append(
        f'<text x="{left + pw / 2}" y="{h - 4}" text-anchor="middle">SoH (%)</text>'
        f'<text x="12" y="{top + ph / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2})">cells</text>'
    )
    svg = _svg(w, h, f"SoH histogram for {design}", body)
    caption = f"{_esc(design)} — {len(values)} cell{'s' if len(values) != 1 else ''}"
    return (
        f'<figure class="hist" data-design="{_esc(design)}">{svg}'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _histogram_section(cells: Sequence[Mapping[str, Any]]) -> str:
    by_design: dict[str, list[float]] = {}
    for cell in cells:
        soh = _pct(cell.get("soh"))
        if soh is not None:
            design = cell.get("design")
            key = str(design) if design not in (None, "") else _NO_DESIGN
            by_design.setdefault(key, []).append(soh)
    order = sorted(by_design, key=lambda d: (d == _NO_DESIGN, d))  # unknown design last
    figures = "".join(_histogram(d, by_design[d]) for d in order)
    content = figures or "<p>No cells with a measured SoH.</p>"
    return f'<section id="soh"><h2>SoH by design</h2>{content}</section>'


def _scatter_section(cells: Sequence[Mapping[str, Any]]) -> str:
    points: list[tuple[float, float, bool, str]] = []
    for cell in cells:
        soh, claimed = _pct(cell.get("soh")), _pct(cell.get("claimed_soh"))
        if soh is not None and claimed is not None:
            flag = _flagged(cell.get("claim_flagged"))
            points.append((soh, claimed, flag, str(cell.get("cell_id", "?"))))
    title = "<h2>Claimed vs measured SoH</h2>"
    if not points:
        return f'<section id="claims">{title}<p>No cells with both values.</p></section>'
    coords = [v for p in points for v in p[:2]]
    lo, hi = min(coords), max(coords)
    pad = max((hi - lo) * 0.05, 1.0)
    lo, hi = lo - pad, hi + pad
    size, left, top, bottom = 420, 50, 10, 40
    w, h = left + size + 10, top + size + bottom

    def sx(v: float) -> float:
        return left + size * (v - lo) / (hi - lo)

    def sy(v: float) -> float:
        return top + size * (hi - v) / (hi - lo)

    body = [
        f'<rect x="{left}" y="{top}" width="{size}" height="{size}" fill="none" stroke="#333"/>',
        f'<line class="diag" x1="{_fmt(sx(lo))}" y1="{_fmt(sy(lo))}" x2="{_fmt(sx(hi))}" '
        f'y2="{_fmt(sy(hi))}" stroke="#888" stroke-dasharray="4 3"/>',
    ]
    for t in _ticks(lo, hi):
        body.append(
            f'<text x="{_fmt(sx(t))}" y="{top + size + 14}" text-anchor="middle">{t:g}</text>'
            f'<text x="{left - 4}" y="{_fmt(sy(t) + 4)}" text-anchor="end">{t:g}</text>'
        )
    body.append(
        f'<text x="{left + size / 2}" y="{h - 6}" text-anchor="middle">measured SoH (%)</text>'
        f'<text x="12" y="{top + size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + size / 2})">claimed SoH (%)</text>'
    )
    # Unflagged first so the flagged markers are drawn on top.
    for x, y, flag, cid in sorted(points, key=lambda p: p[2]):
        cls, r = ("fl", 4) if flag else ("ok", 2)
        body.append(
            f'<circle class="{cls}" cx="{_fmt(sx(x))}" cy="{_fmt(sy(y))}" r="{r}">'
            f"<title>{_esc(cid)}</title></circle>"
        )
    n_flag = sum(p[2] for p in points)
    legend = (
        f'<g class="legend"><circle cx="{left + 12}" cy="{top + 12}" r="4" fill="#d62728"/>'
        f'<text x="{left + 20}" y="{top + 16}">claim flagged ({n_flag})</text>'
        f'<circle cx="{left + 12}" cy="{top + 28}" r="2" fill="#4a78b0"/>'
        f'<text x="{left + 20}" y="{top + 32}">consistent ({len(points) - n_flag})</text>'
        f'<text x="{left + 20}" y="{top + 48}">dashed: claimed = measured</text></g>'
    )
    body.append(legend)
    svg = _svg(w, h, "Claimed versus measured SoH", body)
    return f'<section id="claims">{title}{svg}</section>'


def _reasons(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "; ".join(str(r) for r in value)
    return ""


def _cell_table(cells: Sequence[Mapping[str, Any]], grade: str, heading: str) -> str:
    chosen = [c for c in cells if _grade(c) == grade]
    slug = grade.lower()
    if not chosen:
        return f"<h2>{_esc(heading)}</h2><p>No {_esc(heading.lower())}.</p>"
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{_esc(v)}</td>"
            for v in (
                c.get("cell_id", "?"),
                c.get("design") or "—",
                _reasons(c.get("reasons")),
                c.get("image", ""),
            )
        )
        + "</tr>"
        for c in chosen
    )
    return (
        f"<h2>{_esc(heading)} ({len(chosen)})</h2>"
        f'<table class="cells" id="{slug}"><thead><tr><th>Cell</th><th>Design</th>'
        f"<th>Reasons</th><th>Image</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def render_report(cells: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """Return the intake report for ``cells`` and the run ``summary`` as an HTML page."""
    parts = [_header(cells, summary)]
    if not cells:
        parts.append('<p class="empty">No cells in this run.</p>')
    else:
        parts += [
            _grade_section(cells),
            _histogram_section(cells),
            _scatter_section(cells),
            '<section id="held">'
            + _cell_table(cells, "QUARANTINE", "Quarantined cells")
            + _cell_table(cells, "UNVERIFIED", "Unverified cells")
            + _cell_table(cells, "TEST-REQUIRED", "Cells to test again")
            + "</section>",
        ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Intake report</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
