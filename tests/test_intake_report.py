"""Behaviour of the self-contained HTML intake report."""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from passport.intake.report import render_report

SUMMARY: dict[str, Any] = {
    "finished": "2025-03-04T05:06:07Z",
    "policy": {"id": "intake-eu", "version": 7, "sha256": "ab" * 32},
    "alerts": 3,
    "unverified": 1,
    "errors": 2,
    "unlike_reference": 4,
}
VOID = {"meta", "br", "hr", "img", "input", "link"}


def _cell(cell_id: str, **over: Any) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_id": cell_id,
        "image": f"dumps/{cell_id}.bin",
        "design": "NMC-21700",
        "verified": True,
        "soh": 0.9,
        "soh_sigma": 0.01,
        "claimed_soh": 0.91,
        "claim_flagged": False,
        "claim_z": 0.5,
        "posterior_soh": 0.9,
        "resistance_growth": 1.1,
        "grade": "B",
        "outcome": "graded",
        "reasons": [],
        "rules": [],
        "error": "",
    }
    cell.update(over)
    return cell


class _Tree(HTMLParser):
    """Records every start tag with its attributes and checks nesting balance."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def _parse(page: str) -> _Tree:
    tree = _Tree()
    tree.feed(page)
    tree.close()
    assert tree.errors == []
    assert tree.stack == []
    return tree


def _with(tree: _Tree, tag: str, **attrs: str) -> list[dict[str, str | None]]:
    return [a for t, a in tree.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def _section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match is not None
    return match.group(1)


@pytest.fixture
def mixed() -> list[dict[str, Any]]:
    return [
        _cell("c1", grade="A", soh=0.97, claimed_soh=0.97),
        _cell("c2", grade="D", soh=0.62, claimed_soh=0.95, claim_flagged=True),
        _cell("c3", grade="B", design="LFP-prism", soh=0.85),
        _cell("c4", grade="B", design="LFP-prism", soh=0.86, claimed_soh=0.99, claim_flagged=True),
        _cell("q1", grade="QUARANTINE", reasons=["bad signature", "tag cloned"], soh=None),
        _cell("u1", grade="UNVERIFIED", verified=False, reasons=["no chain"], design=None),
        _cell("e1", grade="ERROR", error="read failed", soh=None, claimed_soh=None),
        _cell("t1", grade="TEST-REQUIRED", soh=0.75, claimed_soh=None),
    ]


def test_page_is_self_contained_and_balanced(mixed: list[dict[str, Any]]) -> None:
    page = render_report(mixed, SUMMARY)
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("http://", "https://", "src=", "<link", "<script", "url("):
        assert needle not in page
    tree = _parse(page)
    assert len(_with(tree, "svg")) >= 3
    assert len(_with(tree, "style")) == 1


def test_header_shows_run_policy_and_counts(mixed: list[dict[str, Any]]) -> None:
    page = render_report(mixed, SUMMARY)
    assert "<h1>Intake report</h1>" in page
    header = page.split("</dl>", 1)[0]
    for text in ("2025-03-04T05:06:07Z", "intake-eu v7", "ab" * 32):
        assert text in header
    for label, value in (
        ("Cells", 8),
        ("Alerts", 3),
        ("Failed verification", 1),
        ("Errors", 2),
        ("Tests unlike the SoH model&#x27;s reference cells", 4),
    ):
        assert f"<dt>{label}</dt><dd>{value}</dd>" in header


def test_grade_counts_and_order(mixed: list[dict[str, Any]]) -> None:
    page = render_report(mixed, SUMMARY)
    tree = _parse(page)
    expected = ["A", "B", "D", "TEST-REQUIRED", "QUARANTINE", "UNVERIFIED", "ERROR"]
    bars = [a["data-grade"] for a in _with(tree, "rect") if a.get("class") == "bar"]
    assert bars == expected
    rows = re.findall(
        r'<tr data-grade="([^"]+)"><td>[^<]*</td><td>[^<]*</td><td class="n">(\d+)</td>', page
    )
    counts = {"A": 1, "B": 2, "D": 1, "TEST-REQUIRED": 1, "QUARANTINE": 1}
    counts |= {"UNVERIFIED": 1, "ERROR": 1}
    assert rows == [(g, str(counts[g])) for g in expected]
    assert 'data-grade="C"' not in page


def test_flagged_points_are_red_and_larger(mixed: list[dict[str, Any]]) -> None:
    tree = _parse(render_report(mixed, SUMMARY))
    flagged = _with(tree, "circle", **{"class": "fl"})
    normal = _with(tree, "circle", **{"class": "ok"})
    # Both numbers present: c1, c2, c3, c4, u1 (q1, e1 and t1 lack one of them).
    assert len(flagged) == 2
    assert len(normal) == 3
    assert {a["r"] for a in flagged} == {"4"}
    assert all(float(a["r"] or 0) < 4 for a in normal)
    assert ".fl{fill:#d62728" in render_report(mixed, SUMMARY)


def test_scatter_coordinates_are_rounded_and_titled() -> None:
    cells = [_cell(f"c{i}", soh=0.6 + i / 30000, claimed_soh=0.7) for i in range(10_000)]
    page = render_report(cells, SUMMARY)
    scatter = _section(page, "claims")
    circles = re.findall(r'<circle class="ok" cx="([^"]+)" cy="([^"]+)"', scatter)
    assert len(circles) == 10_000
    assert all(re.fullmatch(r"-?\d+\.\d", v) for pair in circles for v in pair)
    assert "<title>c9999</title>" in scatter
    assert 'class="diag"' in scatter
    assert len(page) < 2_000_000


def test_hostile_text_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    cells = [
        _cell(evil, grade="QUARANTINE", reasons=[evil], design=evil, image=evil),
        _cell("ok", grade=evil, claim_flagged=True),
    ]
    summary = {**SUMMARY, "finished": evil, "policy": {"id": evil, "version": 1, "sha256": evil}}
    page = render_report(cells, summary)
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    _parse(page)


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf, "0.9", True, 1e300], ids=repr)
def test_bad_numbers_are_left_out_of_plots(bad: Any) -> None:
    cells = [
        _cell("good", soh=0.9, claimed_soh=0.9),
        _cell("bad-soh", soh=bad, claimed_soh=0.9, claim_flagged=True),
        _cell("bad-claim", soh=0.8, claimed_soh=bad, claim_flagged=True),
    ]
    page = render_report(cells, SUMMARY)
    tree = _parse(page)
    for _, attrs in tree.tags:
        for key in ("x", "y", "cx", "cy", "r", "width", "height", "x1", "y1", "x2", "y2"):
            if key in attrs:
                assert math.isfinite(float(attrs[key] or "nan"))
    titles = re.findall(r"<circle[^>]*><title>([^<]*)</title>", page)
    assert titles == ["good"]
    assert _with(tree, "circle", **{"class": "fl"}) == []
    # The histogram counts only the usable SoH values (good and bad-claim).
    assert "NMC-21700 — 2 cells" in page


def test_missing_keys_do_not_crash() -> None:
    page = render_report([{}, {"cell_id": "x"}, {"grade": "A", "soh": 0.9}], {})
    _parse(page)
    assert "<dt>Cells</dt><dd>3</dd>" in page
    assert "(unknown design) — 1 cell<" in page
    assert re.findall(r"<circle[^>]*><title>", page) == []


def test_empty_cells_render_a_valid_page() -> None:
    page = render_report([], SUMMARY)
    tree = _parse(page)
    assert "No cells in this run." in page
    assert "<dt>Cells</dt><dd>0</dd>" in page
    assert _with(tree, "svg") == []


def test_quarantine_unverified_and_test_again_tables(mixed: list[dict[str, Any]]) -> None:
    page = render_report(mixed, SUMMARY)
    quarantine = re.search(r'<table class="cells" id="quarantine">(.*?)</table>', page, re.S)
    assert quarantine is not None
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", page)
    q_rows = re.findall(r"<tr><td>(.*?)</td><td>.*?</td><td>(.*?)</td>", quarantine.group(1))
    assert q_rows == [("q1", "bad signature; tag cloned")]
    assert ("u1", "—", "no chain", "dumps/u1.bin") in rows
    again = re.search(r'<table class="cells" id="test-required">(.*?)</table>', page, re.S)
    assert again is not None
    assert re.findall(r"<tr><td>(.*?)</td>", again.group(1)) == ["t1"]
    assert len(rows) == 3
    assert page.index("Quarantined cells") < page.index("Unverified cells")
    assert page.index("Unverified cells") < page.index("Cells to test again (1)")


def test_no_quarantined_cells_says_so() -> None:
    page = render_report([_cell("a", grade="A")], SUMMARY)
    assert "No quarantined cells." in page
    assert "No unverified cells." in page
    assert "No cells to test again." in page
    assert '<table class="cells"' not in page


def test_histogram_per_design(mixed: list[dict[str, Any]]) -> None:
    mixed.append(_cell("x1", design="NO-SOH", soh=None))
    tree = _parse(render_report(mixed, SUMMARY))
    designs = [a["data-design"] for a in _with(tree, "figure", **{"class": "hist"})]
    assert designs == ["LFP-prism", "NMC-21700", "(unknown design)"]
    page = render_report(mixed, SUMMARY)
    assert "NMC-21700 — 3 cells" in page  # c1, c2, t1 have a numeric soh
    assert "LFP-prism — 2 cells" in page


def test_histogram_bins_are_2_5_points_and_cover_range() -> None:
    cells = [_cell(f"c{i}", soh=s) for i, s in enumerate([0.801, 0.826, 0.85, 0.8749])]
    section = _section(render_report(cells, SUMMARY), "soh")
    bins = re.findall(r"<title>([\d.]+) to ([\d.]+)%: (\d+)</title>", section)
    assert bins == [("80.0", "82.5", "1"), ("82.5", "85.0", "1"), ("85.0", "87.5", "2")]
    assert "SoH (%)" in section


def test_value_on_a_bin_edge_opens_the_next_bin() -> None:
    cells = [_cell("lo", soh=0.85), _cell("hi", soh=0.875)]
    section = _section(render_report(cells, SUMMARY), "soh")
    bins = re.findall(r"<title>([\d.]+) to ([\d.]+)%: (\d+)</title>", section)
    assert bins == [("85.0", "87.5", "1"), ("87.5", "90.0", "1")]


def test_absurd_range_caps_bins_but_counts_every_value() -> None:
    values = [-3.3, 0.123456789, 0.9, 7.77, 33.3333333]
    cells = [_cell(f"c{i}", soh=s) for i, s in enumerate(values)]
    section = _section(render_report(cells, SUMMARY), "soh")
    counts = [int(n) for n in re.findall(r"%: (\d+)</title>", section)]
    assert len(counts) == 200
    assert sum(counts) == len(values)
