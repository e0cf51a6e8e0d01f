"""The end-to-end demo behind `make demo`: a PKI, a batch of cells, their lives, verification.

It leaves, under the output directory:

- `trust/`: the trust bundle (roots, intermediates, actor certificates, CRLs, policy.toml);
- `keys/`, `ca/`: the actors' and CAs' keys (a demo PKI: keys sit next to the certificates);
- `images/`: one tag image per cell (and `<id>.cell.pem`, the virtual cell's key), whose
  history was written by the cell (quarterly telemetry), an accredited tester (yearly SoH
  measurements) and, for some, a recycler (intake);
- one image tampered on purpose (a raised SoH in an otherwise well-formed record), and one
  cell whose BMS under-reports its fade (signed and chained correctly, but wrong: the pulse
  test at intake flags its claim);

- `passport.db`: the registry (SQLite) holding every record that verified, its log, and
  `log.pub.pem`, `record.cose`, `receipt.cose` for an offline audit of one record;
- `soh/`: the state-of-health step: `reference.csv` (pulse tests of reference cells with
  measured capacity, simulated by an equivalent-circuit model per design), `model.json` fitted
  on them, `intake.csv` (each cell's pulse test plus what its verified passport claims) and
  `estimates.csv` (SoH, sigma, resistance growth and the passport check per cell);

so that anyone can run `passport verify --trust DIR/trust DIR/images/`. It uses the same library
calls as the CLI commands. Later issues grow it into the full recycler intake.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cbor2
import numpy as np

from passport import cbor, issuance, writer
from passport._fileio import write_atomic
from passport.chain import check_image
from passport.image import PROFILES, Image
from passport.records import Birth, Entry, Event, Kind, SignedRecord, SohMethod, Values
from passport.records.codec import encode_body
from passport.registry import Registry, read_sources
from passport.soh import estimate_csv, fit_csv, save_model
from passport.soh.io import CLAIM_COLUMNS
from passport.soh.synthetic import Rows, aged_cells, pulse_rows, pulse_table_csv
from passport.trust import keys
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.store import load_certificates, thumbprint

# (model, chemistry, rated Ah, nominal V, min V, max V, mOhm, cycle life, SoH fade %/1000 FEC)
DESIGNS = (
    ("ACME-21700-50E", "NMC", "5.0", "3.63", "2.5", "4.2", "14.2", 1500, 12.0),
    ("ACME-LFP-280", "LFP", "280", "3.2", "2.5", "3.65", "0.18", 6000, 3.5),
    ("ACME-NCA-18650", "NCA", "3.4", "3.6", "2.5", "4.2", "28", 800, 20.0),
)
BMS_SIGMA_CPCT = 100  # a BMS SoH estimate is good to about 1 point (1 sigma)
LAB_SIGMA_CPCT = 40  # a laboratory capacity test to about 0.4 points


@dataclass(frozen=True, slots=True)
class DemoRegistry:
    database: str
    stored: int
    tree_size: int
    rejected_tags: list[str]
    rejected_journals: list[str]
    alerts: int


@dataclass(frozen=True, slots=True)
class DemoSoh:
    model: str
    estimates: str
    estimated: int
    mae_points: float  # against the demo cells' true SoH
    flagged: list[str]  # cells whose passport claim the measurement contradicts


@dataclass(slots=True)
class DemoReport:
    out_dir: str
    cells: int = 0
    entries: dict[str, int] = field(default_factory=dict)  # by signer
    evicted: int = 0
    verified_ok: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    tampered: str = ""
    optimistic: str = ""  # the cell whose BMS overstates its SoH (signed, but wrong)
    seconds: float = 0.0
    profiles: dict[str, int] = field(default_factory=dict)
    registry: DemoRegistry | None = None
    soh: DemoSoh | None = None

    @property
    def as_expected(self) -> bool:
        return (
            set(self.failed) == {self.tampered}
            and self.verified_ok == self.cells - 1
            and self.registry is not None
            and self.registry.rejected_tags == [self.tampered]
            and self.soh is not None
            and self.soh.estimated == self.cells
            and (not self.optimistic or self.optimistic in self.soh.flagged)
        )


def _cells_csv(count: int, rng: random.Random, made: dt.date) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(issuance.REQUIRED)
    for i in range(count):
        model, chem, ah, vnom, vmin, vmax, mohm, life, _ = DESIGNS[i % len(DESIGNS)]
        initial = f"{float(ah) * rng.uniform(1.0, 1.03):.3f}"
        sheet = hashlib.sha256(f"datasheet {model} rev 3".encode()).hexdigest()
        w.writerow([
            f"https://id.gs1.org/01/09506000134352/21/D{i + 1:05d}", "ACME", model, chem, ah,
            vnom, vmin, vmax, initial, "25", "0.2", mohm, "25", "50", "10", made.isoformat(),
            "DE-BER1", life, "60", sheet,
        ])  # fmt: skip
    return out.getvalue()


def _overstate_soh(image: Image, cpct: int) -> bytes:
    """The image with its last entry's SoH raised, re-encoded around the old signature."""
    target = image.entries[-1]
    assert isinstance(target.body, Entry)
    assert target.body.values.soh_capacity_cpct is not None
    soh = min(10_000, target.body.values.soh_capacity_cpct + cpct)
    forged = replace(target.body, values=target.body.values._replace(soh_capacity_cpct=soh))
    payload, _ = encode_body(forged)
    raw = cbor.dumps(
        cbor2.CBORTag(18, [target.protected_bytes, {}, cbor.dumps(payload), target.signature])
    )
    entries = (*image.entries[:-1], SignedRecord.from_bytes(raw))
    return replace(image, entries=entries).to_bytes()


