"""The recycler's intake job: read, verify, register, measure, check the claim, grade, and write
a signed intake entry into a copy of each image. Per-cell trouble is reported per cell; the rest
of the batch goes on. Input files are never modified."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from passport._fileio import read_bytes
from passport.chain import check_image
from passport.errors import CapacityError, DecodeError, InputError, PassportError
from passport.grading import GradingPolicy
from passport.image import Image
from passport.intake.assess import CellState, assess
from passport.intake.facts import passport_facts
from passport.intake.measure import measure
from passport.intake.outputs import write_outputs
from passport.intake.state import RunState
from passport.intake.writer import IntakeSigner, write_intake_entry
from passport.issuance import CELL_KEY_SUFFIX
from passport.records import Entry, Kind, SignedRecord
from passport.registry import Registry, read_sources
from passport.registry.ingest import Source
from passport.soh import SohModel
from passport.soh.check import Ageing
from passport.trust.bundle import TrustBundle
from passport.writer import EVICTED_SUFFIX

#: stage name, total -> advance(n)
Progress = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True, slots=True)
class IntakeJob:
    trust: TrustBundle
    registry: Registry
    model: SohModel
    tests: Path
    out_dir: Path
    inputs: Sequence[Path]
    signer: IntakeSigner
    policy: GradingPolicy
    arguments: dict[str, Any]  # what identifies the run for resuming
    restart: bool = False
    now: int | None = None
    workers: int = 1
    ageing: Ageing = field(default_factory=Ageing)
    threshold: float = 3.0


@dataclass(slots=True)
class IntakeSummary:
    cells: int = 0
    by_grade: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    unverified: int = 0
    errors: int = 0
    written: int = 0  # intake entries written in this run
    not_written: int = 0
    resumed: int = 0  # cells finished by an earlier run
    tests_unmatched: int = 0  # test rows whose cell is not in this batch
    unlike_reference: int = 0  # cells whose test is unlike the SoH model's reference cells
    outputs: dict[str, str] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.unverified else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "cells": self.cells, "by_grade": self.by_grade, "alerts": self.alerts,
            "unverified": self.unverified, "errors": self.errors, "written": self.written,
            "not_written": self.not_written, "resumed": self.resumed,
            "tests_unmatched": self.tests_unmatched,
            "unlike_reference": self.unlike_reference, "outputs": self.outputs,
            "policy": self.policy, "seconds": round(self.seconds, 2),
        }  # fmt: skip


def list_images(inputs: Sequence[Path]) -> list[Path]:
    """Files as given, directories as their *.t5t files; each path once."""
    out: list[Path] = []
    for p in inputs:
        out.extend(sorted(p.glob("*.t5t")) if p.is_dir() else [p])
    seen: dict[str, Path] = {}
    resolved: set[Path] = set()
    unique: list[Path] = []
    for p in out:
        real = p.resolve()
        if real in resolved:
            continue
        resolved.add(real)
        if p.name in seen:
            raise InputError(
                f"two inputs are named {p.name} ({seen[p.name]} and {p}): outputs go to "
                "OUTDIR/images/<name>, so names must be unique"
            )
        seen[p.name] = p
        unique.append(p)
    return unique


def _noop(_stage: str, _total: int) -> Callable[[int], None]:
    return lambda _n: None


def run_intake(job: IntakeJob, progress: Progress = _noop) -> IntakeSummary:
    started = time.perf_counter()
    now = job.now if job.now is not None else int(time.time())
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    paths = list_images(job.inputs)
    state = RunState(job.out_dir, job.arguments, restart=job.restart)
    summary = IntakeSummary(policy=job.policy.ref(), resumed=len(state.done))
    try:
        cells = _read_and_verify(job, paths, at, progress)
        # the tests file before the registry: a bad table stops the run before it writes
        designs = {k: c.facts.model for c in cells if c.facts is not None for k in c.keys}
        measured = measure(job.model, job.tests, designs)
        _register(job, cells, at, progress)
        used: set[str] = set()
        for c in cells:
            key = next((k for k in c.keys if k in measured), None)
            if key is not None:
                c.measurement = measured[key]
                used.add(key)
        summary.tests_unmatched = len(set(measured) - used)
        results = assess(cells, job.policy, job.ageing, job.threshold)
        advance = progress("writing intake entries", len(cells))
        for c, result in zip(cells, results, strict=True):
            key = str(c.path)
            if key in state.done:
                advance(1)
                continue
            wrote = _write(job, c, result, now)
            state.record(result)
            summary.written += wrote
            advance(1)
        state.sync()
    finally:
        state.close()
    _register_written(job, at)
    final = [state.done[str(c.path)] for c in cells]
    summary.cells = len(final)
    for r in final:
        summary.by_grade[r["grade"]] = summary.by_grade.get(r["grade"], 0) + 1
        summary.alerts += len(r["evidence"]["alerts"]) if r.get("evidence") else 0
        summary.unverified += r["grade"] == "UNVERIFIED"
        summary.errors += r["grade"] == "ERROR"
        summary.not_written += not r["intake_entry"]
        # (.get: a cell finished by an earlier run of older code has no such field)
        summary.unlike_reference += bool((r.get("evidence") or {}).get("unlike_reference"))
    summary.seconds = time.perf_counter() - started
    summary.outputs = write_outputs(job.out_dir, final, summary.to_dict(), job.policy.raw)
    return summary


def _read_and_verify(
    job: IntakeJob, paths: list[Path], at: dt.datetime, progress: Progress
) -> list[CellState]:
    cells: list[CellState] = []
    receipts = job.registry.receipt_lookup()
    now = int(at.timestamp())
    advance = progress("verifying", len(paths))
    for path in paths:
        cell = CellState(path)
        cells.append(cell)
        try:
            cell.image = Image.from_bytes(read_bytes(path, limit=1 << 20))
        except DecodeError as exc:
            cell.failures.append(f"{exc.rule}: {exc.reason}")
            cell.rules.append(exc.rule)
        except PassportError as exc:
            cell.error = exc.reason
        if cell.image is not None:
            report = check_image(cell.image, job.trust, now=at, receipts=receipts)
            cell.verified = report.valid
            for f in report.findings:
                where = f"record {f.index}: " if f.index is not None else ""
                cell.failures.append(f"{f.rule}: {where}{f.message}")
                cell.rules.append(f.rule)
            cell.facts = passport_facts(cell.image, now)
        advance(1)
    return cells


def _sources(paths: list[Path]) -> list[Source]:
    """Each tag and its journal of evicted records, as the registry reads them (an unreadable
    file is left out: it is already reported for its cell)."""
    files = [p for path in paths for p in (path, Path(str(path) + EVICTED_SUFFIX)) if p.exists()]
    sources, _ = read_sources(files)
    return sources


def _register(job: IntakeJob, cells: list[CellState], at: dt.datetime, progress: Progress) -> None:
    """Ingest what verified (and its journal), then ask the registry about every passport."""
    good = [c for c in cells if c.verified]
    sources = _sources([c.path for c in good])
    job.registry.ingest(
        sources, now=at, workers=job.workers, progress=progress("registering", len(sources))
    )
    by_birth = job.registry.alerts_for(c.image.birth.digest for c in good if c.image)
    for c in good:
        assert c.image is not None
        check = job.registry.check_image(c.image)
        for f in check.findings:
            if f.rule == "registry.rollback" and _our_registered_intake(job, c.image, only=True):
                continue  # behind only by our own intake entry: not a rollback
            if f.rule in ("registry.fork", "registry.rollback"):
                c.alerts.append(f"{f.rule.removeprefix('registry.')}: {f.message}")
        c.alerts.extend(
            f"{a['kind']}: {a['message']}" for a in by_birth.get(c.image.birth.digest, [])
        )
    twins: dict[bytes, list[CellState]] = {}
    for c in good:
        assert c.image is not None
        twins.setdefault(c.image.birth.digest, []).append(c)
    for group in twins.values():
        if len(group) > 1:
            names = ", ".join(c.path.name for c in group)
            for c in group:
                c.alerts.append(f"clone: the same passport is on {len(group)} tags in this "
                                f"batch ({names})")  # fmt: skip
                c.twins = len(group)


def _our_registered_intake(
    job: IntakeJob, image: Image, *, only: bool = False
) -> SignedRecord | None:
    """The intake entry this recycler already wrote for this tag and the registry holds (an
    earlier run over the same tags); with `only`, if it is all the registry holds beyond it."""
    seq, head = image.next_link()
    later = job.registry.entries_after(image.birth.digest, seq - 1)
    ours = [
        r for r in later
        if r.kind is Kind.INTAKE and r.x5t == job.signer.x5t
        and isinstance(r.body, Entry) and r.body.prev == head
    ]  # fmt: skip
    if not ours or (only and len(later) != 1):
        return None
    return ours[0]


def _register_written(job: IntakeJob, at: dt.datetime) -> None:
    """Every intake entry written under OUTDIR/images goes to the registry (idempotent, so a
    resumed run also registers what an interrupted one wrote)."""
    written = sorted((job.out_dir / "images").glob("*.t5t"))
    if written:
        job.registry.ingest(_sources(written), now=at, workers=job.workers)


def _write(job: IntakeJob, c: CellState, result: dict[str, Any], now: int) -> bool:
    """A signed intake entry into OUTDIR/images/<name> (verified passports only); True when
    this call wrote one."""
    if c.error:
        result["note"] = "no intake entry written: the image cannot be read"
        return False
    if not c.verified or c.image is None:
        result["note"] = "no intake entry written: the passport does not verify"
        return False
    if c.twins:  # an entry on each would fork the registry's history of that passport
        result["note"] = "no intake entry written: the same passport is on several tags"
        return False
    cell_key = c.path.with_name(c.path.stem + CELL_KEY_SUFFIX)
    # a measurement the SoH model cannot vouch for stays out of the cell's signed history
    unlike = bool(result["evidence"]["unlike_reference"])
    try:
        written = write_intake_entry(
            c.path, job.out_dir / "images" / c.path.name, job.signer, now,
            soh=None if unlike else result["soh"], soh_sigma=result["soh_sigma"],
            resistance_ohm=None if result["resistance_mohm"] is None
            else result["resistance_mohm"] / 1e3,
            cell_key_path=cell_key if cell_key.exists() else None,
            receipts=job.registry.receipt_lookup(),
            reuse=_our_registered_intake(job, c.image),
        )  # fmt: skip
    except (CapacityError, InputError, DecodeError) as exc:
        result["note"] = f"no intake entry written: {exc.reason}"
        return False
    result["intake_entry"] = written.digest
    result["output_image"] = str(written.path)
    if written.existing:
        result["note"] = "intake entry found in OUTDIR/images from an earlier run; not rewritten"
    elif written.reused:
        result["note"] = (
            "the registry holds this recycler's intake entry for the tag already (an earlier "
            "run): reused, not written again"
        )
    elif unlike and result["soh"] is not None:
        result["note"] = (
            "intake entry written without the measured SoH: the pulse test is unlike the SoH "
            "model's reference cells"
        )
    elif written.dropped:
        result["note"] = (
            "intake entry written without the measured SoH: the verifier would refuse it ("
            + ", ".join(written.dropped)
            + ")"
        )
    return not (written.existing or written.reused)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(read_bytes(path, limit=1 << 30)).hexdigest()


__all__ = ["IntakeJob", "IntakeSummary", "file_sha256", "list_images", "run_intake"]
