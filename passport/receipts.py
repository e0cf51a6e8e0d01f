"""COSE Receipts (RFC 9942) for the registry's RFC 9162 log, made and checked offline.

A receipt is a COSE_Sign1 by the log key whose protected header says `vds` (395) = 1
(RFC9162_SHA256) and, in CWT claims (15), the log's origin (iss) and when the tree that
includes the record was signed (iat); its unprotected `vdp` (396) holds the inclusion proof
`{-1: [bstr .cbor [tree-size, leaf-index, [+ hash]]]}`; its payload is detached: it is the
tree root, which the verifier recomputes from the record and the proof. A receipt that
verifies proves the record was in the log by `iat`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric import ed25519

from passport import cbor, cose, merkle
from passport.errors import VerificationError
from passport.records import SignedRecord

VDS = 395
VDP = 396
RFC9162_SHA256 = 1
INCLUSION_PROOFS = -1
CWT_ISS = 1
CWT_IAT = 6


@dataclass(frozen=True, slots=True)
class ReceiptInfo:
    origin: str
    tree_size: int
    leaf_index: int
    root: bytes
    logged_at: dt.datetime


def make_receipt(
    key: ed25519.Ed25519PrivateKey,
    *,
    origin: str,
    tree_size: int,
    leaf_index: int,
    proof: Sequence[bytes],
    root: bytes,
    signed_at: dt.datetime,
) -> bytes:
    protected = cbor.dumps(
        {
            cose.HDR_ALG: cose.ALG_ED25519,
            cose.HDR_CWT_CLAIMS: {CWT_ISS: origin, CWT_IAT: int(signed_at.timestamp())},
            VDS: RFC9162_SHA256,
        }
    )
    inclusion = cbor.dumps([tree_size, leaf_index, list(proof)])
    signature = cose.raw_sign(key, cose.sig_structure(protected, b"", root))
    return cbor.dumps(
        cbor2.CBORTag(18, [protected, {VDP: {INCLUSION_PROOFS: [inclusion]}}, None, signature])
    )


def _fail(reason: str) -> VerificationError:
    return VerificationError(f"receipt: {reason}", rule="log.receipt-invalid")


def read_receipt(receipt: bytes) -> tuple[cose.Sign1, int, int, list[bytes], Mapping[Any, Any]]:
    """Parse (not verify): the message, tree size, leaf index, proof and CWT claims."""
    message = cose.decode_sign1(receipt)
    if message.payload is not None:
        raise _fail("the payload must be detached (the verifier recomputes the root)")
    if message.protected.get(VDS) != RFC9162_SHA256:
        raise _fail("vds is not RFC9162_SHA256 (1)")
    claims = message.protected.get(cose.HDR_CWT_CLAIMS)
    if not isinstance(claims, Mapping) or type(claims.get(CWT_IAT)) is not int:
        raise _fail("no iat in the CWT claims")
    vdp = message.unprotected.get(VDP)
    # A tagged message decodes its contents as immutable (frozendict, tuple): accept both.
    proofs = vdp.get(INCLUSION_PROOFS) if isinstance(vdp, Mapping) else None
    if not isinstance(proofs, list | tuple) or len(proofs) != 1 or type(proofs[0]) is not bytes:
        raise _fail("vdp must hold exactly one inclusion proof")
    inclusion = cbor.loads(proofs[0], what="inclusion proof")
    if (
        type(inclusion) is not list
        or len(inclusion) != 3
        or type(inclusion[0]) is not int
        or type(inclusion[1]) is not int
        or type(inclusion[2]) is not list
        or not all(type(h) is bytes and len(h) == 32 for h in inclusion[2])
    ):
        raise _fail("inclusion proof must be [tree-size, leaf-index, [+ 32-byte hash]]")
    return message, inclusion[0], inclusion[1], list(inclusion[2]), claims


def verify_receipt(receipt: bytes, record: bytes, log_key: ed25519.Ed25519PublicKey) -> ReceiptInfo:
    """Check that `receipt` proves `record` (exact bytes) was logged; raise otherwise."""
    _, size, index, proof, claims = read_receipt(receipt)
    root = merkle.root_from_inclusion(merkle.leaf_hash(record), index, size, proof)
    try:
        cose.verify_sign1(receipt, log_key, detached_payload=root)
    except VerificationError as exc:
        raise _fail(f"signature does not verify with the log key ({exc.reason})") from None
    origin = claims.get(CWT_ISS)
    return ReceiptInfo(
        origin=origin if isinstance(origin, str) else "",
        tree_size=size,
        leaf_index=index,
        root=root,
        logged_at=dt.datetime.fromtimestamp(claims[CWT_IAT], dt.UTC),
    )


class ReceiptBook:
    """Receipts an auditor holds, as a `ReceiptLookup` for the verifier: a record counts as
    logged at the earliest `iat` among the receipts that verify for it."""

    def __init__(self, log_key: ed25519.Ed25519PublicKey, receipts: Sequence[bytes] = ()) -> None:
        self.log_key = log_key
        self.receipts = list(receipts)

    def logged_at(self, record: SignedRecord) -> dt.datetime | None:
        best: dt.datetime | None = None
        for receipt in self.receipts:
            try:
                info = verify_receipt(receipt, record.raw, self.log_key)
            except VerificationError:
                continue
            if best is None or info.logged_at < best:
                best = info.logged_at
        return best
