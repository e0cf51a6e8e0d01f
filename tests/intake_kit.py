"""A small recycler's batch for the intake tests (library and CLI), built once per test process:
its own demo PKI (so there are key and certificate files for the CLI), a dozen cells of two
designs with signed histories (cell telemetry with BMS claims, a test lab's capacity
measurement), their pulse tests at intake, and an SoH model fitted on synthetic reference
cells of both designs.

Records are dated in the past year (the CLI grades "now"); the certificates are valid from
before the first record.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from passport import issuance, writer
from passport.chain import check_image
from passport.grading import GradingPolicy
from passport.image import PROFILES, Image
from passport.intake import IntakeJob, IntakeSigner
from passport.intake.run import file_sha256
from passport.records import Birth, Entry, Event, Kind, SohMethod, Values
from passport.registry import Registry
from passport.soh import fit_csv, load_model, save_model
from passport.soh.synthetic import Rows, aged_cells, pulse_rows, pulse_table_csv
from passport.trust import keys
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.store import load_certificates, thumbprint

DAY = 86_400
NMC, LFP = "ACME-21700-50E", "ACME-LFP-280"
# model -> (chemistry, rated Ah, nominal V, min V, max V, initial mOhm)
DESIGNS = {
    NMC: ("NMC", 5.0, "3.63", "2.5", "4.2", 14.2),
    LFP: ("LFP", 280.0, "3.2", "2.5", "3.65", 0.18),
}


@dataclass(frozen=True)
class CellSpec:
    design: str
    soh: float  # the true state of health
    thermal_event: bool = False


#: ten cells of one design (enough for the within-design outlier rules), two of another
CELLS: tuple[CellSpec, ...] = (
    *(CellSpec(NMC, s) for s in (0.97, 0.96, 0.95, 0.93, 0.90, 0.87, 0.85, 0.83, 0.80, 0.74)),
    CellSpec(LFP, 0.94),
    CellSpec(LFP, 0.88, thermal_event=True),
)


@dataclass(frozen=True)
class Kit:
    root: Path
    images: Path  # the batch: <stem>.t5t and <stem>.cell.pem per cell (read-only for tests)
    stems: tuple[str, ...]  # in CELLS order
    trust_dir: Path
    recycler_key: Path
    recycler_cert: Path
    tester_key: Path
    oem_key: Path
    model_path: Path
    tests_csv: Path
    started: int  # when the first record was signed

    @property
    def trust(self) -> TrustBundle:
        return TrustBundle.load(self.trust_dir)

    def image_paths(self) -> list[Path]:
        return [self.images / f"{s}.t5t" for s in self.stems]

    def copy_batch(self, dest: Path) -> Path:
        """A private copy of the batch (images, cell keys, journals) under `dest`."""
        shutil.copytree(self.images, dest)
        return dest

    def signer(self, trust: TrustBundle | None = None) -> IntakeSigner:
        return IntakeSigner.load(self.recycler_key, self.recycler_cert, trust or self.trust)


def _cells_csv(started: int) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(issuance.REQUIRED)
    made = dt.datetime.fromtimestamp(started, dt.UTC).date().isoformat()
    for i, spec in enumerate(CELLS):
        chem, ah, vnom, vmin, vmax, mohm = DESIGNS[spec.design]
        sheet = hashlib.sha256(f"datasheet {spec.design}".encode()).hexdigest()
        w.writerow([
            f"https://id.gs1.org/01/09506000134352/21/K{i + 1:05d}", "ACME", spec.design, chem,
            f"{ah:g}", vnom, vmin, vmax, f"{ah * 1.01:.3f}", "25", "0.2", f"{mohm:g}", "25",
            "50", "10", made, "DE-BER1", "1500", "60", sheet,
        ])  # fmt: skip
    return out.getvalue()


def _history(kit: Kit, path: Path, spec: CellSpec, index: int) -> None:
    """Four quarters of cell telemetry (BMS SoH claims), then the test lab's measurement."""
    cell = keys.load_private(path.with_name(path.stem + issuance.CELL_KEY_SUFFIX))
    tester = keys.load_private(kit.tester_key)
    tester_x5t = thumbprint(load_certificates(kit.tester_key.with_name("tester.cert.pem"))[0])
    fec = 0.0
    for quarter in range(1, 5):
        fec += 60 + index
        soh = 1.0 - (1.0 - spec.soh) * quarter / 4
        events = (Event.THERMAL_EVENT,) if spec.thermal_event and quarter == 2 else ()
        values = Values(
            fec_deci=round(fec * 10), ah_deci=round(fec * 100), wh=round(fec * 36),
            soh_capacity_cpct=round(soh * 10_000), soh_method=SohMethod.BMS_ESTIMATE,
            soh_sigma_cpct=100, minutes_hot=2 * quarter, deep_discharges=0, events=events,
        )  # fmt: skip
        at = kit.started + quarter * 80 * DAY
        writer.append_entry(path, kind=Kind.TELEMETRY, time=at, values=values, signer=cell)
    writer.append_entry(
        path, kind=Kind.MEASUREMENT, time=kit.started + 330 * DAY,
        values=Values(soh_capacity_cpct=round(spec.soh * 10_000),
                      soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=40),
        signer=tester, x5t=tester_x5t, cell_key=cell,
    )  # fmt: skip


