"""passport.cose: COSE_Sign1 round trips, the algorithms we accept, and hostile messages.

`verify_sign1` is the gate every record passes through, so beyond the happy path each way a
message can be wrong must end in `VerificationError` (with its rule), never in a crash and never
in a payload that was not signed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import example, given
from hypothesis import strategies as st

from passport import cbor, cose
from passport.errors import DecodeError, InputError, SignatureError, VerificationError

PAYLOAD = b"battery cell 0042: 3.7 V, 2500 mAh"

ED = ed25519.Ed25519PrivateKey.generate()
ED_OTHER = ed25519.Ed25519PrivateKey.generate()
P256 = ec.generate_private_key(ec.SECP256R1())
P256_OTHER = ec.generate_private_key(ec.SECP256R1())
P384_PUB = ec.generate_private_key(ec.SECP384R1()).public_key()
P521_PUB = ec.generate_private_key(ec.SECP521R1()).public_key()
ED448_PUB = ed448.Ed448PrivateKey.generate().public_key()
RSA_PUB = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()

SIGNERS: dict[str, tuple[cose.PrivateKey, int]] = {
    "ed25519": (ED, cose.ALG_ED25519),
    "p256": (P256, cose.ALG_ESP256),
}


# --------------------------------------------------------------------------------------------
# Helpers


def build(
    key: cose.PrivateKey,
    protected: dict[Any, Any],
    unprotected: dict[Any, Any] | None = None,
    payload: bytes | None = PAYLOAD,
    *,
    external_aad: bytes = b"",
    tag: int | None = cose.COSE_SIGN1_TAG,
) -> bytes:
    """A COSE_Sign1 made by hand (not by `sign1`), so any header or algorithm can be tried.

    The signature is genuine for the headers given; an empty protected map is sent as h''.
    """
    protected_bytes = cbor.dumps(protected) if protected else b""
    tbs = cose.sig_structure(protected_bytes, external_aad, payload or b"")
    signature = cose.raw_sign(key, tbs)
    body = [protected_bytes, unprotected or {}, payload, signature]
    return bytes(cbor2.dumps(cbor2.CBORTag(tag, body) if tag is not None else body))


def parts(message: bytes) -> list[Any]:
    """The four items of a tagged COSE_Sign1, as a mutable list."""
    decoded = cbor2.loads(message)
    assert isinstance(decoded, cbor2.CBORTag)
    assert decoded.tag == cose.COSE_SIGN1_TAG
    return list(decoded.value)


def reassemble(items: list[Any], tag: int | None = cose.COSE_SIGN1_TAG) -> bytes:
    """Re-encode (possibly altered) COSE_Sign1 items."""
    return bytes(cbor2.dumps(cbor2.CBORTag(tag, items) if tag is not None else items))


def replace(message: bytes, index: int, value: Any) -> bytes:
    """`message` with item `index` replaced (the signature is left as it was)."""
    items = parts(message)
    items[index] = value
    return reassemble(items)


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("signer", SIGNERS)
@pytest.mark.parametrize("external_aad", [b"", b"cell-serial:0042"], ids=["no-aad", "aad"])
def test_sign_verify_round_trip(signer: str, external_aad: bytes) -> None:
    """sign1 emits a tagged message with only alg (fully specified) protected, and it verifies."""
    key, alg = SIGNERS[signer]
    message = cose.sign1(PAYLOAD, key, external_aad=external_aad)

    decoded = cbor2.loads(message)
    assert isinstance(decoded, cbor2.CBORTag)
    assert decoded.tag == 18
    protected_bytes, unprotected, payload, signature = decoded.value
    assert cbor.loads(protected_bytes) == {cose.HDR_ALG: alg}
    assert alg == {"ed25519": -19, "p256": -9}[signer]
    assert unprotected == {}
    assert payload == PAYLOAD
    assert len(signature) == 64

    assert cose.verify_sign1(message, key.public_key(), external_aad=external_aad) == PAYLOAD


@pytest.mark.parametrize("signer", SIGNERS)
def test_sign1_keeps_extra_protected_headers(signer: str) -> None:
    """Caller headers are signed alongside alg and the header map stays deterministic."""
    key, alg = SIGNERS[signer]
    message = cose.sign1(b"", key, protected={cose.HDR_KID: b"k1", "note": "x"})
    protected_bytes = parts(message)[0]
    assert cbor.loads(protected_bytes) == {cose.HDR_ALG: alg, cose.HDR_KID: b"k1", "note": "x"}
    assert cose.verify_sign1(message, key.public_key()) == b""


def test_sign1_refuses_alg_that_does_not_fit_the_key() -> None:
    """A caller cannot make sign1 label an Ed25519 signature as ESP256."""
    with pytest.raises(InputError):
        cose.sign1(PAYLOAD, ED, protected={cose.HDR_ALG: cose.ALG_ESP256})


def test_sign1_refuses_unsupported_private_key() -> None:
    """We only sign with Ed25519 and P-256; P-384 is verify-only."""
    with pytest.raises(InputError):
        cose.sign1(PAYLOAD, ec.generate_private_key(ec.SECP384R1()))


@pytest.mark.parametrize(
    ("signer", "alg"),
    [("ed25519", -8), ("ed25519", -19), ("p256", -7), ("p256", -9)],
    ids=["EdDSA", "Ed25519", "ES256", "ESP256"],
)
@pytest.mark.parametrize("tagged", [True, False], ids=["tagged", "untagged"])
def test_verify_accepts_polymorphic_algs_and_untagged(signer: str, alg: int, tagged: bool) -> None:
    """Other systems still emit EdDSA (-8) and ES256 (-7), and may omit tag 18."""
    key, _ = SIGNERS[signer]
    message = build(key, {cose.HDR_ALG: alg}, tag=cose.COSE_SIGN1_TAG if tagged else None)
    assert message[0] == (0xD2 if tagged else 0x84)
    assert cose.verify_sign1(message, key.public_key()) == PAYLOAD
    assert cose.decode_sign1(message).tagged is tagged


@pytest.mark.parametrize("signer", SIGNERS)
def test_verify_accepts_alg_in_unprotected_header(signer: str) -> None:
    """RFC 9052 allows alg unprotected; with nothing protected the body is h''."""
    key, alg = SIGNERS[signer]
    message = build(key, {}, {cose.HDR_ALG: alg})
    assert parts(message)[0] == b""
    assert cose.verify_sign1(message, key.public_key()) == PAYLOAD


def test_verify_accepts_crit_naming_understood_protected_label() -> None:
    """crit is honoured, not refused wholesale: a listed, present, understood label passes."""
    message = build(ED, {cose.HDR_ALG: -19, cose.HDR_CRIT: [cose.HDR_CONTENT_TYPE], 3: 0})
    assert cose.verify_sign1(message, ED.public_key()) == PAYLOAD


# --------------------------------------------------------------------------------------------
# Detached payload


@pytest.mark.parametrize("signer", SIGNERS)
def test_detached_payload(signer: str) -> None:
    """A nil payload verifies against the payload supplied separately, and only that one."""
    key, _ = SIGNERS[signer]
    message = replace(cose.sign1(PAYLOAD, key), 2, None)
    assert parts(message)[2] is None
    public = key.public_key()

    assert cose.verify_sign1(message, public, detached_payload=PAYLOAD) == PAYLOAD
    with pytest.raises(SignatureError) as info:
        cose.verify_sign1(message, public, detached_payload=PAYLOAD + b"!")
    assert info.value.rule == "cose.signature-invalid"
    with pytest.raises(VerificationError) as info2:
        cose.verify_sign1(message, public)
    assert info2.value.rule == "cose.detached-payload"


def test_detached_payload_refused_when_payload_attached() -> None:
    """Supplying a detached payload for an attached message is ambiguous and refused."""
    message = cose.sign1(PAYLOAD, ED)
    with pytest.raises(VerificationError) as info:
        cose.verify_sign1(message, ED.public_key(), detached_payload=PAYLOAD)
    assert info.value.rule == "cose.detached-payload"


# --------------------------------------------------------------------------------------------
# Adversarial table


@dataclass(frozen=True)
class Case:
    """A hostile message, the key and options it is checked with, and the expected rule."""

    message: Callable[[], Any]
    public_key: Callable[[], Any]
    rule: str | None
    external_aad: bytes = b""


def _ed_pub() -> Any:
    return ED.public_key()


def _p256_pub() -> Any:
    return P256.public_key()


def _good_ed() -> bytes:
    return cose.sign1(PAYLOAD, ED)


def _good_p256() -> bytes:
    return cose.sign1(PAYLOAD, P256)


def _signature(message: bytes, transform: Callable[[bytes], bytes]) -> bytes:
    """`message` with its signature transformed."""
    return replace(message, 3, transform(parts(message)[3]))


def _flip(data: bytes, bit: int = 0) -> bytes:
    """`data` with one bit flipped (in the middle, so it is neither r's nor s's edge)."""
    position = len(data) // 2
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


def _protected_only(protected_bytes: bytes, key: cose.PrivateKey = ED) -> bytes:
    """A message whose protected bytes are given verbatim, signed over those exact bytes."""
    signature = cose.raw_sign(key, cose.sig_structure(protected_bytes, b"", PAYLOAD))
    return reassemble([protected_bytes, {}, PAYLOAD, signature])


def ec_der(raw: bytes) -> bytes:
    """The DER form of a raw r||s P-256 signature (what COSE must not carry)."""
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


CASES: dict[str, Case] = {
    # keys
    "wrong-key-ed25519": Case(_good_ed, lambda: ED_OTHER.public_key(), "cose.signature-invalid"),
    "wrong-key-p256": Case(_good_p256, lambda: P256_OTHER.public_key(), "cose.signature-invalid"),
    "ed25519-alg-with-p256-key": Case(_good_ed, _p256_pub, "cose.alg-key-mismatch"),
    "eddsa-alg-with-p256-key": Case(
        lambda: build(ED, {1: cose.ALG_EDDSA}), _p256_pub, "cose.alg-key-mismatch"
    ),
    "esp256-alg-with-ed25519-key": Case(_good_p256, _ed_pub, "cose.alg-key-mismatch"),
    "es256-alg-with-ed25519-key": Case(
        lambda: build(P256, {1: cose.ALG_ES256}), _ed_pub, "cose.alg-key-mismatch"
    ),
    "ed25519-alg-with-ed448-key": Case(_good_ed, lambda: ED448_PUB, "cose.alg-key-mismatch"),
    "esp256-alg-with-p384-key": Case(_good_p256, lambda: P384_PUB, "cose.alg-key-mismatch"),
    "rsa-key": Case(_good_ed, lambda: RSA_PUB, "cose.key-unsupported"),
    "p521-key": Case(_good_p256, lambda: P521_PUB, "cose.key-unsupported"),
    "private-key-not-public": Case(_good_ed, lambda: ED, "cose.key-unsupported"),
    "key-is-bytes": Case(
        _good_ed, lambda: ED.public_key().public_bytes_raw(), "cose.key-unsupported"
    ),
    "key-is-none": Case(_good_ed, lambda: None, "cose.key-unsupported"),
    # algorithms
    "es512-refused": Case(lambda: build(P256, {1: -36}), _p256_pub, "cose.alg-unsupported"),
    "esp512-refused": Case(lambda: build(P256, {1: -52}), _p256_pub, "cose.alg-unsupported"),
    "es384-with-p256-key": Case(lambda: build(P256, {1: -35}), _p256_pub, "cose.alg-key-mismatch"),
    "unknown-alg-int": Case(lambda: build(ED, {1: -999}), _ed_pub, "cose.alg-unsupported"),
    "unknown-alg-text": Case(lambda: build(ED, {1: "EdDSA"}), _ed_pub, "cose.alg-unsupported"),
    "alg-true": Case(lambda: build(ED, {1: True}), _ed_pub, "cose.alg-unsupported"),
    # RFC 9052 3.1: alg is int / tstr; -19.0 is neither, whatever it compares equal to.
    "alg-float": Case(lambda: build(ED, {1: -19.0}), _ed_pub, "cose.alg-unsupported"),
    "alg-array": Case(lambda: build(ED, {1: [-19]}), _ed_pub, None),
    "alg-empty-array": Case(lambda: build(ED, {1: []}), _ed_pub, None),
    "alg-map": Case(lambda: build(ED, {1: {}}), _ed_pub, None),
    "alg-missing": Case(lambda: build(ED, {4: b"kid"}), _ed_pub, "cose.alg-missing"),
    "alg-missing-no-headers": Case(lambda: build(ED, {}), _ed_pub, "cose.alg-missing"),
    "alg-null": Case(lambda: build(ED, {1: None}), _ed_pub, "cose.alg-missing"),
    "alg-in-both-buckets": Case(
        lambda: build(ED, {1: -19}, {1: -19}), _ed_pub, "cose.header-duplicate"
    ),
    "alg-in-both-buckets-differing": Case(
        lambda: build(ED, {1: -19}, {1: -8}), _ed_pub, "cose.header-duplicate"
    ),
    # crit
    "crit-unknown-label": Case(
        lambda: build(ED, {1: -19, 2: [99], 99: 0}), _ed_pub, "cose.crit-unknown"
    ),
    "crit-unknown-text-label": Case(
        lambda: build(ED, {1: -19, 2: ["x"], "x": 0}), _ed_pub, "cose.crit-unknown"
    ),
    "crit-label-absent": Case(lambda: build(ED, {1: -19, 2: [3]}), _ed_pub, "cose.crit-unknown"),
    "crit-label-unprotected": Case(
        lambda: build(ED, {1: -19, 2: [3]}, {3: 0}), _ed_pub, "cose.crit-unknown"
    ),
    "crit-in-unprotected": Case(
        lambda: build(ED, {1: -19}, {2: [1]}), _ed_pub, "cose.crit-unprotected"
    ),
    "crit-empty": Case(lambda: build(ED, {1: -19, 2: []}), _ed_pub, "cose.malformed"),
    "crit-not-array": Case(lambda: build(ED, {1: -19, 2: 1}), _ed_pub, "cose.malformed"),
    "crit-label-array": Case(lambda: build(ED, {1: -19, 2: [[1]]}), _ed_pub, None),
    # signatures
    "signature-63-bytes-ed25519": Case(
        lambda: _signature(_good_ed(), lambda s: s[:-1]), _ed_pub, "cose.signature-length"
    ),
    "signature-65-bytes-ed25519": Case(
        lambda: _signature(_good_ed(), lambda s: s + b"\x00"), _ed_pub, "cose.signature-length"
    ),
    "signature-63-bytes-p256": Case(
        lambda: _signature(_good_p256(), lambda s: s[:-1]), _p256_pub, "cose.signature-length"
    ),
    "signature-65-bytes-p256": Case(
        lambda: _signature(_good_p256(), lambda s: b"\x00" + s), _p256_pub, "cose.signature-length"
    ),
    "signature-der-p256": Case(
        lambda: _signature(_good_p256(), lambda s: ec_der(s)), _p256_pub, "cose.signature-length"
    ),
    "signature-empty": Case(
        lambda: _signature(_good_ed(), lambda s: b""), _ed_pub, "cose.signature-length"
    ),
    "signature-bit-flipped-ed25519": Case(
        lambda: _signature(_good_ed(), _flip), _ed_pub, "cose.signature-invalid"
    ),
    "signature-bit-flipped-p256": Case(
        lambda: _signature(_good_p256(), _flip), _p256_pub, "cose.signature-invalid"
    ),
    "signature-zero-p256": Case(
        lambda: _signature(_good_p256(), lambda s: bytes(64)), _p256_pub, "cose.signature-invalid"
    ),
    "signature-all-ff-p256": Case(
        lambda: _signature(_good_p256(), lambda s: b"\xff" * 64),
        _p256_pub,
        "cose.signature-invalid",
    ),
    "signature-text": Case(
        lambda: _signature(_good_ed(), lambda s: s.hex()),
        _ed_pub,
        "cose.malformed",
    ),
    # payload and protected bytes
    "payload-modified": Case(
        lambda: replace(_good_ed(), 2, PAYLOAD + b"!"), _ed_pub, "cose.signature-invalid"
    ),
    "payload-emptied": Case(lambda: replace(_good_ed(), 2, b""), _ed_pub, "cose.signature-invalid"),
    "payload-text": Case(
        lambda: replace(_good_ed(), 2, PAYLOAD.decode()), _ed_pub, "cose.malformed"
    ),
    "payload-nil-not-supplied": Case(
        lambda: replace(_good_ed(), 2, None), _ed_pub, "cose.detached-payload"
    ),
    "protected-header-added": Case(
        lambda: replace(_good_ed(), 0, cbor.dumps({1: -19, 3: 0})),
        _ed_pub,
        "cose.signature-invalid",
    ),
    "protected-non-shortest-alg": Case(
        # {1: -19} with -19 as 0x38 0x12: the same map, other bytes; signed over the original.
        lambda: replace(_good_ed(), 0, bytes.fromhex("a1013812")),
        _ed_pub,
        "cose.signature-invalid",
    ),
    "protected-emptied": Case(lambda: replace(_good_ed(), 0, b""), _ed_pub, "cose.alg-missing"),
    "protected-moved-to-unprotected": Case(
        lambda: reassemble([b"", {1: -19}, *parts(_good_ed())[2:]]),
        _ed_pub,
        "cose.signature-invalid",
    ),
    "protected-not-bstr-map": Case(
        lambda: replace(_good_ed(), 0, {1: -19}), _ed_pub, "cose.malformed"
    ),
    "protected-not-bstr-text": Case(
        lambda: replace(_good_ed(), 0, "\xa1\x01\x32"), _ed_pub, "cose.malformed"
    ),
    "protected-not-bstr-nil": Case(lambda: replace(_good_ed(), 0, None), _ed_pub, "cose.malformed"),
    "protected-encodes-array": Case(
        lambda: _protected_only(cbor.dumps([1, -19])), _ed_pub, "cose.malformed"
    ),
    "protected-trailing-bytes": Case(
        lambda: _protected_only(bytes.fromhex("a1013200")), _ed_pub, "cbor.trailing-bytes"
    ),
    "protected-duplicate-label": Case(
        lambda: _protected_only(bytes.fromhex("a201320132")), _ed_pub, "cbor.duplicate-key"
    ),
    "protected-truncated": Case(
        lambda: _protected_only(bytes.fromhex("a101")), _ed_pub, "cbor.truncated"
    ),
    "label-float": Case(lambda: build(ED, {1: -19, 1.5: 0}), _ed_pub, "cose.malformed"),
    "label-bytes": Case(lambda: build(ED, {1: -19}, {b"\x04": 0}), _ed_pub, "cose.malformed"),
    "unprotected-not-map": Case(lambda: replace(_good_ed(), 1, []), _ed_pub, "cose.malformed"),
    # structure
    "tag-98-cose-sign": Case(
        lambda: reassemble(parts(_good_ed()), tag=98), _ed_pub, "cose.wrong-tag"
    ),
    "tag-17-cose-mac0": Case(
        lambda: reassemble(parts(_good_ed()), tag=17), _ed_pub, "cose.wrong-tag"
    ),
    "tag-18-twice": Case(
        lambda: bytes(cbor2.dumps(cbor2.CBORTag(18, cbor2.CBORTag(18, parts(_good_ed()))))),
        _ed_pub,
        "cose.malformed",
    ),
    "array-of-3": Case(lambda: reassemble(parts(_good_ed())[:3]), _ed_pub, "cose.malformed"),
    "array-of-5": Case(lambda: reassemble([*parts(_good_ed()), b""]), _ed_pub, "cose.malformed"),
    "array-of-3-untagged": Case(
        lambda: reassemble(parts(_good_ed())[:3], tag=None), _ed_pub, "cose.malformed"
    ),
    "map-not-array": Case(lambda: bytes(cbor2.dumps({0: 1})), _ed_pub, "cose.malformed"),
    "empty-message": Case(lambda: b"", _ed_pub, "cbor.truncated"),
    "truncated-message": Case(lambda: _good_ed()[:-1], _ed_pub, "cbor.truncated"),
    "trailing-bytes": Case(lambda: _good_ed() + b"\x00", _ed_pub, "cbor.trailing-bytes"),
    "message-is-str": Case(lambda: _good_ed().hex(), _ed_pub, "cose.malformed"),
    # external_aad
    "aad-missing-at-verify": Case(
        lambda: cose.sign1(PAYLOAD, ED, external_aad=b"ctx"), _ed_pub, "cose.signature-invalid"
    ),
    "aad-extra-at-verify": Case(_good_ed, _ed_pub, "cose.signature-invalid", external_aad=b"x"),
    "aad-different-p256": Case(
        lambda: cose.sign1(PAYLOAD, P256, external_aad=b"a"),
        _p256_pub,
        "cose.signature-invalid",
        external_aad=b"b",
    ),
}


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in CASES.items()])
def test_adversarial(case: Case) -> None:
    """Every hostile message is refused with VerificationError and, where known, its rule."""
    message = case.message()
    with pytest.raises(VerificationError) as info:
        cose.verify_sign1(message, case.public_key(), external_aad=case.external_aad)
    if case.rule is not None:
        assert info.value.rule == case.rule, str(info.value)


def test_adversarial_cases_start_from_verifying_messages() -> None:
    """The table's base messages and builder verify untouched, so each refusal above is caused
    by the one change the case makes."""
    assert cose.verify_sign1(_good_ed(), _ed_pub()) == PAYLOAD
    assert cose.verify_sign1(_good_p256(), _p256_pub()) == PAYLOAD
    assert cose.verify_sign1(build(ED, {1: -19, 99: 0}), _ed_pub()) == PAYLOAD
    assert cose.verify_sign1(_protected_only(cbor.dumps({1: -19})), _ed_pub()) == PAYLOAD
    assert cose.verify_sign1(reassemble(parts(_good_ed())), _ed_pub()) == PAYLOAD
    signed_with_aad = cose.sign1(PAYLOAD, ED, external_aad=b"ctx")
    assert cose.verify_sign1(signed_with_aad, _ed_pub(), external_aad=b"ctx") == PAYLOAD


def test_signature_error_subclass_for_crypto_failures() -> None:
    """Crypto failures are SignatureError and structure failures DecodeError: callers (and the
    CLI) may tell a forged record from a garbled one."""
    with pytest.raises(SignatureError):
        cose.verify_sign1(_signature(_good_ed(), _flip), _ed_pub())
    with pytest.raises(DecodeError):
        cose.verify_sign1(reassemble(parts(_good_ed()), tag=98), _ed_pub())


# --------------------------------------------------------------------------------------------
# Fuzzing

_FUZZ_KEYS = {"ed25519": ED, "p256": P256}
_SIGNED = {name: cose.sign1(PAYLOAD, key) for name, key in _FUZZ_KEYS.items()}


def _verify_or_refuse(message: bytes, public_key: Any) -> bytes | None:
    """The payload if `message` verifies, None if refused with VerificationError; any other
    exception propagates and fails the test."""
    try:
        return cose.verify_sign1(message, public_key)
    except VerificationError:
        return None


@given(st.binary(max_size=300) | st.binary(max_size=200).map(lambda b: b"\xd2\x84" + b))
def test_verify_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes (some with a COSE_Sign1 prefix) never verify and never crash."""
    assert _verify_or_refuse(data, ED.public_key()) is None


@pytest.mark.parametrize("signer", _FUZZ_KEYS)
@given(position=st.integers(min_value=0), value=st.integers(0, 255))
# Byte 5 is the alg value in the protected header (d2 84 43 a1 01 <alg>): an array or a map.
@example(position=5, value=0x80)
@example(position=5, value=0xA0)
def test_verify_single_byte_mutation(signer: str, position: int, value: int) -> None:
    """A one-byte change is refused with VerificationError, or, if the message still verifies
    (a change outside the signed bytes), yields exactly the signed payload."""
    original = _SIGNED[signer]
    position %= len(original)
    if original[position] == value:
        value ^= 0xFF
    mutated = original[:position] + bytes([value]) + original[position + 1 :]
    result = _verify_or_refuse(mutated, _FUZZ_KEYS[signer].public_key())
    assert result is None or result == PAYLOAD
