"""COSE_Sign1 (RFC 9052) with cbor2 and cryptography.

This is the primitive layer: it signs and verifies single-signer messages and nothing more. It
does not decide which key is the right one; the record layer (`passport.records`) is the safe
recipe that binds keys to records and enforces the on-cell format.

Algorithms are bound to the key type. We emit the fully-specified identifiers of RFC 9864
(Ed25519 -19, ESP256 -9) and accept the polymorphic ones other systems still use (EdDSA -8,
ES256 -7). For interoperability, `verify_sign1` also verifies Ed448 and P-384 (ES384 / ESP384).
ES512 and anything else are refused, never guessed at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from passport import cbor
from passport.errors import DecodeError, InputError, SignatureError

__all__ = [
    "ALG_ED25519",
    "ALG_EDDSA",
    "ALG_ES256",
    "ALG_ESP256",
    "HDR_ALG",
    "HDR_CRIT",
    "HDR_CWT_CLAIMS",
    "HDR_X5T",
    "PrivateKey",
    "PublicKey",
    "Sign1",
    "alg_for_key",
    "alg_name",
    "decode_sign1",
    "sig_structure",
    "sign1",
    "verify_sign1",
    "verify_signature",
    "x5t",
]

COSE_SIGN1_TAG = 18

# Header labels (IANA COSE Header Parameters)
HDR_ALG = 1
HDR_CRIT = 2
HDR_CONTENT_TYPE = 3
HDR_KID = 4
HDR_CWT_CLAIMS = 15  # RFC 9597
HDR_X5CHAIN = 33  # RFC 9360
HDR_X5T = 34  # RFC 9360

# Algorithms (IANA COSE Algorithms; RFC 9053, RFC 9864)
ALG_EDDSA = -8
ALG_ED25519 = -19
ALG_ED448 = -53
ALG_ES256 = -7
ALG_ESP256 = -9
ALG_ES384 = -35
ALG_ESP384 = -48
ALG_ES512 = -36
ALG_ESP512 = -52
ALG_SHA256_64 = -15  # x5t hash algorithm: SHA-256 truncated to 64 bits
ALG_SHA256 = -16

_ALG_NAMES = {
    ALG_EDDSA: "EdDSA",
    ALG_ED25519: "Ed25519",
    ALG_ED448: "Ed448",
    ALG_ES256: "ES256",
    ALG_ESP256: "ESP256",
    ALG_ES384: "ES384",
    ALG_ESP384: "ESP384",
    ALG_ES512: "ES512",
    ALG_ESP512: "ESP512",
}
_REFUSED_ALGS = frozenset({ALG_ES512, ALG_ESP512})

#: Header labels `verify_sign1` itself understands (for `crit` processing).
UNDERSTOOD_LABELS = frozenset({HDR_ALG, HDR_CRIT, HDR_CONTENT_TYPE, HDR_KID})

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | ec.EllipticCurvePublicKey


def alg_name(alg: object) -> str:
    return _ALG_NAMES.get(alg, repr(alg)) if type(alg) is int else repr(alg)


@dataclass(frozen=True, slots=True)
class Sign1:
    """A decoded COSE_Sign1 message; `protected_bytes` is kept exactly as received."""

    protected_bytes: bytes
    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes | None
    signature: bytes
    tagged: bool

    @property
    def alg(self) -> object:
        if HDR_ALG in self.protected:
            return self.protected[HDR_ALG]
        return self.unprotected.get(HDR_ALG)


# --------------------------------------------------------------------------------------------
# Building blocks shared with the record layer


def sig_structure(protected_bytes: bytes, external_aad: bytes, payload: bytes) -> bytes:
    """The Sig_structure for COSE_Sign1 (RFC 9052 section 4.4), deterministically encoded."""
    return b"".join(
        (
            b"\x84\x6aSignature1",
            cbor.head(2, len(protected_bytes)),
            protected_bytes,
            cbor.head(2, len(external_aad)),
            external_aad,
            cbor.head(2, len(payload)),
            payload,
        )
    )


def alg_for_key(key: PrivateKey | PublicKey) -> int:
    """The algorithm we emit for a key: Ed25519 -> -19, ECDSA P-256 -> -9."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ALG_ED25519
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return ALG_ESP256
    raise InputError(f"unsupported signing key type {type(key).__name__}: use Ed25519 or P-256")