def run_demo(
    out_dir: str | Path,
    *,
    cells: int = 12,
    years: int = 4,
    seed: int = 7,
    progress: Callable[[int], None] | None = None,
) -> DemoReport:
    """Build the demo under `out_dir` and verify it; returns what happened."""
    started = time.perf_counter()
    rng = random.Random(seed)
    out = Path(out_dir)
    report = DemoReport(out_dir=str(out))
    now = int(time.time())
    start = now - years * 365 * 86400
    ca = CertificateAuthority(out)
    ca.init(not_before=dt.datetime.fromtimestamp(start - 86400, dt.UTC), force=True)
    actor = {
        name: (keys.load_private(out / "keys" / f"{name}.key.pem"),
               thumbprint(load_certificates(out / "keys" / f"{name}.cert.pem")[0]))
        for name in ("oem", "tester", "recycler")
    }  # fmt: skip
    oem_cert = load_certificates(out / "keys" / "oem.cert.pem")[0]

    made = dt.datetime.fromtimestamp(start, dt.UTC).date()
    rows = issuance.read_cells(_cells_csv(cells, rng, made), source="demo", issued_at=start)
    profiles = list(PROFILES.values())[1:]  # 512 B tags hold only birth + one entry
    images: list[Path] = []
    for index, row in enumerate(rows):
        profile = profiles[index % len(profiles)]
        summary = issuance.issue_batch(
            [row], oem_key=actor["oem"][0], oem_cert=oem_cert, profile=profile,
            out_dir=out / "images", overwrite=True,
        )  # fmt: skip
        images.append(Path(summary.images[0]))
        report.profiles[profile.name] = report.profiles.get(profile.name, 0) + 1
    report.cells = len(images)

    def write(
        path: Path, kind: Kind, at: int, values: Values, signer: str, cell_key: object
    ) -> None:
        key, x5t = (cell_key, None) if signer == "cell" else actor[signer]
        result = writer.append_entry(
            path, kind=kind, time=at, values=values, signer=key,  # type: ignore[arg-type]
            x5t=x5t, cell_key=cell_key,  # type: ignore[arg-type]
        )  # fmt: skip
        report.entries[signer] = report.entries.get(signer, 0) + 1
        report.evicted += len(result.evicted)

    truth: list[float] = []
    # One cell's BMS under-reports its fade (a third of the real loss) and it never went to a
    # laboratory: every record is signed and the chain holds, only a measurement can tell.
    victim_index = len(images) // 2
    optimistic = next((i for i in range(len(images)) if i % 6 == 5 and i != victim_index), None)
    for index, path in enumerate(images):
        fade = DESIGNS[index % len(DESIGNS)][8]
        rated_ah = float(DESIGNS[index % len(DESIGNS)][2])
        cell_key = keys.load_private(path.with_name(path.stem + issuance.CELL_KEY_SUFFIX))
        fec = ah = 0.0
        hot = deep = 0
        abused = index % 5 == 3  # a few cells live hard
        for quarter in range(1, years * 4 + 1):
            cycles = rng.uniform(40, 90)  # full equivalent cycles this quarter
            fec += cycles
            ah += rated_ah * 2 * cycles  # charge + discharge throughput
            hot += rng.randint(0, 30 if abused else 4)
            deep += int(abused and rng.random() < 0.3)
            true_soh = 100.0 - fade * fec / 1000 - (1.5 if abused else 0.0) * quarter / 4
            at = start + quarter * 88 * 86400  # leaves the last weeks for tests and intake
            event = (Event.THERMAL_EVENT,) if abused and quarter == 6 else ()
            told = 100 - (100 - true_soh) / 3 if index == optimistic else true_soh
            write(path, Kind.TELEMETRY, at, Values(
                fec_deci=round(fec * 10), ah_deci=round(ah * 10), wh=round(ah * 3.6),
                soh_capacity_cpct=round((told + rng.gauss(0, 0.3)) * 100),
                soh_method=SohMethod.BMS_ESTIMATE, soh_sigma_cpct=BMS_SIGMA_CPCT,
                minutes_hot=hot, deep_discharges=deep, events=event,
            ), "cell", cell_key)  # fmt: skip
            if quarter % 4 == 0 and index != optimistic:  # the yearly laboratory test
                write(path, Kind.MEASUREMENT, at + 7 * 86400, Values(
                    soh_capacity_cpct=round((true_soh + rng.gauss(0, 0.2)) * 100),
                    soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=LAB_SIGMA_CPCT,
                ), "tester", cell_key)  # fmt: skip
        if index % 2 == 0:  # retired: the recycler's intake record
            write(path, Kind.INTAKE, now - 86400, Values(
                soh_capacity_cpct=round((true_soh + rng.gauss(0, 0.4)) * 100),
                soh_method=SohMethod.PULSE_TEST, soh_sigma_cpct=LAB_SIGMA_CPCT * 2,
            ), "recycler", cell_key)  # fmt: skip
        truth.append(true_soh / 100)
        if progress is not None:
            progress(1)

    # A counterfeiter raises one cell's state of health by 8 points on its tag, keeping the
    # record well-formed: only the signature can tell.
    victim = images[victim_index]
    write_atomic(victim, _overstate_soh(writer.read_image(victim), 800), overwrite=True)
    report.tampered = str(victim)
    report.optimistic = "" if optimistic is None else images[optimistic].stem

    bundle = TrustBundle.load(out / "trust")
    for path in images:
        result = check_image(writer.read_image(path), bundle)
        if result.valid:
            report.verified_ok += 1
        else:
            first = result.findings[0]
            report.failed[str(path)] = f"record {first.index}: {first.message} [{first.rule}]"
    report.registry = _registry(out, bundle, images)
    report.soh = _soh(out, images, truth, set(report.failed), now, seed)
    report.seconds = time.perf_counter() - started
    return report


