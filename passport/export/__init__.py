"""EU battery passport export (Regulation 2023/1542 Art. 77, Annex XIII): a verified on-cell
passport and its model's signed data sheet, as the JSON document of an industry model, cut to
what one access tier may read.

Formats: `catenax` (io.catenax.battery.battery_pass 6.1.0) and `batterypass` (the Battery Pass
1.2.0 models GeneralProductInformation, PerformanceAndDurability and Circularity, one member
each). Every exported attribute, its source, unit conversion and tier is a row of the format's
attribute table (`catenax.ATTRIBUTES`, `batterypass.ATTRIBUTES`, written out in
docs/eu-mapping.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from passport.chain import Finding, ReceiptLookup, check_records
from passport.datasheet import read_datasheet
from passport.errors import InputError, VerificationError
from passport.export import batterypass, catenax
from passport.export.context import Context, context_from_records
from passport.export.tiers import Tier
from passport.image import Image
from passport.records import Birth, SignedRecord
from passport.registry import Registry
from passport.trust.bundle import TrustBundle

FORMATS = ("catenax", "batterypass")
UNVERIFIED_WARNING = (
    "UNVERIFIED: this passport did not verify against the exporter's trust bundle; nothing in "
    "this document can be relied on"
)

__all__ = ["FORMATS", "ExportResult", "Tier", "export_cell", "export_passport", "export_records"]


@dataclass(frozen=True, slots=True)
class ExportResult:
    document: dict[str, Any]
    format: str
    tier: Tier
    verified: bool
    missing: list[str] = field(default_factory=list)  # attributes without a value
    findings: list[str] = field(default_factory=list)  # why it did not verify


def export_passport(
    image: Image,
    trust: TrustBundle,
    datasheet: bytes | None,
    *,
    fmt: str = "catenax",
    tier: Tier = Tier.PUBLIC,
    allow_unverified: bool = False,
    source: str = "image",
    registry: Registry | None = None,
) -> ExportResult:
    """Verify a tag, check the data sheet against the birth record's hash, build the document.
    Without `datasheet`, the sheet the birth record names is looked up in `registry`.

    Raises `VerificationError` for a passport that does not verify (unless
    `allow_unverified`) or a data sheet that is not the one the birth record names or not
    OEM-signed; `InputError` for a missing data sheet or an unknown format."""
    if datasheet is None and registry is not None:
        birth = image.birth.body
        assert isinstance(birth, Birth)
        datasheet = registry.datasheet(birth.datasheet_sha256)
    return export_records(
        image.records, trust, datasheet, fmt=fmt, tier=tier, allow_unverified=allow_unverified,
        source=source, profile=image.profile.name,
    )  # fmt: skip


def export_cell(
    registry: Registry,
    ref: str,
    trust: TrustBundle,
    datasheet: bytes | None = None,
    *,
    fmt: str = "catenax",
    tier: Tier = Tier.PUBLIC,
    allow_unverified: bool = False,
) -> ExportResult:
    """The same from the registry's full history of one passport (`ref`: battery id, passport
    id or birth SHA-256), receipts counted; a passport the registry flagged (fork or clone
    alert) does not count as verified. The data sheet comes from the registry unless given."""
    records, flagged = registry.history(ref)
    birth = records[0].body
    assert isinstance(birth, Birth)
    if datasheet is None:
        datasheet = registry.datasheet(birth.datasheet_sha256)
    flag = Finding("registry.flagged", None,
                   "the registry has flagged this passport (fork or clone alert)")  # fmt: skip
    return export_records(
        records, trust, datasheet, fmt=fmt, tier=tier, allow_unverified=allow_unverified,
        source=f"registry passport {ref}", receipts=registry.receipt_lookup(),
        extra_findings=[flag] if flagged else [],
    )  # fmt: skip


def export_records(
    records: Sequence[SignedRecord],
    trust: TrustBundle,
    datasheet: bytes | None,
    *,
    fmt: str = "catenax",
    tier: Tier = Tier.PUBLIC,
    allow_unverified: bool = False,
    source: str = "registry",
    profile: str = "",
    receipts: ReceiptLookup | None = None,
    extra_findings: Sequence[Finding] = (),
) -> ExportResult:
    """The same from a history as records (a tag's, or the registry's full chain)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    report = check_records(records, trust, receipts=receipts)
    found = [*report.findings, *extra_findings]
    findings = [f"{f.rule}: {f.message}" for f in found]
    if found and not allow_unverified:
        first = found[0]
        raise VerificationError(
            f"the passport does not verify, nothing exported: {first.message}",
            rule=first.rule, source=source,
        )  # fmt: skip
    birth = records[0].body
    assert isinstance(birth, Birth)
    if datasheet is None:
        raise InputError(
            f"no data sheet: the birth record names {birth.datasheet_sha256.hex()}; give the "
            "signed sheet (--datasheet) or a registry that holds it (--db)",
            source=source,
        )
    sheet = read_datasheet(
        datasheet, trust, source="data sheet", expect_sha256=birth.datasheet_sha256
    )
    ctx: Context = context_from_records(
        records, profile, sheet.fields, sheet_sha256=birth.datasheet_sha256.hex(),
        verified=not found,
    )  # fmt: skip
    build = batterypass.build if fmt == "batterypass" else catenax.build
    document, missing = build(ctx, tier)
    if found:
        document["unverifiedWarning"] = UNVERIFIED_WARNING
    return ExportResult(document, fmt, tier, not found, missing, findings)