_ED25519 = (frozenset({ALG_ED25519, ALG_EDDSA}), 64, None)
_ED448 = (frozenset({ALG_ED448, ALG_EDDSA}), 114, None)
_P256 = (frozenset({ALG_ES256, ALG_ESP256}), 64, hashes.SHA256())
_P384 = (frozenset({ALG_ES384, ALG_ESP384}), 96, hashes.SHA384())


def _accepted(key: object) -> tuple[frozenset[int], int, Any]:
    """(algorithms accepted for this public key, signature length, hash or None)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return _ED25519
    if isinstance(key, ed448.Ed448PublicKey):
        return _ED448
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return _P256
        if isinstance(key.curve, ec.SECP384R1):
            return _P384
    raise SignatureError(
        f"unsupported public key type {type(key).__name__}"
        + (f" on curve {key.curve.name}" if isinstance(key, ec.EllipticCurvePublicKey) else ""),
        rule="cose.key-unsupported",
    )


def verify_signature(alg: object, public_key: object, tbs: bytes, signature: bytes) -> None:
    """Check that `alg` fits `public_key` and that `signature` over `tbs` verifies; or raise."""
    if type(alg) is not int or alg in _REFUSED_ALGS or alg not in _ALG_NAMES:
        if alg is None:
            raise SignatureError("no alg header parameter", rule="cose.alg-missing")
        kind = "is not supported" if type(alg) is int and alg in _REFUSED_ALGS else "is unknown"
        raise SignatureError(f"algorithm {alg_name(alg)} {kind}", rule="cose.alg-unsupported")
    accepted, sig_len, digest = _accepted(public_key)
    if alg not in accepted:
        raise SignatureError(
            f"algorithm {alg_name(alg)} does not fit the {type(public_key).__name__} key",
            rule="cose.alg-key-mismatch",
        )
    if len(signature) != sig_len:
        raise SignatureError(
            f"{alg_name(alg)} signature must be {sig_len} bytes, got {len(signature)}",
            rule="cose.signature-length",
        )
    try:
        if digest is None:
            public_key.verify(signature, tbs)  # type: ignore[attr-defined]
        else:
            half = sig_len // 2
            r = int.from_bytes(signature[:half], "big")
            s = int.from_bytes(signature[half:], "big")
            der = encode_dss_signature(r, s)
            public_key.verify(der, tbs, ec.ECDSA(digest))  # type: ignore[attr-defined]
    except InvalidSignature:
        raise SignatureError("signature does not verify", rule="cose.signature-invalid") from None
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signature rejected: {exc}", rule="cose.signature-invalid") from None


def raw_sign(key: PrivateKey, tbs: bytes) -> bytes:
    """Sign `tbs` with the COSE signature format for the key (raw r||s for ECDSA)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(tbs)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise InputError(f"unsupported signing key type {type(key).__name__}: use Ed25519 or P-256")


def x5t(cert_der: bytes) -> list[Any]:
    """COSE_CertHash (RFC 9360) of a DER certificate, SHA-256/64: 8 bytes fit tag memory."""
    return [ALG_SHA256_64, hashlib.sha256(cert_der).digest()[:8]]


# --------------------------------------------------------------------------------------------
# Public API


def sign1(
    payload: bytes,
    key: PrivateKey,
    *,
    protected: dict[Any, Any] | None = None,
    external_aad: bytes = b"",
) -> bytes:
    """Sign `payload`; return a tagged COSE_Sign1 with `alg` (from the key) in the protected
    header and an empty unprotected header."""
    alg = alg_for_key(key)
    header = dict(protected or {})
    if header.get(HDR_ALG, alg) != alg:
        raise InputError(
            f"protected alg {alg_name(header[HDR_ALG])} does not fit the key ({alg_name(alg)})"
        )
    header[HDR_ALG] = alg
    protected_bytes = cbor.dumps(header)
    signature = raw_sign(key, sig_structure(protected_bytes, external_aad, payload))
    return cbor.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected_bytes, {}, payload, signature]))


