"""History verification of a passport image: signatures and hash links.

`verify_image` returns a `VerifiedPassport` or raises a `VerificationError` whose `rule` names
what failed; it never returns a negative result. This issue's rules (signatures, `prev`/`seq`
links, checkpoint binding) are listed in `RULES`; the trust model adds roles, revocation and the
monotonicity rules on top.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519

from passport._ed25519 import check_public_key
from passport.errors import ChainError, SignatureError, VerificationError
from passport.image import Image
from passport.records import Birth, Checkpoint, Entry, SignedRecord
from passport.trust.store import CertificateStore

#: rule id -> what it checks (documented in README's rule table)
RULES: dict[str, str] = {
    "chain.birth-signature": "the birth record verifies with the certificate its x5t names",
    "chain.cell-key": "the birth record certifies a valid Ed25519 cell key",
    "chain.entry-signature": "each entry verifies with the cell key, or with the certificate "
    "its x5t names",
    "chain.checkpoint-signature": "a checkpoint verifies with the cell key",
    "chain.checkpoint-birth": "a checkpoint names the SHA-256 of this image's birth record",
    "chain.prev-mismatch": "each entry's prev is the SHA-256 of the record before it "
    "(the birth record, or the last entry a checkpoint vouches for)",
    "chain.seq-gap": "each entry's seq is the previous seq + 1 (the first entry is 1)",
    "trust.cert-unknown": "a certificate named by x5t is available to the verifier",
}


@dataclass(frozen=True, slots=True)
class VerifiedPassport:
    """An image whose every record verified and linked."""

    image: Image
    birth: Birth
    signers: tuple[str, ...]  # per record in image order: "cell" or the signer's subject

    @property
    def records(self) -> tuple[SignedRecord, ...]:
        return self.image.records


def _signer_subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or cert.serial_number.__str__()


def _verify_with_certificate(
    record: SignedRecord, store: CertificateStore, rule: str, what: str
) -> str:
    assert record.x5t is not None
    candidates = store.find(record.x5t)
    last: SignatureError | None = None
    for cert in candidates:
        try:
            record.verify(cert.public_key())  # type: ignore[arg-type]
            return _signer_subject(cert)
        except SignatureError as exc:
            last = exc
    assert last is not None
    raise SignatureError(f"{what}: {last.reason}", rule=rule) from None


def cell_public_key(birth: Birth) -> ed25519.Ed25519PublicKey:
    """The cell key the birth record certifies, refused unless it is a sound Ed25519 point."""
    try:
        check_public_key(birth.cell_public_key)
        return ed25519.Ed25519PublicKey.from_public_bytes(birth.cell_public_key)
    except ValueError as exc:
        raise ChainError(
            f"the birth record certifies an unusable cell key: {exc}", rule="chain.cell-key"
        ) from None


def verify_image(image: Image, store: CertificateStore) -> VerifiedPassport:
    """Verify every signature and link of `image`; raise `VerificationError` on the first fault."""
    birth_record = image.birth
    birth = birth_record.body
    assert isinstance(birth, Birth)
    signers = [
        _verify_with_certificate(birth_record, store, "chain.birth-signature", "birth record")
    ]
    cell_key = cell_public_key(birth)

    seq, prev = 1, birth_record.digest
    if image.checkpoint is not None:
        checkpoint = image.checkpoint.body
        assert isinstance(checkpoint, Checkpoint)
        _verify_cell(image.checkpoint, cell_key, "chain.checkpoint-signature", "checkpoint")
        if checkpoint.birth != birth_record.digest:
            raise ChainError(
                "checkpoint belongs to another passport (its birth hash differs)",
                rule="chain.checkpoint-birth",
            )
        signers.append("cell")
        seq, prev = checkpoint.count + 1, checkpoint.head

    for record in image.entries:
        entry = record.body
        assert isinstance(entry, Entry)
        where = f"entry seq {entry.seq} (record {len(signers)})"
        if entry.prev != prev:
            raise ChainError(
                f"{where}: prev {entry.prev.hex()[:16]}... is not the hash of the record before "
                f"it ({prev.hex()[:16]}...)",
                rule="chain.prev-mismatch",
            )
        if entry.seq != seq:
            raise ChainError(f"{where}: expected seq {seq}", rule="chain.seq-gap")
        if record.x5t is None:
            _verify_cell(record, cell_key, "chain.entry-signature", where)
            signers.append("cell")
        else:
            signers.append(_verify_with_certificate(record, store, "chain.entry-signature", where))
        seq, prev = entry.seq + 1, record.digest
    return VerifiedPassport(image, birth, tuple(signers))


def _verify_cell(record: SignedRecord, key: ed25519.Ed25519PublicKey, rule: str, what: str) -> None:
    try:
        record.verify(key)
    except VerificationError as exc:
        raise SignatureError(f"{what}: {exc.reason} (cell key)", rule=rule) from None
