"""History verification: who signed each record, were they allowed to, does it hang together.

`check_records` walks a passport's records in order (birth first; then entries and checkpoints
as on a tag, or a full history as the registry keeps it) and returns a `Report` listing every
failed rule with the record it concerns. `verify_image` is the strict form: it returns the
report of a valid image or raises `VerificationError` for the first finding. The rules and their
ids are listed in `RULES` (and in the README).

Signature rules use the trust bundle's certificates (found by x5t, validated to an anchor, role
from the EKU, revocation from the CRLs) and its policy (write permissions, status transitions,
SoH tolerance, and the time question: see `passport/trust/policy.toml`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from passport.chain._walker import Walker, cell_public_key
from passport.chain.report import RULES, Finding, ReceiptLookup, RecordInfo, Report
from passport.errors import DecodeError
from passport.image import Image
from passport.records import Checkpoint, Entry, Kind, SignedRecord
from passport.trust.bundle import TrustBundle

__all__ = [
    "RULES",
    "Finding",
    "ReceiptLookup",
    "RecordInfo",
    "Report",
    "cell_public_key",
    "check_image",
    "check_image_bytes",
    "check_records",
    "verify_image",
]


def check_records(
    records: Sequence[SignedRecord],
    trust: TrustBundle,
    *,
    now: dt.datetime | None = None,
    receipts: ReceiptLookup | None = None,
) -> Report:
    """Check a history: a birth record, then entries and checkpoints in the order written."""
    walker = Walker(trust, now, receipts)
    sha = trust.policy.sha256
    if not records or records[0].kind is not Kind.BIRTH:
        walker.fail("image.order", 0, "a passport starts with its birth record")
        return Report(tuple(walker.findings), policy_sha256=sha)
    birth, key, state = walker.birth(records[0])
    for index, record in enumerate(records[1:], start=1):
        if isinstance(record.body, Checkpoint):
            walker.checkpoint(record, index, records[0].digest, key, state)
        elif isinstance(record.body, Entry):
            walker.entry(record, index, key, state)
        else:
            walker.fail("image.order", index, "a second birth record inside a history")
    return Report(tuple(walker.findings), tuple(walker.infos), birth, sha)


def check_image(image: Image, trust: TrustBundle, **kwargs: Any) -> Report:
    return check_records(image.records, trust, **kwargs)


def check_image_bytes(data: bytes, trust: TrustBundle, **kwargs: Any) -> Report:
    """Decode and check; a tag that does not decode is a report with that one finding."""
    try:
        image = Image.from_bytes(data)
    except DecodeError as exc:
        return Report((Finding(exc.rule, None, exc.reason),), policy_sha256=trust.policy.sha256)
    return check_image(image, trust, **kwargs)


def verify_image(image: Image, trust: TrustBundle, **kwargs: Any) -> Report:
    """The strict form: the report of a valid image, or `VerificationError` (first finding)."""
    report = check_image(image, trust, **kwargs)
    report.raise_first()
    return report