def decode_sign1(message: bytes) -> Sign1:
    """Parse a COSE_Sign1 (tagged or untagged) without verifying it."""
    if not isinstance(message, bytes | bytearray | memoryview):
        raise DecodeError("message must be bytes", rule="cose.malformed")
    obj = cbor.loads_lenient(bytes(message), what="COSE_Sign1")
    tagged = isinstance(obj, cbor2.CBORTag)
    if tagged:
        if obj.tag != COSE_SIGN1_TAG:
            raise DecodeError(f"CBOR tag {obj.tag} is not COSE_Sign1 (18)", rule="cose.wrong-tag")
        obj = obj.value
    if not isinstance(obj, list | tuple) or len(obj) != 4:
        raise DecodeError("COSE_Sign1 must be an array of 4 items", rule="cose.malformed")
    protected_bytes, unprotected, payload, signature = obj
    if not isinstance(protected_bytes, bytes):
        raise DecodeError("protected header must be a byte string", rule="cose.malformed")
    if not isinstance(unprotected, Mapping):
        raise DecodeError("unprotected header must be a map", rule="cose.malformed")
    unprotected = dict(unprotected)
    if payload is not None and not isinstance(payload, bytes):
        raise DecodeError("payload must be a byte string or nil", rule="cose.malformed")
    if not isinstance(signature, bytes):
        raise DecodeError("signature must be a byte string", rule="cose.malformed")
    if protected_bytes:
        protected = cbor.loads_lenient(protected_bytes, what="protected header")
        if not isinstance(protected, Mapping):
            raise DecodeError("protected header must encode a map", rule="cose.malformed")
        protected = dict(protected)
    else:
        protected = {}
    for bucket in (protected, unprotected):
        for label in bucket:
            if not isinstance(label, int | str) or isinstance(label, bool):
                raise DecodeError(
                    f"header label {label!r} is not an integer or text", rule="cose.malformed"
                )
    both = set(protected) & set(unprotected)
    if both:
        raise DecodeError(
            f"header labels {sorted(both, key=repr)} appear in both buckets",
            rule="cose.header-duplicate",
        )
    return Sign1(protected_bytes, protected, unprotected, payload, signature, tagged)


def check_crit(msg: Sign1, understood: frozenset[int] = UNDERSTOOD_LABELS) -> None:
    """Apply RFC 9052 `crit` rules: every listed label present, protected and understood."""
    if HDR_CRIT in msg.unprotected:
        raise DecodeError("crit must be in the protected header", rule="cose.crit-unprotected")
    if HDR_CRIT not in msg.protected:
        return
    crit = msg.protected[HDR_CRIT]
    if not isinstance(crit, list) or not crit:
        raise DecodeError("crit must be a non-empty array", rule="cose.malformed")
    for label in crit:
        if type(label) not in (int, str):
            raise DecodeError(
                f"crit label {label!r} is not an integer or text", rule="cose.malformed"
            )
        if label not in msg.protected:
            raise DecodeError(
                f"crit label {label!r} is not in the protected header", rule="cose.crit-unknown"
            )
        if label not in understood:
            raise DecodeError(f"crit label {label!r} is not understood", rule="cose.crit-unknown")


def verify_sign1(
    message: bytes,
    public_key: PublicKey,
    *,
    external_aad: bytes = b"",
    detached_payload: bytes | None = None,
) -> bytes:
    """Verify a COSE_Sign1 and return its payload, or raise `VerificationError`.

    For any input bytes this returns or raises `passport.errors.VerificationError`, never
    another exception. Tagged and untagged messages are accepted. A detached payload (nil in
    the message) must be supplied with `detached_payload`.
    """
    msg = decode_sign1(message)
    check_crit(msg)
    payload = msg.payload
    if payload is None:
        if detached_payload is None:
            raise DecodeError(
                "payload is detached and none was supplied", rule="cose.detached-payload"
            )
        payload = detached_payload
    elif detached_payload is not None:
        raise DecodeError(
            "payload is attached; a detached one was also supplied", rule="cose.detached-payload"
        )
    if not isinstance(external_aad, bytes):
        raise DecodeError("external_aad must be bytes", rule="cose.malformed")
    # RFC 9052 section 4.4: with no protected attributes the Sig_structure carries a zero-length
    # bstr, even when the message encodes the empty map as h'A0'.
    body_protected = msg.protected_bytes if msg.protected else b""
    tbs = sig_structure(body_protected, external_aad, payload)
    verify_signature(msg.alg, public_key, tbs, msg.signature)
    return payload
