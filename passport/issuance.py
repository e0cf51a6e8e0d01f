"""OEM end-of-line issuance: a CSV of cells -> one signed passport image per cell.

The whole CSV is validated before anything is written, so a bad row never leaves half a batch
behind. Each cell gets an Ed25519 key (a stand-in for the key its secure element would
generate, written to a 0600 sidecar file) unless the CSV supplies the cell's public key.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from passport import ids, units
from passport._ed25519 import check_public_key
from passport._fileio import write_atomic
from passport.cose import PrivateKey
from passport.errors import DecodeError, InputError
from passport.image import Image, Profile
from passport.records import Birth, CapacityTest, Chemistry, ResistanceTest, SignedRecord
from passport.records.codec import check_body
from passport.trust import keys
from passport.trust.store import thumbprint

IMAGE_SUFFIX = ".t5t"
CELL_KEY_SUFFIX = ".cell.pem"

# column -> (help, example); optional columns are marked in OPTIONAL
COLUMNS: dict[str, tuple[str, str]] = {
    "battery_id": (
        "GS1 Digital Link URI or ISO/IEC 15459 id",
        "https://id.gs1.org/01/09506000134352/21/A0001",
    ),
    "manufacturer": ("manufacturer identifier (CWT iss)", "ACME"),
    "model": ("cell model", "ACME-21700-50E"),
    "chemistry": ("one of " + ", ".join(c.name for c in Chemistry), "NMC"),
    "rated_capacity_ah": ("rated capacity, Ah (stored in mAh)", "5.0"),
    "nominal_voltage_v": ("nominal voltage, V (stored in mV)", "3.63"),
    "min_voltage_v": ("minimum voltage, V", "2.5"),
    "max_voltage_v": ("maximum voltage, V", "4.2"),
    "initial_capacity_ah": ("measured initial capacity, Ah", "5.021"),
    "capacity_test_temp_c": ("capacity test temperature, degC (0.1)", "25"),
    "capacity_test_c_rate": ("capacity test discharge rate, C (0.01)", "0.2"),
    "initial_resistance_mohm": (
        "measured internal resistance, milliohm (stored in micro-ohm)",
        "14.2",
    ),
    "resistance_test_temp_c": ("resistance test temperature, degC (0.1)", "25"),
    "resistance_test_soc_pct": ("resistance test state of charge, %", "50"),
    "resistance_test_pulse_ms": ("resistance test pulse length, ms", "10"),
    "manufacture_date": ("YYYY-MM-DD", "2026-11-02"),
    "site": ("manufacturing site code", "DE-BER1"),
    "expected_cycle_life": ("expected cycle life, cycles", "1500"),
    "exhaustion_threshold_pct": ("capacity SoH at which the cell is exhausted, % (0.01)", "60"),
    "datasheet_sha256": ("SHA-256 (hex) of the OEM model data sheet", "9f" * 32),
    "passport_id": ("optional UUID; a random one when empty", ""),
    "cell_public_key": ("optional hex Ed25519 public key of the cell; generated when empty", ""),
}
OPTIONAL = frozenset({"passport_id", "cell_public_key"})
REQUIRED = tuple(c for c in COLUMNS if c not in OPTIONAL)


@dataclass(frozen=True, slots=True)
class CellRow:
    """One validated CSV row: everything but the signature."""

    line: int
    stem: str
    birth: Birth
    generate_key: bool


@dataclass(slots=True)
class IssueSummary:
    issued: int = 0
    profile: str = ""
    out_dir: str = ""
    birth_bytes: list[int] = field(default_factory=list)
    free_bytes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    images: list[str] = field(default_factory=list)


def example_csv(rows: int = 3) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i in range(rows):
        row = [example for _, example in COLUMNS.values()]
        row[0] = f"https://id.gs1.org/01/09506000134352/21/A{i + 1:04d}"
        writer.writerow(row)
    return out.getvalue()


def _cell(row: dict[str, str], line: int, issued_at: int) -> tuple[Birth, bool]:
    def col(name: str) -> str:
        value = (row.get(name) or "").strip()
        if not value and name not in OPTIONAL:
            raise InputError(f"column {name} is empty")
        return value

    def num(name: str, scale: int, unit: str, **kw: int | bool) -> int:
        return units.fixed(col(name), scale, unit, what=f"column {name}", **kw)  # type: ignore[arg-type]

    chem = col("chemistry").upper().replace("-", "_")
    if chem not in Chemistry.__members__:
        names = ", ".join(Chemistry.__members__)
        raise InputError(f"column chemistry: {col('chemistry')!r} is not one of {names}")
    digest = col("datasheet_sha256").lower()
    try:
        datasheet = bytes.fromhex(digest)
    except ValueError:
        datasheet = b""
    if len(datasheet) != 32:
        raise InputError("column datasheet_sha256: expected 64 hex digits")
    passport_text = col("passport_id")
    try:
        passport_id = uuid.UUID(passport_text) if passport_text else uuid.uuid4()
    except ValueError:
        raise InputError(f"column passport_id: {passport_text!r} is not a UUID") from None
    key_text = col("cell_public_key")
    if key_text:
        try:
            cell_key = bytes.fromhex(key_text)
        except ValueError:
            raise InputError("column cell_public_key: expected 64 hex digits") from None
        try:
            check_public_key(cell_key)
        except ValueError as exc:
            raise InputError(f"column cell_public_key: not a usable Ed25519 key: {exc}") from None
    else:
        cell_key = bytes(32)  # replaced by the generated key when signing
    birth = Birth(
        passport_id=passport_id,
        battery_id=ids.check_battery_id(col("battery_id")),
        manufacturer=col("manufacturer"),
        issued_at=issued_at,
        model=col("model"),
        chemistry=Chemistry[chem],
        rated_capacity_mah=num("rated_capacity_ah", 1000, "mAh", minimum=1),
        nominal_voltage_mv=num("nominal_voltage_v", 1000, "mV", minimum=1, maximum=100_000),
        min_voltage_mv=num("min_voltage_v", 1000, "mV", minimum=1, maximum=100_000),
        max_voltage_mv=num("max_voltage_v", 1000, "mV", minimum=1, maximum=100_000),
        initial_capacity_mah=num("initial_capacity_ah", 1000, "mAh", minimum=1),
        capacity_test=CapacityTest(
            temperature_dc=num(
                "capacity_test_temp_c", 10, "0.1 degC", signed=True, minimum=-1000, maximum=2000
            ),
            c_rate_centi=num("capacity_test_c_rate", 100, "0.01 C", minimum=1, maximum=0xFFFF),
        ),
        initial_resistance_uohm=num("initial_resistance_mohm", 1000, "micro-ohm", minimum=1),
        resistance_test=ResistanceTest(
            temperature_dc=num(
                "resistance_test_temp_c", 10, "0.1 degC", signed=True, minimum=-1000, maximum=2000
            ),
            soc_pct=num("resistance_test_soc_pct", 1, "%", maximum=100),
            pulse_ms=num("resistance_test_pulse_ms", 1, "ms", minimum=1),
        ),
        manufacture_date=units.parse_date(col("manufacture_date"), what="column manufacture_date"),
        site=col("site"),
        expected_cycle_life=num("expected_cycle_life", 1, "cycles", minimum=1),
        exhaustion_threshold_cpct=num("exhaustion_threshold_pct", 100, "0.01 %", maximum=10_000),
        datasheet_sha256=datasheet,
        cell_public_key=cell_key,
    )
    try:
        check_body(birth)
    except DecodeError as exc:
        raise InputError(_in_csv_terms(exc.reason)) from None
    return birth, not key_text


# How the record decoder names a field -> the CSV column(s) it comes from
_FIELD_COLUMNS = {
    "payload key 3 (model)": "column model",
    "payload key 10 (site)": "column site",
    "CWT claim iss (manufacturer)": "column manufacturer",
    "CWT claim sub (battery id)": "column battery_id",
    "payload key 6 (voltages)": "columns min_voltage_v, nominal_voltage_v, max_voltage_v",
}


def _in_csv_terms(reason: str) -> str:
    for field_name, column in _FIELD_COLUMNS.items():
        if reason.startswith(field_name):
            return column + reason[len(field_name) :]
    return reason


def read_cells(text: str, *, source: str, issued_at: int) -> list[CellRow]:
    """Parse and validate the whole CSV; raise one `InputError` listing every bad row."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(
            f"missing columns: {', '.join(missing)} (see --example-csv)", source=source
        )
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise InputError(
            f"unknown columns: {', '.join(unknown)} (see --example-csv)", source=source
        )
    rows: list[CellRow] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(f"line {line}: more fields than the header has")
            continue
        try:
            birth, generate = _cell(row, line, issued_at)
        except InputError as exc:
            errors.append(f"line {line}: {exc.reason}")
            continue
        stem = ids.file_stem(birth.battery_id)
        for key in (birth.battery_id, str(birth.passport_id), stem):
            if key in seen:
                errors.append(f"line {line}: {key} repeats line {seen[key]}")
            seen[key] = line
        rows.append(CellRow(line, stem, birth, generate))
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise InputError("invalid rows:\n  " + "\n  ".join(shown), source=source)
    if not rows:
        raise InputError("no cells in the CSV", source=source)
    return rows


