"""What a verification found: rule ids, findings per record, and the report."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from passport.errors import ChainError, SignatureError, VerificationError
from passport.records import Birth, SignedRecord

#: rule id -> what it checks. Decoding rules (cbor.*, cose.*, record.*, image.*) are listed in
#: the README next to these.
RULES: dict[str, str] = {
    "chain.birth-signature": "the birth record verifies with the certificate its x5t names",
    "chain.cell-key": "the birth record certifies a sound Ed25519 cell key",
    "chain.entry-signature": "an entry verifies with the cell key, or with the certificate its "
    "x5t names",
    "chain.checkpoint-signature": "a checkpoint verifies with the cell key",
    "chain.checkpoint-birth": "a checkpoint names the SHA-256 of this passport's birth record",
    "chain.checkpoint-mismatch": "a checkpoint's count, head, time and values match the entries "
    "it stands for",
    "chain.prev-mismatch": "an entry's prev is the SHA-256 of the record before it",
    "chain.seq-gap": "an entry's seq is the previous seq + 1 (the first entry is 1)",
    "chain.time-backwards": "no record claims a time before the record it follows",
    "chain.time-future": "no record claims a time later than the verifier's clock allows",
    "chain.counter-decreased": "cumulative counters (cycles, throughput, event counts, minutes "
    "at extreme temperature) never decrease",
    "chain.soh-rise": "SoH never rises beyond the stated uncertainty except by remanufacture",
    "chain.status-transition": "status changes follow the policy's allowed transitions",
    "policy.write-denied": "the signer's role may write this kind of record",
    "policy.lineage": "lineage parents come from a role and with a status the policy allows",
    "trust.cert-unknown": "the certificate an x5t names is in the trust bundle",
    "trust.chain-invalid": "the signer's certificate chains to a trust anchor",
    "trust.signer-expired": "the record's claimed time lies within its signer's certificate "
    "validity",
    "trust.signer-revoked": "the record's claimed time is before its signer's revocation",
    "trust.revoked-unproven": "a record of a signer revoked for key compromise (or an "
    "unspecified reason) has a receipt proving it was logged before the revocation",
    "trust.expired-unproven": "a record of a signer whose certificate has expired has a receipt "
    "proving it was logged while it was valid (when the policy asks for one)",
}


class ReceiptLookup(Protocol):
    """Where proof of logging comes from: `passport.receipts.ReceiptBook` (receipts an auditor
    holds, verified with the log key) or the registry's own log."""

    def logged_at(self, record: SignedRecord) -> dt.datetime | None:
        """When `record` was logged, as proven (None when nothing proves it)."""


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    index: int | None  # record position (0 = birth); None: the passport as a whole
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "record": self.index, "message": self.message}


@dataclass(frozen=True, slots=True)
class RecordInfo:
    index: int
    kind: str
    seq: int | None
    time: int
    signer: str  # "cell", "<role>: <subject>", or "?" when it could not be established
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "record": self.index, "kind": self.kind, "seq": self.seq, "time": self.time,
            "signer": self.signer, "sha256": self.sha256,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Report:
    """Everything a verifier found about one passport. `valid` when nothing was found."""

    findings: tuple[Finding, ...]
    records: tuple[RecordInfo, ...] = ()
    birth: Birth | None = None
    policy_sha256: str = ""

    @property
    def valid(self) -> bool:
        return not self.findings

    def raise_first(self) -> None:
        """Raise the first finding as `SignatureError` (signatures), `ChainError` (history
        rules) or `VerificationError` (anything else)."""
        if self.findings:
            first = self.findings[0]
            where = f"record {first.index}: " if first.index is not None else ""
            cls: type[VerificationError] = VerificationError
            if first.rule.startswith("cose.") or first.rule.endswith("-signature"):
                cls = SignatureError
            elif first.rule.startswith("chain."):
                cls = ChainError
            raise cls(where + first.message, rule=first.rule)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "valid": self.valid,
            "failures": [f.to_dict() for f in self.findings],
        }
        if self.birth is not None:
            out["battery_id"] = self.birth.battery_id
            out["passport_id"] = str(self.birth.passport_id)
        out["records"] = [r.to_dict() for r in self.records]
        out["policy_sha256"] = self.policy_sha256
        return out
