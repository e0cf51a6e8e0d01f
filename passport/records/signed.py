"""Signed records: the safe recipe over `passport.cose` for the on-cell format.

A record is a tagged COSE_Sign1 whose every byte is fixed by its content: deterministic CBOR
throughout, `alg` only in the protected header, an empty unprotected header, a 64-byte
signature. Its identity is the SHA-256 of those exact bytes (never of the signature alone:
ECDSA signatures are malleable).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from passport import cbor, cose
from passport.errors import DecodeError, InputError, SignatureError
from passport.records.codec import decode_body, decode_kind, encode_body
from passport.records.model import Body, Kind

#: No record may exceed this many bytes (half the largest memory profile).
MAX_RECORD_BYTES = 4096

_COSE_TAG_BYTE = 0xD2  # tag 18, one-byte head
_ED25519_PUBLIC = type(ed25519.Ed25519PrivateKey.generate().public_key())
_ED25519_ALGS = frozenset({cose.ALG_ED25519, cose.ALG_EDDSA})
_P256_ALGS = frozenset({cose.ALG_ESP256, cose.ALG_ES256})
_RECORD_ALGS = _ED25519_ALGS | _P256_ALGS
_X5T_SIZES = {cose.ALG_SHA256_64: 8, cose.ALG_SHA256: 32}

# Protected header labels each kind may carry (besides alg)
_BIRTH_LABELS = frozenset({cose.HDR_ALG, cose.HDR_CWT_CLAIMS, cose.HDR_X5T})
_ENTRY_LABELS = frozenset({cose.HDR_ALG, cose.HDR_X5T})
_CHECKPOINT_LABELS = frozenset({cose.HDR_ALG})

X5t = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """One decoded on-cell record. Build with `from_bytes` or `sign`; `raw` is authoritative."""

    raw: bytes
    body: Body
    alg: int
    x5t: X5t | None  # signer certificate thumbprint; None when the cell's own key signs
    protected_bytes: bytes
    payload_bytes: bytes
    signature: bytes
    digest: bytes  # SHA-256 of raw

    @property
    def kind(self) -> Kind:
        return self.body.kind

    def to_bytes(self) -> bytes:
        return self.raw

    @classmethod
    def from_bytes(cls, raw: bytes) -> SignedRecord:
        """Decode strictly; raises `DecodeError` (never another exception) on any fault."""
        raw = bytes(raw)
        if len(raw) > MAX_RECORD_BYTES:
            raise DecodeError(
                f"record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}",
                rule="record.too-large",
            )
        if not raw or raw[0] != _COSE_TAG_BYTE:
            raise DecodeError(
                "record must start with the COSE_Sign1 tag (18)", rule="record.untagged"
            )
        outer = cbor.decode_unchecked(raw[1:], max_depth=2)
        try:
            protected_bytes, _unprotected, payload_bytes, signature = outer
            # Rebuilding the only bytes [bstr, {}, bstr, bstr .size 64] can be and comparing
            # proves the whole envelope (types, empty unprotected map, signature length,
            # shortest heads, no trailing bytes) in one step.
            exact = raw == _encode_outer(protected_bytes, payload_bytes, signature)
        except (TypeError, ValueError):
            exact = False
        if not exact:
            raise _envelope_fault(raw, outer)
        payload = _payload(payload_bytes)
        kind = decode_kind(payload)
        alg, x5t, claims = _header_facts(kind, protected_bytes)
        body = decode_body(kind, payload, claims)
        digest = hashlib.sha256(raw).digest()
        return cls(raw, body, alg, x5t, protected_bytes, payload_bytes, signature, digest)

    @classmethod
    def sign(cls, body: Body, key: cose.PrivateKey, *, x5t: X5t | None = None) -> SignedRecord:
        """Encode and sign `body`. Actors pass the `x5t` of their certificate; the cell does not."""
        payload, header = encode_body(body)
        if x5t is not None:
            header[cose.HDR_X5T] = [x5t[0], x5t[1]]
        try:
            raw = cose.sign1(cbor.dumps(payload), key, protected=header)
            # Decoding what we just made guarantees we never emit a record we would refuse.
            return cls.from_bytes(raw)
        except DecodeError as exc:
            raise InputError(
                f"refusing to sign an invalid {body.kind.name.lower()} record: {exc}"
            ) from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"cannot encode {body.kind.name.lower()} record: {exc}") from None

    def verify(self, public_key: cose.PublicKey) -> None:
        """Check the signature with `public_key`; raises `SignatureError`."""
        tbs = cose.sig_structure(self.protected_bytes, b"", self.payload_bytes)
        if type(public_key) is _ED25519_PUBLIC and self.alg in _ED25519_ALGS:
            # The common case (a cell's entry), without the generic dispatch: decoding already
            # fixed the algorithm and the 64-byte signature length.
            try:
                public_key.verify(self.signature, tbs)
            except InvalidSignature:
                raise SignatureError(
                    "signature does not verify", rule="cose.signature-invalid"
                ) from None
            return
        cose.verify_signature(self.alg, public_key, tbs, self.signature)


def _envelope_fault(raw: bytes, outer: object) -> DecodeError:
    """Name what is wrong with a COSE envelope that is not exactly what we write."""
    if type(outer) is not list or len(outer) != 4:
        return DecodeError("COSE_Sign1 must be an array of 4 items", rule="cose.malformed")
    protected_bytes, unprotected, payload_bytes, signature = outer
    if type(protected_bytes) is not bytes or type(payload_bytes) is not bytes:
        return DecodeError(
            "protected header and payload must be byte strings", rule="cose.malformed"
        )
    if type(signature) is not bytes:
        return DecodeError("signature must be a byte string", rule="cose.malformed")
    if type(unprotected) is not dict or unprotected:
        return DecodeError(
            "unprotected header must be empty on the cell", rule="record.unprotected"
        )
    if len(signature) != 64:
        return DecodeError(
            f"signature must be 64 bytes, got {len(signature)}", rule="cose.signature-length"
        )
    cbor.loads(raw[1:], what="COSE_Sign1")  # raises, naming the exact encoding fault
    return DecodeError("COSE_Sign1 is not deterministically encoded", rule="cbor.non-deterministic")


def _encode_outer(protected_bytes: bytes, payload_bytes: bytes, signature: bytes) -> bytes:
    """The only byte string a record with these three parts can be."""
    return b"".join(
        (
            b"\xd2\x84",
            cbor.head(2, len(protected_bytes)),
            protected_bytes,
            b"\xa0",
            cbor.head(2, len(payload_bytes)),
            payload_bytes,
            b"\x58\x40",
            signature,
        )
    )


def _payload(payload_bytes: bytes) -> dict[Any, Any]:
    """Decode a payload map and prove its bytes deterministic.

    Payload maps are flat (their values are integers, strings and arrays, never maps or floats:
    the codec refuses anything else), so increasing unsigned-int keys plus an order-preserving
    re-encode that reproduces the bytes is the whole 4.2.1 check; `cbor.loads` names the fault
    otherwise.
    """
    payload = cbor.decode_unchecked(payload_bytes, max_depth=3)
    if type(payload) is dict:
        last = -1
        for key in payload:
            if type(key) is not int or key <= last:
                break
            last = key
        else:
            if cbor2.dumps(payload) == payload_bytes:
                return payload
    result = cbor.loads(payload_bytes, what="payload")
    if type(result) is not dict:
        raise DecodeError("payload must be a map", rule="record.malformed")
    _int_keys(result, "payload", "record.unknown-field")
    return result  # deterministic after all (e.g. a map nested in a value): the codec decides


def _protected(protected_bytes: bytes) -> dict[Any, Any]:
    """Decode a protected header strictly."""
    protected = cbor.loads(protected_bytes, what="protected header")
    if type(protected) is not dict:
        raise DecodeError("protected header must be a map", rule="cose.malformed")
    _int_keys(protected, "protected header", "cose.malformed")
    return protected


def _int_keys(mapping: dict[Any, Any], what: str, rule: str) -> None:
    """Python equates True, 1 and 1.0: only exact ints may be keys of our maps."""
    odd = [k for k in mapping if type(k) is not int]
    if odd:
        raise DecodeError(f"{what} has keys that are not integers: {odd!r}", rule=rule)


@functools.lru_cache(maxsize=512)
def _header_facts(kind: Kind, protected_bytes: bytes) -> tuple[int, X5t | None, object]:
    """(alg, x5t, CWT claims) of a protected header that suits `kind`. Cached: a cell writes
    the same header all its life, so most records skip decoding it."""
    protected = _protected(protected_bytes)
    alg = protected.get(cose.HDR_ALG)
    if type(alg) is not int or alg not in _RECORD_ALGS:
        raise DecodeError(
            f"record algorithm {cose.alg_name(alg)} is not one of Ed25519 (-19, -8) or "
            "P-256 (-9, -7)",
            rule="cose.alg-unsupported",
        )
    return alg, _check_header(kind, protected), protected.get(cose.HDR_CWT_CLAIMS)


def _check_header(kind: Kind, protected: dict[Any, Any]) -> X5t | None:
    if cose.HDR_CRIT in protected:
        raise DecodeError("records define no critical headers (crit)", rule="cose.crit-unknown")
    allowed = (
        _BIRTH_LABELS
        if kind is Kind.BIRTH
        else _CHECKPOINT_LABELS
        if kind is Kind.CHECKPOINT
        else _ENTRY_LABELS
    )
    unknown = protected.keys() - allowed
    if unknown:
        raise DecodeError(
            f"protected header labels {sorted(unknown, key=repr)} are not allowed in a "
            f"{kind.name.lower()} record",
            rule="record.header",
        )
    if kind is Kind.BIRTH and (
        cose.HDR_X5T not in protected or cose.HDR_CWT_CLAIMS not in protected
    ):
        raise DecodeError("birth record needs x5t and CWT claims", rule="record.header")
    if cose.HDR_X5T not in protected:
        return None
    x5t = parse_x5t(protected[cose.HDR_X5T])
    if x5t is None:
        raise DecodeError(
            "x5t must be [-15, 8-byte hash] or [-16, 32-byte hash]", rule="record.header"
        )
    return x5t


def parse_x5t(value: Any) -> X5t | None:
    """A COSE x5t header value as (alg, hash): [-15, 8 bytes] or [-16, 32 bytes]; None for
    anything else (each caller says which rule that breaks)."""
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not int
        or value[0] not in _X5T_SIZES
        or type(value[1]) is not bytes
        or len(value[1]) != _X5T_SIZES[value[0]]
    ):
        return None
    return (value[0], value[1])


def is_cell_signed(record: SignedRecord) -> bool:
    return record.x5t is None