def issue_batch(
    rows: Iterable[CellRow],
    *,
    oem_key: PrivateKey,
    oem_cert: x509.Certificate,
    profile: Profile,
    out_dir: str | os.PathLike[str],
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    source: str | None = None,
) -> IssueSummary:
    """Sign and write one image (and, when generated, one cell key file) per row."""
    rows = list(rows)
    out = Path(out_dir)
    if not overwrite:
        clash = [
            str(p)
            for r in rows
            for p in (out / f"{r.stem}{IMAGE_SUFFIX}", out / f"{r.stem}{CELL_KEY_SUFFIX}")
            if p.exists()
        ]
        if clash:
            raise InputError(
                f"{len(clash)} output files already exist (first: {clash[0]}); use --force"
            )
    x5t = thumbprint(oem_cert)
    summary = IssueSummary(profile=profile.name, out_dir=str(out))
    started = time.perf_counter()
    # Sign and lay out every image in memory first: a row that does not fit its tag must not
    # leave the rows before it written.
    prepared: list[tuple[CellRow, Image, ed25519.Ed25519PrivateKey | None]] = []
    errors: list[str] = []
    for row in rows:
        birth = row.birth
        cell_key = None
        if row.generate_key:
            cell_key = ed25519.Ed25519PrivateKey.generate()
            raw_key = cell_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            birth = replace(birth, cell_public_key=raw_key)
        record = SignedRecord.sign(birth, oem_key, x5t=x5t)
        try:
            prepared.append((row, Image.create(record, profile), cell_key))
        except InputError as exc:
            errors.append(f"line {row.line}: {exc.reason}")
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise InputError(
            f"rows that do not fit {profile.name} ({profile.size} B):\n  " + "\n  ".join(shown),
            source=source,
        )
    for row, image, cell_key in prepared:
        image_path = out / f"{row.stem}{IMAGE_SUFFIX}"
        if cell_key is not None:
            keys.save_private(cell_key, out / f"{row.stem}{CELL_KEY_SUFFIX}", overwrite=True)
        write_atomic(image_path, image.to_bytes(), overwrite=True)
        summary.issued += 1
        summary.birth_bytes.append(len(image.birth.raw))
        summary.free_bytes.append(image.free_bytes)
        summary.images.append(str(image_path))
        if progress is not None:
            progress(1)
    summary.seconds = time.perf_counter() - started
    return summary


def now_epoch() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())