def _registry(out: Path, bundle: TrustBundle, images: list[Path]) -> DemoRegistry:
    """Ingest every tag and evicted journal into DIR/passport.db (SQLite) and prove one
    record, so the offline audit has something to check."""
    database = out / "passport.db"
    for stale in out.glob("passport.db*"):
        stale.unlink()
    Registry.init(f"sqlite:///{database}")
    registry = Registry(f"sqlite:///{database}", trust=bundle)
    sources, _ = read_sources([out / "images"])
    summary = registry.ingest(sources)
    info = registry.info()
    write_atomic(out / "log.pub.pem", str(info["log_public_key_pem"]).encode())
    sample = writer.read_image(images[0]).entries[-1]
    write_atomic(out / "receipt.cose", registry.prove(sample.digest))
    write_atomic(out / "record.cose", sample.raw)
    return DemoRegistry(
        database=str(database),
        stored=summary.stored,
        tree_size=summary.tree_size,
        rejected_tags=sorted(n for n in summary.rejected if n.endswith(".t5t")),
        rejected_journals=sorted(n for n in summary.rejected if not n.endswith(".t5t")),
        alerts=len(summary.alerts),
    )


def _soh(
    out: Path, images: list[Path], truth: list[float], failed: set[str], now: int, seed: int
) -> DemoSoh:
    """Fit a model on simulated reference cells of each design, pulse-test the demo cells and
    check each verified passport's last SoH claim against the measurement."""
    rng = np.random.default_rng(seed)
    folder = out / "soh"
    tables: list[str] = []
    for model_name, _, rated_text, *_rest, mohm, _life, _fade in DESIGNS:
        rated = float(rated_text)
        soh = rng.uniform(0.6, 1.02, 60)
        rows = pulse_rows(aged_cells(soh, rated, rng, r0_new=float(mohm) / 1000), rated)
        ids = [f"{model_name}-ref-{i:02d}" for i in range(len(soh))]
        text = pulse_table_csv([str(model_name)] * len(ids), ids, rows, soh=soh)
        tables.append(text if not tables else text.split("\n", 1)[1])  # one header
    reference = folder / "reference.csv"
    write_atomic(reference, "".join(tables).encode())
    model = fit_csv(reference)
    save_model(model, folder / "model.json")

    names: list[str] = []
    claims: dict[str, list[object]] = {c: [] for c in CLAIM_COLUMNS}
    U: list[np.ndarray] = []
    rated_ah: list[float] = []
    width_ms: list[float] = []
    design: list[str] = []
    for path, true in zip(images, truth, strict=True):
        image = writer.read_image(path)
        birth = image.birth.body
        assert isinstance(birth, Birth)
        rated = birth.rated_capacity_mah / 1000
        rows = pulse_rows(
            aged_cells(np.array([true]), rated, rng, r0_new=birth.initial_resistance_uohm * 1e-6),
            rated,
        )
        U.append(rows.U[0])
        rated_ah.append(rows.rated_ah[0])
        width_ms.append(rows.width_ms[0])
        design.append(birth.model)
        names.append(path.stem)
        claim = _last_claim(image, now) if str(path) not in failed else None
        for column in CLAIM_COLUMNS:
            claims[column].append(None if claim is None else claim.get(column))
        claims["initial_resistance_uohm"][-1] = birth.initial_resistance_uohm
    intake = folder / "intake.csv"
    table = Rows(np.array(U), np.array(rated_ah), np.array(width_ms))
    write_atomic(intake, pulse_table_csv(design, names, table, extra=claims).encode())
    estimates = folder / "estimates.csv"
    summary = estimate_csv(model, intake, estimates)
    with open(estimates, newline="", encoding="utf-8") as fh:
        result = list(csv.DictReader(fh))
    errors = [abs(float(r["soh"]) - t) for r, t in zip(result, truth, strict=True) if r["soh"]]
    return DemoSoh(
        model=str(folder / "model.json"),
        estimates=str(estimates),
        estimated=summary.estimated,
        mae_points=round(100 * float(np.mean(errors)), 2) if errors else float("nan"),
        flagged=[r["cell_id"] for r in result if r.get("claim_flagged") == "1"],
    )


def _last_claim(image: Image, now: int) -> dict[str, object] | None:
    """The last signed SoH in a verified image, with cycles and days since it was signed."""
    fec_now = fec_then = None
    claim: dict[str, object] | None = None
    for record in image.entries:
        values = record.body.values  # type: ignore[union-attr]
        if values.fec_deci is not None:
            fec_now = values.fec_deci / 10
        if values.soh_capacity_cpct is not None:
            fec_then = fec_now
            sigma = values.soh_sigma_cpct
            claim = {
                "claimed_soh": values.soh_capacity_cpct / 10_000,
                "claimed_soh_sigma": "" if sigma is None else sigma / 10_000,
                "days_since": round((now - record.body.time) / 86400, 2),  # type: ignore[union-attr]
            }
    if claim is not None and fec_now is not None and fec_then is not None:
        claim["fec_since"] = round(fec_now - fec_then, 1)
    return claim
