"""The end-to-end demo behind `make demo`: a PKI, a batch of cells, their lives, verification.

It leaves, under the output directory:

- `trust/`: the trust bundle (roots, intermediates, actor certificates, CRLs, policy.toml);
- `keys/`, `ca/`: the actors' and CAs' keys (a demo PKI: keys sit next to the certificates);
- `images/`: one tag image per cell (and `<id>.cell.pem`, the virtual cell's key), whose
  history was written by the cell (quarterly telemetry), an accredited tester (yearly SoH
  measurements) and, for some, a recycler (intake);
- one image tampered on purpose (a raised SoH in an otherwise well-formed record).

- `passport.db`: the registry (SQLite) holding every record that verified, its log, and
  `log.pub.pem`, `record.cose`, `receipt.cose` for an offline audit of one record;

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

from passport import cbor, issuance, writer
from passport._fileio import write_atomic
from passport.chain import check_image
from passport.image import PROFILES, Image
from passport.records import Entry, Event, Kind, SignedRecord, SohMethod, Values
from passport.records.codec import encode_body
from passport.registry import Registry, read_sources
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


@dataclass(slots=True)
class DemoReport:
    out_dir: str
    cells: int = 0
    entries: dict[str, int] = field(default_factory=dict)  # by signer
    evicted: int = 0
    verified_ok: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    tampered: str = ""
    seconds: float = 0.0
    profiles: dict[str, int] = field(default_factory=dict)
    registry: DemoRegistry | None = None

    @property
    def as_expected(self) -> bool:
        return (
            set(self.failed) == {self.tampered}
            and self.verified_ok == self.cells - 1
            and self.registry is not None
            and self.registry.rejected_tags == [self.tampered]
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
            write(path, Kind.TELEMETRY, at, Values(
                fec_deci=round(fec * 10), ah_deci=round(ah * 10), wh=round(ah * 3.6),
                soh_capacity_cpct=round((true_soh + rng.gauss(0, 0.3)) * 100),
                soh_method=SohMethod.BMS_ESTIMATE, soh_sigma_cpct=BMS_SIGMA_CPCT,
                minutes_hot=hot, deep_discharges=deep, events=event,
            ), "cell", cell_key)  # fmt: skip
            if quarter % 4 == 0:  # the yearly laboratory capacity test
                write(path, Kind.MEASUREMENT, at + 7 * 86400, Values(
                    soh_capacity_cpct=round((true_soh + rng.gauss(0, 0.2)) * 100),
                    soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=LAB_SIGMA_CPCT,
                ), "tester", cell_key)  # fmt: skip
        if index % 2 == 0:  # retired: the recycler's intake record
            write(path, Kind.INTAKE, now - 86400, Values(
                soh_capacity_cpct=round((true_soh + rng.gauss(0, 0.4)) * 100),
                soh_method=SohMethod.PULSE_TEST, soh_sigma_cpct=LAB_SIGMA_CPCT * 2,
            ), "recycler", cell_key)  # fmt: skip
        if progress is not None:
            progress(1)

    # A counterfeiter raises one cell's state of health by 8 points on its tag, keeping the
    # record well-formed: only the signature can tell.
    victim = images[len(images) // 2]
    write_atomic(victim, _overstate_soh(writer.read_image(victim), 800), overwrite=True)
    report.tampered = str(victim)

    bundle = TrustBundle.load(out / "trust")
    for path in images:
        result = check_image(writer.read_image(path), bundle)
        if result.valid:
            report.verified_ok += 1
        else:
            first = result.findings[0]
            report.failed[str(path)] = f"record {first.index}: {first.message} [{first.rule}]"
    report.registry = _registry(out, bundle, images)
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