def _reference(folder: Path, rng: np.random.Generator) -> Path:
    tables: list[str] = []
    for design, (_chem, rated, *_v, mohm) in DESIGNS.items():
        soh = rng.uniform(0.6, 1.02, 40)
        rows = pulse_rows(aged_cells(soh, rated, rng, r0_new=mohm / 1000), rated)
        ids = [f"{design}-ref-{i:02d}" for i in range(len(soh))]
        text = pulse_table_csv([design] * len(ids), ids, rows, soh=soh)
        tables.append(text if not tables else text.split("\n", 1)[1])
    path = folder / "reference.csv"
    path.write_text("".join(tables), encoding="utf-8")
    return path


def pulse_tests(
    kit: Kit,
    stems: Sequence[str],
    specs: Sequence[CellSpec],
    *,
    design: Sequence[str] | None = None,
    seed: int = 11,
) -> str:
    """Pulse-feature rows of these cells at their true SoH (`design` overrides the design
    column, e.g. to file a test under another model)."""
    rng = np.random.default_rng(seed)
    images = [Image.from_bytes((kit.images / f"{s}.t5t").read_bytes()) for s in stems]
    U, rated, width = [], [], []
    for image, spec in zip(images, specs, strict=True):
        birth = image.birth.body
        assert isinstance(birth, Birth)
        ah = birth.rated_capacity_mah / 1000
        rows = pulse_rows(
            aged_cells(np.array([spec.soh]), ah, rng, r0_new=birth.initial_resistance_uohm * 1e-6),
            ah,
        )
        U.append(rows.U[0])
        rated.append(rows.rated_ah[0])
        width.append(rows.width_ms[0])
    table = Rows(np.array(U), np.array(rated), np.array(width))
    names = list(design) if design is not None else [s.design for s in specs]
    return pulse_table_csv(names, list(stems), table)


def noisy_row(
    header: Sequence[str], row: Sequence[str], noise_v: float, rng: np.random.Generator
) -> list[str]:
    """A test row (CSV cells under `header`) with Gaussian noise of `noise_v` on every voltage:
    a test through a poor contact."""
    return [
        f"{float(v) + rng.normal(0.0, noise_v):.6f}" if name.startswith("U") else v
        for name, v in zip(header, row, strict=True)
    ]


def build(root: Path) -> Kit:
    started = int(time.time()) - 400 * DAY
    ca = CertificateAuthority(root / "pki")
    ca.init(not_before=dt.datetime.fromtimestamp(started - DAY, dt.UTC))
    pki = root / "pki"
    oem_key = keys.load_private(pki / "keys" / "oem.key.pem")
    oem_cert = load_certificates(pki / "keys" / "oem.cert.pem")[0]
    rows = issuance.read_cells(_cells_csv(started), source="kit", issued_at=started)
    images = root / "images"
    issuance.issue_batch(
        rows, oem_key=oem_key, oem_cert=oem_cert, profile=PROFILES["st25dv16k"], out_dir=images
    )
    rng = np.random.default_rng(5)
    model = fit_csv(_reference(root, rng))
    save_model(model, root / "model.json")
    kit = Kit(
        root=root,
        images=images,
        stems=tuple(r.stem for r in rows),
        trust_dir=pki / "trust",
        recycler_key=pki / "keys" / "recycler.key.pem",
        recycler_cert=pki / "keys" / "recycler.cert.pem",
        tester_key=pki / "keys" / "tester.key.pem",
        oem_key=pki / "keys" / "oem.key.pem",
        model_path=root / "model.json",
        tests_csv=root / "tests.csv",
        started=started,
    )
    for i, (path, spec) in enumerate(zip(kit.image_paths(), CELLS, strict=True)):
        _history(kit, path, spec, i)
    kit.tests_csv.write_text(pulse_tests(kit, kit.stems, CELLS), encoding="utf-8")
    bundle = kit.trust
    for path in kit.image_paths():
        assert check_image(writer.read_image(path), bundle).valid, path
    return kit


# --------------------------------------------------------------------------------------------
# Jobs and what they leave


def job(
    kit: Kit,
    out: Path,
    inputs: Sequence[Path],
    *,
    db: str,
    tests: Path | None = None,
    policy: GradingPolicy | None = None,
    restart: bool = False,
    now: int | None = None,
) -> IntakeJob:
    """An intake job assembled as `passport intake` assembles it."""
    bundle = kit.trust
    grading = policy or GradingPolicy.default()
    signer = kit.signer(bundle)
    registry = Registry.init(db)
    registry.trust = bundle
    tests = tests or kit.tests_csv
    arguments = {
        "trust": str(kit.trust_dir.resolve()),
        "db": registry.engine.url.render_as_string(hide_password=True),
        "model_sha256": file_sha256(kit.model_path),
        "tests_sha256": file_sha256(tests),
        "policy_sha256": grading.sha256,
        "signer": signer.subject,
        "inputs": [str(p.resolve()) for p in inputs],
    }
    return IntakeJob(
        trust=bundle, registry=registry, model=load_model(kit.model_path), tests=tests,
        out_dir=out, inputs=list(inputs), signer=signer, policy=grading, arguments=arguments,
        restart=restart, workers=1, now=now,
    )  # fmt: skip


def tree_hashes(*folders: Path) -> dict[str, str]:
    """path -> SHA-256 of every file under the folders."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def intake_entries(image: Image, x5t: object) -> list[str]:
    """Digests (hex) of the INTAKE entries signed with this certificate on the tag."""
    return [
        r.digest.hex()
        for r in image.entries
        if r.kind is Kind.INTAKE and r.x5t == x5t and isinstance(r.body, Entry)
    ]


def results_by_name(cells: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(c["image"]).name: c for c in cells}
