"""The recycler intake as a library: `run_intake` on a small batch (outputs, signed intake
entries, untouched inputs), per-cell trouble, resuming, clones and forks (SQLite and
PostgreSQL), and the auditor's replay."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import intake_kit
import numpy as np
import pytest
from intake_kit import (
    CELLS,
    DAY,
    LFP,
    Kit,
    intake_entries,
    job,
    noisy_row,
    results_by_name,
    tree_hashes,
)
from registry_kit import stored, tampered_image

from passport.chain import check_image
from passport.errors import InputError
from passport.grading import Evidence, GradingPolicy, grade
from passport.image import Image
from passport.intake import IntakeSummary, replay, run_intake
from passport.intake import run as intake_run
from passport.intake.measure import Measurement, measure
from passport.intake.outputs import RESULT_COLUMNS, RESULTS_FORMAT
from passport.records import Entry, Kind, SignedRecord, SohMethod, Values
from passport.registry import Registry, source_from_bytes
from passport.soh import combine, estimate, load_model
from passport.soh.io import read_all
from passport.soh.model import FAR_SIGMA
from passport.trust import keys
from passport.writer import read_image

POLICY_TEXT = resources.files("passport.grading").joinpath("default.toml").read_text("utf-8")
REQUIRED_COLUMNS = ("cell_id", "image", "verified", "soh", "soh_sigma", "claimed_soh", "grade",
                    "reasons")  # fmt: skip


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return intake_kit.build(tmp_path_factory.mktemp("intake-kit"))


def sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / 'registry.db'}"


def read_results(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return doc


def csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------------------------
# A clean batch, end to end


@dataclass(frozen=True)
class Run:
    out: Path
    db: str
    summary: IntakeSummary
    before: dict[str, str]  # input file hashes before the run
    after: dict[str, str]


@pytest.fixture(scope="module")
def clean(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("clean")
    inputs = (kit.images, kit.tests_csv, kit.model_path, kit.trust_dir)
    before = tree_hashes(*inputs)
    summary = run_intake(job(kit, folder / "out", [kit.images], db=sqlite(folder)))
    return Run(folder / "out", sqlite(folder), summary, before, tree_hashes(*inputs))


def test_clean_batch_summary(clean: Run) -> None:
    s = clean.summary
    assert s.exit_code == 0
    assert s.cells == len(CELLS) == sum(s.by_grade.values())
    assert (s.unverified, s.errors, s.alerts, s.resumed, s.tests_unmatched) == (0, 0, 0, 0, 0)
    assert s.written == len(CELLS)
    assert s.not_written == 0
    assert s.policy == GradingPolicy.default().ref()
    assert set(s.outputs) == {"results_csv", "results_json", "report_html", "policy"}
    # the exact policy bytes the run graded under, for a replay after the default changes
    saved = Path(s.outputs["policy"]).read_bytes()
    assert saved == resources.files("passport.grading").joinpath("default.toml").read_bytes()
    assert GradingPolicy.from_bytes(saved, source="saved").ref() == s.policy


def test_clean_batch_inputs_are_byte_identical(clean: Run) -> None:
    assert len(clean.before) >= 2 * len(CELLS)
    assert clean.after == clean.before


def test_clean_batch_results_csv(kit: Kit, clean: Run) -> None:
    text = (clean.out / "results.csv").read_text(encoding="utf-8")
    header = text.splitlines()[0].split(",")
    assert set(REQUIRED_COLUMNS) <= set(header)
    assert tuple(header) == RESULT_COLUMNS
    rows = csv_rows(clean.out)
    assert sorted(Path(r["image"]).name for r in rows) == sorted(p.name for p in kit.image_paths())
    for row in rows:
        assert row["verified"] == "1"
        assert 0.5 < float(row["soh"]) < 1.05
        assert float(row["soh_sigma"]) > 0
        assert row["grade"] in {"A", "B", "C", "D", "QUARANTINE"}
        assert row["reasons"]
        assert row["rules"]
        assert len(row["intake_entry"]) == 64


def test_clean_batch_results_json_and_report(kit: Kit, clean: Run) -> None:
    doc = read_results(clean.out)
    assert doc["format"] == RESULTS_FORMAT == "battery-passport/intake-results"
    assert doc["version"] == 1
    assert doc["summary"]["by_grade"] == clean.summary.by_grade
    cells = results_by_name(doc["cells"])
    assert len(cells) == len(doc["cells"]) == len(CELLS)
    first, worst_nmc, hot = (cells[f"{kit.stems[i]}.t5t"] for i in (0, 9, 11))
    assert first["grade"] == "A"
    assert first["group"] == f"{intake_kit.NMC}/A"
    assert first["claimed_soh"] == pytest.approx(CELLS[0].soh)
    assert first["evidence"]["design_cells"] == 10
    assert worst_nmc["grade"] == "C"
    assert worst_nmc["rules"] == ["grade.c-stationary", "regroup.same-model"]
    assert hot["grade"] == "QUARANTINE"
    assert hot["rules"] == ["gate.safety-event"]
    assert "thermal_event" in hot["reasons"][0]
    assert hot["evidence"]["event_records"]
    report = (clean.out / "report.html").read_text(encoding="utf-8")
    assert report.lstrip().lower().startswith("<!doctype html")
    for cell in doc["cells"]:
        assert cell["cell_id"] in report


def test_clean_batch_output_images_carry_one_intake_entry(kit: Kit, clean: Run) -> None:
    signer = kit.signer()
    bundle = kit.trust
    registry = Registry(clean.db, trust=bundle)
    held = stored(registry)
    cells = results_by_name(read_results(clean.out)["cells"])
    for source in kit.image_paths():
        copy = clean.out / "images" / source.name
        image = read_image(copy)
        report = check_image(image, bundle)
        assert report.valid, report.findings
        newest = image.entries[-1]
        assert newest.kind is Kind.INTAKE
        assert newest.x5t == signer.x5t
        assert intake_entries(image, signer.x5t) == [newest.digest.hex()]
        assert newest.digest.hex() == cells[source.name]["intake_entry"]
        assert cells[source.name]["output_image"] == str(copy)
        assert newest.digest in held  # registered
        original = read_image(source)
        assert image.records[:-1] == original.records  # the input's history, unchanged
        assert isinstance(newest.body, Entry)
        values = newest.body.values
        result = cells[source.name]
        if "without the measured SoH" in result["note"]:
            assert values.soh_capacity_cpct is None
        else:
            assert values.soh_capacity_cpct == round(result["soh"] * 10_000)
            assert values.soh_method is SohMethod.PULSE_TEST
        assert values.resistance_uohm == round(result["resistance_mohm"] * 1e3)


def test_clean_batch_replays(clean: Run) -> None:
    report = replay(clean.out / "results.json", GradingPolicy.default())
    assert report.ok
    assert (report.cells, report.replayed, report.skipped) == (len(CELLS), len(CELLS), 0)


# --------------------------------------------------------------------------------------------
# Per-cell trouble: the batch goes on


def _drop_row(text: str, stem: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    kept = [r for r in rows if r[rows[0].index("cell_id")] != stem]
    assert len(kept) == len(rows) - 1
    return _csv(kept)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


@pytest.fixture(scope="module")
def trouble(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, dict[str, str]]:
    """One batch with a tampered, a truncated, an empty and a missing image, a cell without a
    test row, one whose test is filed under another design, one whose test has 5 mV of noise
    on every voltage (a poor contact), and a test row for no cell."""
    folder = tmp_path_factory.mktemp("trouble")
    batch = kit.copy_batch(folder / "batch")
    s = kit.stems
    names = {
        "tampered-signature": s[1],
        "truncated": s[2],
        "no-test-row": s[3],
        "design-mismatch": s[4],
        "unlike-reference": s[5],
        "empty-file": "empty",
        "missing-file": "gone",
    }
    target = batch / f"{s[1]}.t5t"
    target.write_bytes(tampered_image(read_image(target), -1).to_bytes())
    data = (batch / f"{s[2]}.t5t").read_bytes()
    (batch / f"{s[2]}.t5t").write_bytes(data[: len(data) // 3])
    (batch / "empty.t5t").write_bytes(b"")
    rows = list(csv.reader(io.StringIO(kit.tests_csv.read_text(encoding="utf-8"))))
    at = rows[0].index("cell_id")
    design = rows[0].index("design")
    stranger = [*rows[1]]
    stranger[at] = "not-in-this-batch"
    noise = np.random.default_rng(3)
    for k, row in enumerate(rows):
        if row[at] == s[4]:
            row[design] = LFP
        if row[at] == s[5]:
            rows[k] = noisy_row(rows[0], row, 0.005, noise)
    rows.append(stranger)
    tests = folder / "tests.csv"
    tests.write_text(_drop_row(_csv(rows), s[3]), encoding="utf-8")
    inputs = [batch, batch / "gone.t5t"]
    before = tree_hashes(batch)
    summary = run_intake(job(kit, folder / "out", inputs, db=sqlite(folder), tests=tests))
    return Run(folder / "out", sqlite(folder), summary, before, tree_hashes(batch)), names


TROUBLE = [
    # (case, grade, rules, text in reasons or failures, an intake entry written)
    ("tampered-signature", "UNVERIFIED", ["gate.unverified"], "signature", False),
    ("truncated", "UNVERIFIED", ["gate.unverified"], "image.truncated", False),
    ("empty-file", "UNVERIFIED", ["gate.unverified"], "image.truncated", False),
    ("missing-file", "ERROR", [], "no such file", False),
    ("no-test-row", "TEST-REQUIRED", ["gate.no-test"], "no pulse test row", True),
    ("design-mismatch", "TEST-REQUIRED", ["gate.no-test"], "design-mismatch", True),
    # measured (the SoH and its sigma are reported), but the entry leaves the SoH out
    ("unlike-reference", "TEST-REQUIRED", ["gate.unlike-reference"], "test it again", True),
]


@pytest.mark.parametrize(
    ("case", "grade", "rules", "text", "written"),
    [pytest.param(*t, id=t[0]) for t in TROUBLE],
)
def test_trouble_is_reported_per_cell(
    trouble: tuple[Run, dict[str, str]],
    case: str,
    grade: str,
    rules: list[str],
    text: str,
    written: bool,
) -> None:
    run, names = trouble
    cell = results_by_name(read_results(run.out)["cells"])[f"{names[case]}.t5t"]
    assert cell["grade"] == grade
    assert cell["rules"] == rules
    said = " ".join(cell["reasons"] + cell["verify_failures"] + [cell["note"], cell["error"]])
    assert text in said.lower()
    assert bool(cell["intake_entry"]) is written
    assert (run.out / "images" / f"{names[case]}.t5t").exists() is written
    if grade == "UNVERIFIED":
        assert cell["verified"] is False
        assert cell["verify_failures"]
        assert cell["evidence"]["verify_rules"]
        assert "does not verify" in cell["note"]
    if grade == "ERROR":
        assert "cannot be read" in cell["note"]


def test_trouble_rest_of_batch_goes_on(kit: Kit, trouble: tuple[Run, dict[str, str]]) -> None:
    run, names = trouble
    s = run.summary
    assert s.exit_code == 1
    assert s.cells == len(CELLS) + 2  # + empty, + missing
    assert s.unverified == 3
    assert s.errors == 1
    assert s.tests_unmatched == 1
    assert s.written == len(CELLS) - 2
    assert s.not_written == 4
    assert s.unlike_reference == 1
    assert run.after == run.before
    cells = results_by_name(read_results(run.out)["cells"])
    troubled = {f"{n}.t5t" for n in names.values()}
    graded = [c for name, c in cells.items() if name not in troubled]
    assert len(graded) == len(CELLS) - 5
    assert all(c["grade"] in {"A", "B", "C", "QUARANTINE"} and c["intake_entry"] for c in graded)
    tampered = cells[f"{names['tampered-signature']}.t5t"]
    assert tampered["soh"] is not None  # measured, but its passport says nothing reliable
    assert tampered["claimed_soh"] is None
    report = replay(run.out / "results.json", GradingPolicy.default())
    assert report.ok
    assert report.skipped == 1
    assert report.replayed == s.cells - 1


def test_a_test_unlike_the_reference_cells_is_measured_but_not_signed(
    kit: Kit, trouble: tuple[Run, dict[str, str]]
) -> None:
    """The cell's one test row is far from every reference cell: its SoH and (wide) sigma are
    reported, the grade asks for another test, and the signed intake entry carries the
    resistance but not that SoH. The cells tested cleanly are not affected."""
    run, names = trouble
    model = load_model(kit.model_path)
    cells = results_by_name(read_results(run.out)["cells"])
    cell = cells[f"{names['unlike-reference']}.t5t"]
    assert cell["evidence"]["unlike_reference"] is True
    assert (cell["test_rows"], cell["test_far_rows"]) == (1, 1)
    assert cell["soh"] is not None
    assert cell["soh_sigma"] > FAR_SIGMA * model.widest_sigma(cell["design"])
    assert "unlike the SoH model's reference cells" in cell["note"]
    assert cell["reasons"][0].startswith("the pulse test is unlike every reference cell")
    newest = read_image(run.out / "images" / f"{names['unlike-reference']}.t5t").entries[-1]
    assert newest.kind is Kind.INTAKE
    assert isinstance(newest.body, Entry)
    assert newest.digest.hex() == cell["intake_entry"]
    values = newest.body.values
    assert (values.soh_capacity_cpct, values.soh_sigma_cpct, values.soh_method) == (None,) * 3
    assert values.resistance_uohm == round(cell["resistance_mohm"] * 1e3)
    others = [c for n, c in cells.items() if n != f"{names['unlike-reference']}.t5t"]
    assert not any(c["evidence"]["unlike_reference"] for c in others)
    assert all(c["test_far_rows"] == 0 for c in others)
    rows = {r["image"]: r for r in csv_rows(run.out)}
    assert rows[cell["image"]]["test_far_rows"] == "1"


def test_a_cell_sent_back_is_retested_from_its_tag_as_the_intake_left_it(
    kit: Kit, trouble: tuple[Run, dict[str, str]], tmp_path: Path
) -> None:
    """The re-test: the tag as the first run left it (its intake entry without the SoH) and a
    clean test row, into another OUTDIR against the same registry. The cell is graded on the
    new measurement, and a second intake entry, after the first and carrying the SoH, is
    written: the registry's entry follows the tag's old head, not this one, so it is not
    reused."""
    run, names = trouble
    name = f"{names['unlike-reference']}.t5t"
    first = read_image(run.out / "images" / name).entries[-1]
    summary = run_intake(job(kit, tmp_path / "out", [run.out / "images" / name], db=run.db))
    assert summary.unlike_reference == 0
    cell = results_by_name(read_results(tmp_path / "out")["cells"])[name]
    assert cell["grade"] in {"A", "B", "C"}
    assert cell["test_far_rows"] == 0
    image = read_image(tmp_path / "out" / "images" / name)
    newest = image.entries[-1]
    assert image.entries[-2].digest == first.digest
    assert newest.kind is Kind.INTAKE
    assert isinstance(newest.body, Entry)
    assert newest.body.prev == first.digest
    assert newest.body.values.soh_capacity_cpct == round(cell["soh"] * 10_000)
    assert newest.digest.hex() == cell["intake_entry"]


def test_no_input_images_at_all(kit: Kit, tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    summary = run_intake(job(kit, tmp_path / "out", [empty], db=sqlite(tmp_path)))
    assert (summary.cells, summary.exit_code) == (0, 0)
    assert summary.tests_unmatched == len(CELLS)
    assert read_results(tmp_path / "out")["cells"] == []


def test_two_inputs_with_one_name_are_refused(kit: Kit, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(kit.image_paths()[0], other)
    with pytest.raises(InputError, match="two inputs are named"):
        run_intake(job(kit, tmp_path / "out", [kit.images, other], db=sqlite(tmp_path)))


# --------------------------------------------------------------------------------------------
# Resuming


def _cut_progress(out: Path, drop: int, tear: bool) -> list[str]:
    """Simulate a crash: the last `drop` progress lines lost, and (`tear`) the line before
    them cut mid-way. Returns the image paths those lines were about."""
    progress = out / "progress.jsonl"
    lines = progress.read_bytes().splitlines(keepends=True)
    kept, lost = lines[: len(lines) - drop], lines[len(lines) - drop :]
    if tear:
        lost.insert(0, kept[-1])
        kept[-1] = kept[-1][: len(kept[-1]) // 2]
    progress.write_bytes(b"".join(kept))
    return [json.loads(line)["image"] for line in lost]


@pytest.mark.parametrize(
    ("drop", "tear", "lose_image", "registered"),
    [
        pytest.param(3, False, False, False, id="lost-lines"),
        pytest.param(2, True, False, False, id="torn-line"),
        pytest.param(3, True, True, False, id="torn-line-and-unwritten-image"),
        pytest.param(0, True, False, False, id="only-torn-line"),
        pytest.param(3, False, False, True, id="lost-lines-after-registering"),
        pytest.param(3, True, True, True, id="unwritten-image-after-registering"),
    ],
)
def test_resume_never_writes_a_second_intake_entry(
    kit: Kit,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    drop: int,
    tear: bool,
    lose_image: bool,
    registered: bool,
) -> None:
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        if not registered:  # the crash came before the entries were registered
            patch.setattr(intake_run, "_register_written", lambda *_args: None)
        first = run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path)))
    assert first.written == len(CELLS)
    entries = {c["image"]: c["intake_entry"] for c in read_results(out)["cells"]}
    grades = {c["image"]: (c["grade"], c["rules"]) for c in read_results(out)["cells"]}
    lost = _cut_progress(out, drop, tear)
    assert len(lost) == drop + tear
    gone = Path(lost[-1]).name
    if lose_image:  # the crash came before the last cell's image was written
        (out / "images" / gone).unlink()
        (out / "results.json").unlink()

    again = run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path)))
    assert again.resumed == len(CELLS) - len(lost)
    assert again.cells == len(CELLS)
    assert again.exit_code == 0
    cells = read_results(out)["cells"]
    assert sorted(c["image"] for c in cells) == sorted(str(p) for p in kit.image_paths())
    signer = kit.signer()
    for cell in cells:
        image = read_image(out / "images" / Path(cell["image"]).name)
        assert intake_entries(image, signer.x5t) == [cell["intake_entry"]]
        assert check_image(image, kit.trust).valid
        assert (cell["grade"], cell["rules"]) == grades[cell["image"]]
        if lose_image and Path(cell["image"]).name == gone and not registered:
            continue  # signed afresh: nothing held it
        assert cell["intake_entry"] == entries[cell["image"]]
    redone = [c for c in cells if c["image"] in lost]
    for cell in redone:
        if lose_image and Path(cell["image"]).name == gone:
            # the registry's copy of the entry is reused when it got that far
            assert ("registry holds" in cell["note"]) if registered else cell["note"] == ""
        else:
            assert "earlier run" in cell["note"]
    progress = (out / "progress.jsonl").read_bytes().splitlines(keepends=True)
    assert len(progress) == len(CELLS)
    assert all(line.endswith(b"\n") for line in progress)
    assert sorted(json.loads(line)["image"] for line in progress) == sorted(entries)


def test_resume_refuses_other_arguments_unless_restart(kit: Kit, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path)))
    before = results_by_name(read_results(out)["cells"])
    tests = tmp_path / "tests.csv"
    tests.write_text(_drop_row(kit.tests_csv.read_text(encoding="utf-8"), kit.stems[0]))
    with pytest.raises(InputError) as info:
        run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path), tests=tests))
    assert "tests_sha256" in info.value.reason
    assert "--restart" in info.value.reason
    assert info.value.source == str(out / "run.json")
    strict = GradingPolicy.from_bytes(
        POLICY_TEXT.replace("min_soh = 0.90", "min_soh = 0.99").encode(), source="s"
    )
    with pytest.raises(InputError, match="policy_sha256"):
        run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path), policy=strict))

    restarted = run_intake(
        job(kit, out, [kit.images], db=sqlite(tmp_path), tests=tests, restart=True)
    )
    assert restarted.resumed == 0
    assert restarted.cells == len(CELLS)
    assert restarted.tests_unmatched == 0
    cells = results_by_name(read_results(out)["cells"])
    # graded on the new tests file; the registry holding the first run's intake entries is not
    # a rollback of the tags, so the other cells keep their grades
    assert cells[f"{kit.stems[0]}.t5t"]["evidence"]["has_test"] is False
    assert cells[f"{kit.stems[0]}.t5t"]["grade"] == "TEST-REQUIRED"
    assert all(
        c["grade"] == before[n]["grade"] and "earlier run" in c["note"]
        for n, c in cells.items()
        if n != f"{kit.stems[0]}.t5t" and c["verified"]
    )
    assert all(c["evidence"]["has_test"] for n, c in cells.items() if n != f"{kit.stems[0]}.t5t")
    signer = kit.signer()
    for path in (out / "images").glob("*.t5t"):
        assert len(intake_entries(read_image(path), signer.x5t)) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"{not json", "unreadable run file", id="not-json"),
        pytest.param(b"", "unreadable run file", id="empty"),
        pytest.param(b"[1, 2]", "not a run file", id="a-list"),
    ],
)
def test_unreadable_run_file_is_an_input_error(
    kit: Kit, tmp_path: Path, content: bytes, message: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_bytes(content)
    with pytest.raises(InputError, match=message):
        run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path)))


def test_a_bad_tests_file_stops_the_run_before_the_registry_and_can_be_fixed(
    kit: Kit, tmp_path: Path
) -> None:
    """A tests file that is not a table stops the run before anything is registered or
    written; re-run with the fixed file (other arguments, nothing finished) it just starts."""
    out = tmp_path / "out"
    bad = tmp_path / "bad.csv"
    bad.write_text("cell_id,foo\nx,1\n", encoding="utf-8")
    registry = Registry.init(sqlite(tmp_path))
    before = registry.info()["records"]
    with pytest.raises(InputError, match="missing columns") as info:
        run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path), tests=bad))
    assert info.value.source == str(bad)
    assert registry.info()["records"] == before
    assert not (out / "images").exists()
    fixed = run_intake(job(kit, out, [kit.images], db=sqlite(tmp_path)))
    assert (fixed.cells, fixed.resumed) == (len(CELLS), 0)


# --------------------------------------------------------------------------------------------
# Clones and forks


def test_clone_in_one_batch_is_quarantined(kit: Kit, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    for stem in kit.stems[:3]:
        shutil.copy(kit.images / f"{stem}.t5t", batch)
    shutil.copy(kit.images / f"{kit.stems[0]}.t5t", batch / "twin.t5t")
    summary = run_intake(job(kit, tmp_path / "out", [batch], db=sqlite(tmp_path)))
    cells = results_by_name(read_results(tmp_path / "out")["cells"])
    pair = [cells[f"{kit.stems[0]}.t5t"], cells["twin.t5t"]]
    for cell in pair:
        assert cell["grade"] == "QUARANTINE"
        assert cell["rules"] == ["gate.fork-or-clone"]
        assert "clone" in cell["reasons"][0]
        assert "twin.t5t" in cell["reasons"][0]
        assert any(a.startswith("clone:") for a in cell["evidence"]["alerts"])
    others = [cells[f"{s}.t5t"] for s in kit.stems[1:3]]
    assert all(c["grade"] != "QUARANTINE" and not c["evidence"]["alerts"] for c in others)
    assert summary.alerts >= 2
    assert summary.exit_code == 0


def _branch(image: Image, cell: Any, at: int, fec_deci: int) -> Image:
    """`image` with one more telemetry entry signed by the cell."""
    seq, prev = image.next_link()
    record = SignedRecord.sign(
        Entry(Kind.TELEMETRY, seq, prev, at, Values(fec_deci=fec_deci)), cell
    )
    grown, evicted = image.append(record, cell_key=cell)
    assert not evicted
    return grown


def test_fork_against_the_registry_is_quarantined(kit: Kit, tmp_path: Path, db_url: str) -> None:
    stem = kit.stems[5]
    source = kit.images / f"{stem}.t5t"
    base = read_image(source)
    cell = keys.load_private(kit.images / f"{stem}.cell.pem")
    at = kit.started + 340 * DAY
    known = _branch(base, cell, at, 9_000)
    forked = _branch(base, cell, at + 60, 9_500)
    assert known.entries[-1].digest != forked.entries[-1].digest
    registry = Registry.init(db_url)
    registry.trust = kit.trust
    registry.ingest([source_from_bytes(f"{stem}.t5t", known.to_bytes())])

    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / f"{stem}.t5t").write_bytes(forked.to_bytes())
    shutil.copy(kit.images / f"{kit.stems[0]}.t5t", batch)
    summary = run_intake(job(kit, tmp_path / "out", [batch], db=db_url))
    cells = results_by_name(read_results(tmp_path / "out")["cells"])
    bad = cells[f"{stem}.t5t"]
    assert bad["verified"] is True
    assert bad["grade"] == "QUARANTINE"
    assert bad["rules"] == ["gate.fork-or-clone"]
    assert any(a.startswith("fork") for a in bad["evidence"]["alerts"])
    assert "fork" in bad["reasons"][0]
    assert cells[f"{kit.stems[0]}.t5t"]["grade"] == "A"
    assert summary.exit_code == 0


# --------------------------------------------------------------------------------------------
# Replay


def _edit_results(clean: Run, tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
    doc = read_results(clean.out)
    change(doc)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _set(cell: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["cells"][cell][key] = value

    return change


def _set_evidence(cell: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["cells"][cell]["evidence"][key] = value

    return change


@pytest.mark.parametrize(
    ("index", "change", "replayed"),
    [
        pytest.param(0, _set(0, "grade", "B"), "A", id="grade-raised-to-b"),
        pytest.param(11, _set(11, "grade", "A"), "QUARANTINE", id="quarantine-hidden"),
        pytest.param(11, _set(11, "grade", "ERROR"), "QUARANTINE", id="quarantine-as-error"),
        pytest.param(0, _set(0, "rules", ["grade.a-remanufacture"]), "A", id="rules-edited"),
        pytest.param(1, _set_evidence(1, "alerts", ["fork: x"]), "QUARANTINE", id="alert-added"),
        pytest.param(2, _set_evidence(2, "soh", 0.5), "D", id="evidence-soh-lowered"),
    ],
)
def test_replay_finds_an_edited_decision(
    clean: Run,
    tmp_path: Path,
    index: int,
    change: Callable[[dict[str, Any]], object],
    replayed: str,
) -> None:
    path = _edit_results(clean, tmp_path, change)
    report = replay(path, GradingPolicy.default())
    assert not report.ok
    assert report.replayed == len(CELLS)
    assert len(report.mismatches) == 1
    mismatch = report.mismatches[0]
    recorded = read_results(clean.out)["cells"][index]
    assert mismatch["cell_id"] == recorded["cell_id"]
    assert mismatch["replayed"] == replayed


def test_replay_refuses_another_policy(clean: Run, tmp_path: Path) -> None:
    text = POLICY_TEXT.replace("min_soh = 0.90", "min_soh = 0.95")
    other = tmp_path / "other.toml"
    other.write_text(text, encoding="utf-8")
    policy = GradingPolicy.load(other)
    with pytest.raises(InputError) as info:
        replay(clean.out / "results.json", policy)
    reason = info.value.reason
    assert info.value.source == str(clean.out / "results.json")
    assert "battery-passport/default" in reason
    assert GradingPolicy.default().sha256 in reason
    assert policy.sha256 in reason
    assert "--policy" in reason


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"{", "not JSON", id="not-json"),
        pytest.param(b"\xff\xfe", "not JSON", id="not-utf8"),
        pytest.param(b"[]", "not an intake results file", id="a-list"),
        pytest.param(b'{"format": "other", "cells": []}', "not an intake results", id="format"),
        pytest.param(b'{"format": "battery-passport/intake-results"}', "no cells", id="no-cells"),
        pytest.param(
            b'{"format": "battery-passport/intake-results", "cells": [{"grade": "A"}]}',
            "no evidence",
            id="no-evidence",
        ),
        pytest.param(
            b'{"format": "battery-passport/intake-results", "cells": [7]}',
            "no evidence",
            id="cell-not-an-object",
        ),
    ],
)
def test_replay_refuses_malformed_results(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        replay(path, GradingPolicy.default())
    assert message in info.value.reason
    assert info.value.source == str(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(_set_evidence(0, "soh", "0.95"), "soh must be a number", id="soh-string"),
        pytest.param(_set_evidence(0, "bogus", 1), "unknown field", id="unknown-field"),
        pytest.param(_set_evidence(0, "design_cells", None), "design_cells", id="count-null"),
        pytest.param(_set(0, "policy", None), "graded under policy None", id="no-policy"),
    ],
)
def test_replay_refuses_malformed_evidence(
    clean: Run, tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    path = _edit_results(clean, tmp_path, change)
    with pytest.raises(InputError) as info:
        replay(path, GradingPolicy.default())
    assert message in info.value.reason
    assert info.value.reason.startswith("cell 1")


def test_replay_of_a_custom_policy_run(kit: Kit, tmp_path: Path) -> None:
    text = POLICY_TEXT.replace("min_soh = 0.90", "min_soh = 0.99")
    path = tmp_path / "strict.toml"
    path.write_text(text, encoding="utf-8")
    strict = GradingPolicy.load(path)
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(kit.image_paths()[0], batch)
    summary = run_intake(job(kit, tmp_path / "out", [batch], db=sqlite(tmp_path), policy=strict))
    assert summary.by_grade == {"B": 1}
    assert summary.policy["sha256"] == strict.sha256
    assert replay(tmp_path / "out" / "results.json", strict).ok
    with pytest.raises(InputError, match="--policy"):
        replay(tmp_path / "out" / "results.json", GradingPolicy.default())


def test_recorded_evidence_is_what_grading_reads(clean: Run) -> None:
    for cell in read_results(clean.out)["cells"]:
        evidence = Evidence.from_dict(cell["evidence"])
        assert evidence.to_dict() == cell["evidence"]
        assert evidence.cell_id == cell["cell_id"]
        assert grade(evidence, GradingPolicy.default()).to_dict()["reasons"] == cell["reasons"]


# --------------------------------------------------------------------------------------------
# The grading columns of the tests file


def _with_columns(kit: Kit, values: dict[str, dict[str, str]]) -> str:
    """The kit's tests with `tests_covered` and `self_discharge_mv_day` columns (stem ->
    column -> text; empty elsewhere)."""
    rows = list(csv.reader(io.StringIO(kit.tests_csv.read_text(encoding="utf-8"))))
    at = rows[0].index("cell_id")
    names = ("tests_covered", "self_discharge_mv_day")
    out = [[*rows[0], *names]]
    for row in rows[1:]:
        given = values.get(row[at], {})
        out.append([*row, *(given.get(n, "") for n in names)])
    return _csv(out)


def test_self_discharge_and_coverage_columns(kit: Kit, tmp_path: Path) -> None:
    s = kit.stems
    spread = ("", "", "0.51", "0.49", "0.40", "0.45", "0.55", "0.60", "0.42", "0.58")
    sd = {stem: {"self_discharge_mv_day": v} for stem, v in zip(s, spread, strict=False)}
    sd[s[0]] = {"self_discharge_mv_day": "7.5", "tests_covered": "deep-discharge"}
    sd[s[1]] = {"self_discharge_mv_day": "2.5", "tests_covered": "deep-discharge;over-temperature"}
    tests = tmp_path / "tests.csv"
    tests.write_text(_with_columns(kit, sd), encoding="utf-8")
    run_intake(job(kit, tmp_path / "out", [kit.images], db=sqlite(tmp_path), tests=tests))
    cells = results_by_name(read_results(tmp_path / "out")["cells"])
    over, outlier = cells[f"{s[0]}.t5t"], cells[f"{s[1]}.t5t"]
    assert over["grade"] == "D"
    assert over["rules"] == ["gate.self-discharge-outlier"]
    assert "7.50 mV/day > 5.00 mV/day" in over["reasons"][0]
    assert over["evidence"]["tests_covered"] == ["deep-discharge"]
    assert outlier["grade"] == "D"
    assert "2.50 mV/day, robust z =" in outlier["reasons"][0]
    assert "among 10 cells" in outlier["reasons"][0]
    assert outlier["evidence"]["tests_covered"] == ["deep-discharge", "over-temperature"]
    assert cells[f"{s[2]}.t5t"]["grade"] != "D"
    assert replay(tmp_path / "out" / "results.json", GradingPolicy.default()).ok


def test_self_discharge_outlier_needs_enough_measured_cells(kit: Kit, tmp_path: Path) -> None:
    """Ten cells of the design were measured for resistance, only three for self-discharge:
    a robust z among three values is no reason to recycle a cell."""
    s = kit.stems
    sd = {s[0]: {"self_discharge_mv_day": "0.5"}, s[1]: {"self_discharge_mv_day": "0.6"}}
    sd[s[2]] = {"self_discharge_mv_day": "3.0"}
    tests = tmp_path / "tests.csv"
    tests.write_text(_with_columns(kit, sd), encoding="utf-8")
    run_intake(job(kit, tmp_path / "out", [kit.images], db=sqlite(tmp_path), tests=tests))
    cell = results_by_name(read_results(tmp_path / "out")["cells"])[f"{s[2]}.t5t"]
    assert cell["evidence"]["self_discharge_mv_day"] == 3.0
    assert cell["grade"] != "D"
    assert "gate.self-discharge-outlier" not in cell["rules"]


@pytest.mark.parametrize(
    ("column", "text", "message"),
    [
        pytest.param("tests_covered", "vibration", "tests_covered 'vibration'", id="unknown-risk"),
        pytest.param("self_discharge_mv_day", "-1", "not a number >= 0", id="negative-sd"),
        pytest.param("self_discharge_mv_day", "fast", "not a number >= 0", id="text-sd"),
        pytest.param("self_discharge_mv_day", "inf", "not a number >= 0", id="infinite-sd"),
    ],
)
def test_bad_grading_column_is_an_input_error(
    kit: Kit, tmp_path: Path, column: str, text: str, message: str
) -> None:
    tests = tmp_path / "tests.csv"
    tests.write_text(_with_columns(kit, {kit.stems[3]: {column: text}}), encoding="utf-8")
    with pytest.raises(InputError) as info:
        run_intake(job(kit, tmp_path / "out", [kit.images], db=sqlite(tmp_path), tests=tests))
    assert message in info.value.reason
    assert "line 5" in info.value.reason
    assert info.value.source == str(tests)


def test_a_cell_tested_at_several_widths_gets_one_combined_soh(kit: Kit, tmp_path: Path) -> None:
    """Every row of a cell that gave an estimate counts (passport.soh.combine); a row with an
    error does not; the last usable row gives the line number."""
    rows = list(csv.reader(io.StringIO(kit.tests_csv.read_text(encoding="utf-8"))))
    header, at = rows[0], rows[0].index("cell_id")
    first, second = kit.stems[0], kit.stems[1]
    mine = next(r for r in rows[1:] if r[at] == first)
    u = [header.index(f"U{i}") for i in range(2, 10)]  # a stiffer 0.5 C response
    shifted = [f"{float(v) + 0.002:.6f}" if i in u else v for i, v in enumerate(mine)]
    broken = [("" if name == "U5" else v) for name, v in zip(header, mine, strict=True)]
    tests = tmp_path / "tests.csv"
    tests.write_text(_csv([*rows, shifted, broken]), encoding="utf-8")

    model = load_model(kit.model_path)
    table = read_all(tests)
    est = estimate(model, table.design, table.U, table.rated_ah, table.width_ms)
    got = measure(model, tests, {})

    own = [i for i, c in enumerate(table.cell_id) if c == first]
    assert len(own) == 3
    assert est.error[own[2]] != ""  # the broken row gives no estimate
    assert est.soh[own[0]] != est.soh[own[1]]
    rho = model.models[str(table.design[own[0]])].row_correlation
    want = combine(est.soh[own[:2]], est.soh_sigma[own[:2]], rho)
    m = got[first]
    assert (m.soh, m.soh_sigma) == want
    assert (m.rows, m.combined, m.line) == (3, 2, int(table.line[own[1]]))
    assert m.soh_sigma <= max(est.soh_sigma[own[:2]])  # never wider than its rows
    one = [i for i, c in enumerate(table.cell_id) if c == second]
    assert (got[second].soh, got[second].soh_sigma) == (est.soh[one[0]], est.soh_sigma[one[0]])
    assert got[second].combined == 1


@pytest.mark.parametrize(
    ("combined", "far_rows", "unlike"),
    [(0, 0, False), (1, 0, False), (1, 1, True), (4, 3, False), (4, 4, True)],
)
def test_unlike_reference_needs_every_combined_row_far(
    combined: int, far_rows: int, unlike: bool
) -> None:
    m = Measurement(1, LFP, 0.9, 0.01, 1e-3, "", combined=combined, far_rows=far_rows)
    assert m.unlike_reference is unlike


def test_one_ordinary_row_is_enough_to_stand_on(kit: Kit, tmp_path: Path) -> None:
    """A cell tested twice, once through a poor contact (5 mV of noise): the far row is
    counted, but the cell is not unlike the reference cells, and the combined SoH leans on
    the clean row (its sigma is within a hair of the clean row's alone)."""
    rows = list(csv.reader(io.StringIO(kit.tests_csv.read_text(encoding="utf-8"))))
    at = rows[0].index("cell_id")
    first = kit.stems[0]
    clean = next(r for r in rows[1:] if r[at] == first)
    noisy = noisy_row(rows[0], clean, 0.005, np.random.default_rng(4))
    tests = tmp_path / "tests.csv"
    tests.write_text(_csv([*rows, noisy]), encoding="utf-8")
    model = load_model(kit.model_path)
    got = measure(model, tests, {})
    m = got[first]
    assert (m.combined, m.far_rows, m.unlike_reference) == (2, 1, False)
    alone = measure(model, kit.tests_csv, {})[first]
    assert (alone.combined, alone.far_rows) == (1, 0)
    assert m.soh_sigma is not None
    assert alone.soh_sigma is not None
    assert m.soh_sigma == pytest.approx(alone.soh_sigma, rel=0.01)
    assert m.soh == pytest.approx(alone.soh, abs=0.05 * alone.soh_sigma)
