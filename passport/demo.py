"""The end-to-end demo behind `make demo`: issue, age and verify a small batch of passports.

It uses the same library calls as the CLI commands: an OEM key and self-signed certificate,
a CSV batch through `issuance`, years of cell telemetry through `writer.append_entry` (so small
tags evict behind checkpoints), one deliberately tampered image, and `chain.verify_image` over
all of them. Later issues grow it into the full recycler intake.
"""

from __future__ import annotations

import csv
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
from passport.chain import verify_image
from passport.errors import VerificationError
from passport.image import PROFILES, Image
from passport.records import Entry, Kind, SignedRecord, SohMethod, Values
from passport.records.codec import encode_body
from passport.trust import keys
from passport.trust.store import CertificateStore

# (model, chemistry, rated Ah, nominal V, min V, max V, mOhm, cycle life, SoH fade %/1000 FEC)
DESIGNS = (
    ("ACME-21700-50E", "NMC", "5.0", "3.63", "2.5", "4.2", "14.2", 1500, 12.0),
    ("ACME-LFP-280", "LFP", "280", "3.2", "2.5", "3.65", "0.18", 6000, 3.5),
    ("ACME-NCA-18650", "NCA", "3.4", "3.6", "2.5", "4.2", "28", 800, 20.0),
)


@dataclass(slots=True)
class DemoReport:
    out_dir: str
    cells: int = 0
    entries: int = 0
    evicted: int = 0
    verified_ok: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    tampered: str = ""
    seconds: float = 0.0
    profiles: dict[str, int] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        return set(self.failed) == {self.tampered} and self.verified_ok == self.cells - 1


def _cells_csv(count: int, rng: random.Random) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(issuance.REQUIRED)
    for i in range(count):
        model, chem, ah, vnom, vmin, vmax, mohm, life, _ = DESIGNS[i % len(DESIGNS)]
        initial = f"{float(ah) * rng.uniform(1.0, 1.03):.3f}"
        sheet = hashlib.sha256(f"datasheet {model} rev 3".encode()).hexdigest()
        w.writerow([
            f"https://id.gs1.org/01/09506000134352/21/D{i + 1:05d}", "ACME", model, chem, ah,
            vnom, vmin, vmax, initial, "25", "0.2", mohm, "25", "50", "10", "2026-03-02",
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
    oem_key = keys.generate("p256")
    cert = keys.self_signed_certificate(oem_key, "ACME Cells OEM (demo)")  # type: ignore[arg-type]
    keys.save_private(oem_key, out / "oem.pem", overwrite=True)
    write_atomic(out / "oem.cert.pem", keys.cert_pem(cert), overwrite=True)

    start = int(time.time()) - years * 365 * 86400
    rows = issuance.read_cells(_cells_csv(cells, rng), source="demo", issued_at=start)
    profiles = list(PROFILES.values())[1:]  # 512 B tags hold only birth + one entry
    images: list[Path] = []
    for index, row in enumerate(rows):
        profile = profiles[index % len(profiles)]
        summary = issuance.issue_batch(
            [row],
            oem_key=oem_key,
            oem_cert=cert,
            profile=profile,
            out_dir=out / "passports",
            overwrite=True,
        )
        images.append(Path(summary.images[0]))
        report.profiles[profile.name] = report.profiles.get(profile.name, 0) + 1
    report.cells = len(images)

    for index, path in enumerate(images):
        fade = DESIGNS[index % len(DESIGNS)][8]
        cell_key = keys.load_private(path.with_name(path.stem + issuance.CELL_KEY_SUFFIX))
        rated_ah = float(DESIGNS[index % len(DESIGNS)][2])
        fec = ah = 0.0
        for quarter in range(1, years * 4 + 1):
            cycles = rng.uniform(40, 90)  # full equivalent cycles this quarter
            fec += cycles
            ah += rated_ah * 2 * cycles  # charge + discharge throughput
            soh = max(50.0, 100.0 - fade * fec / 1000 + rng.gauss(0, 0.3))
            result = writer.append_entry(
                path,
                kind=Kind.TELEMETRY,
                time=start + quarter * 91 * 86400,
                values=Values(
                    fec_deci=round(fec * 10),
                    ah_deci=round(ah * 10),
                    wh=round(ah * 3.6),
                    soh_capacity_cpct=round(soh * 100),
                    soh_method=SohMethod.BMS_ESTIMATE,
                    minutes_hot=quarter * rng.randint(0, 5),
                ),
                signer=cell_key,
            )
            report.entries += 1
            report.evicted += len(result.evicted)
        if progress is not None:
            progress(1)

    # A counterfeiter raises one cell's state of health by 8 points on its tag, keeping the
    # record well-formed: only the signature can tell.
    victim = images[len(images) // 2]
    write_atomic(victim, _overstate_soh(writer.read_image(victim), 800), overwrite=True)
    report.tampered = str(victim)

    store = CertificateStore([cert])
    for path in images:
        try:
            verify_image(writer.read_image(path), store)
            report.verified_ok += 1
        except VerificationError as exc:
            report.failed[str(path)] = f"{exc.reason} [{exc.rule}]"
    report.seconds = time.perf_counter() - started
    return report
