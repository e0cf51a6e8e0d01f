"""Third-party vectors through our verifier: COSE WG Examples, GlueCOSE and Wycheproof.

These are the only tests whose expected results we did not write ourselves. Every vector file is
one test id and every Wycheproof case is one test id, so a vector that silently stops being
checked shows up as a change in the test count. The files are read from ../shared (see
conftest.py) and never copied into the repository.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from conftest import SHARED, shared_path
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from passport import cose
from passport.errors import SignatureError, VerificationError

#: Algorithms that are refused by design: such vectors must fail with this rule, never verify.
REFUSED_ALGS = {"ES512"}
REFUSED_RULE = "cose.alg-unsupported"

COSE_WG_DIRS = ("sign1-tests", "ecdsa-examples", "eddsa-examples")
COSE_WG_FILES = ("CWT/A_3.json", "RFC8152/Appendix_C_2_1.json", "countersign1/signed1-01.json")

_CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


# --------------------------------------------------------------------------------------------
# Collection helpers


def _missing(*parts: str, width: int = 1) -> list[Any]:
    """One parameter standing for a missing vector file or folder (first value: its path parts,
    the other `width - 1` values None); the test then calls `shared_path`, which skips on a
    laptop and fails in CI (PASSPORT_REQUIRE_SHARED)."""
    values = (parts, *[None] * (width - 1))
    return [pytest.param(*values, id="missing-" + "-".join(parts).replace("/", "-"))]


def _cose_wg_params() -> list[Any]:
    """(relative path under vectors/cose-wg-examples) for every Sign1 vector with input.sign0."""
    root = SHARED / "vectors" / "cose-wg-examples"
    if not root.is_dir():
        return _missing("vectors", "cose-wg-examples")
    paths = [p for d in COSE_WG_DIRS for p in sorted((root / d).glob("*.json"))]
    paths += [root / f for f in COSE_WG_FILES]
    params = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        if not path.exists():
            params += _missing("vectors", "cose-wg-examples", relative)
            continue
        if "sign0" in json.loads(path.read_text())["input"]:
            params.append(pytest.param(relative, id=relative.removesuffix(".json")))
    return params


def _gluecose_params() -> list[Any]:
    """File names of every vectors/gluecose/sign1-verify-*.json."""
    root = SHARED / "vectors" / "gluecose"
    if not root.is_dir():
        return _missing("vectors", "gluecose")
    return [pytest.param(p.name, id=p.stem) for p in sorted(root.glob("sign1-verify-*.json"))]


def _wycheproof_params(name: str, prefix: str, key_field: str) -> list[Any]:
    """One parameter per Wycheproof test case: (public key hex, tcId, msg, sig, result)."""
    path = SHARED / "vectors" / "wycheproof" / name
    if not path.exists():
        return _missing("vectors", "wycheproof", name, width=5)
    data = json.loads(path.read_text())
    return [
        pytest.param(
            group["publicKey"][key_field],
            case["tcId"],
            case["msg"],
            case["sig"],
            case["result"],
            id=f"{prefix}-tc{case['tcId']}",
        )
        for group in data["testGroups"]
        for case in group["tests"]
    ]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _component(jwk: dict[str, str], name: str) -> bytes:
    """A JWK coordinate, given either as base64url `x` or as hex `x_hex` (COSE WG style)."""
    if name + "_hex" in jwk:
        return bytes.fromhex(jwk[name + "_hex"])
    return _b64url(jwk[name])


def public_key_from_jwk(jwk: dict[str, str]) -> Any:
    """The cryptography public key for an EC (P-256/384/521) or OKP (Ed25519/Ed448) JWK."""
    if jwk["kty"] == "EC":
        x = int.from_bytes(_component(jwk, "x"), "big")
        y = int.from_bytes(_component(jwk, "y"), "big")
        return ec.EllipticCurvePublicNumbers(x, y, _CURVES[jwk["crv"]]).public_key()
    if jwk["kty"] == "OKP":
        okp = {"Ed25519": ed25519.Ed25519PublicKey, "Ed448": ed448.Ed448PublicKey}[jwk["crv"]]
        return okp.from_public_bytes(_component(jwk, "x"))
    raise AssertionError(f"unexpected JWK kty {jwk['kty']!r}")


def check_vector(
    message: bytes, key: Any, external_aad: bytes, alg: str, should_verify: bool
) -> None:
    """Verify as the vector says: refused algorithms raise their rule, failures raise
    VerificationError, and a passing vector returns the payload carried in the message."""
    if alg in REFUSED_ALGS:
        with pytest.raises(VerificationError) as info:
            cose.verify_sign1(message, key, external_aad=external_aad)
        assert info.value.rule == REFUSED_RULE, str(info.value)
    elif should_verify:
        payload = cose.verify_sign1(message, key, external_aad=external_aad)
        decoded = cbor2.loads(message)
        items = decoded.value if isinstance(decoded, cbor2.CBORTag) else decoded
        assert payload == items[2]
    else:
        with pytest.raises(VerificationError):
            cose.verify_sign1(message, key, external_aad=external_aad)


# --------------------------------------------------------------------------------------------
# COSE WG Examples and GlueCOSE


@pytest.mark.parametrize("relative", _cose_wg_params())
def test_cose_wg_examples(relative: str | tuple[str, ...], vectors: Path) -> None:
    """github.com/cose-wg/Examples: "fail": true must be refused, the rest must verify."""
    if isinstance(relative, tuple):
        shared_path(*relative)
        pytest.fail(f"{'/'.join(relative)} appeared after collection; re-run")
    vector = json.loads((vectors / "cose-wg-examples" / relative).read_text())
    sign0 = vector["input"]["sign0"]
    check_vector(
        message=bytes.fromhex(vector["output"]["cbor"]),
        key=public_key_from_jwk(sign0["key"]),
        external_aad=bytes.fromhex(sign0.get("external", "")),
        alg=sign0["alg"],
        should_verify=not vector.get("fail", False),
    )


@pytest.mark.parametrize("name", _gluecose_params())
def test_gluecose(name: str | tuple[str, ...], vectors: Path) -> None:
    """github.com/gluecose/test-vectors: shouldVerify decides, except for refused algorithms."""
    if isinstance(name, tuple):
        shared_path(*name)
        pytest.fail(f"{'/'.join(name)} appeared after collection; re-run")
    vector = json.loads((vectors / "gluecose" / name).read_text())
    verify = vector["sign1::verify"]
    check_vector(
        message=bytes.fromhex(verify["taggedCOSESign1"]["cborHex"]),
        key=public_key_from_jwk(vector["key"]),
        external_aad=bytes.fromhex(verify.get("external", "")),
        alg=vector["alg"],
        should_verify=verify["shouldVerify"],
    )


def test_vector_sets_are_complete(vectors: Path) -> None:
    """The sets named in MANIFEST.txt are all collected: 18 COSE WG Sign1 files, 4 GlueCOSE."""
    assert (vectors / "MANIFEST.txt").exists()
    assert len(_cose_wg_params()) == 18
    assert len(_gluecose_params()) == 4


# --------------------------------------------------------------------------------------------
# Wycheproof: the signature primitive verify_sign1 relies on


def _wycheproof_check(
    alg: int, key: Any, msg_hex: str, sig_hex: str, result: str, tc_id: int
) -> None:
    """'valid' must verify, 'invalid' must raise VerificationError, 'acceptable' may do either."""
    msg, sig = bytes.fromhex(msg_hex), bytes.fromhex(sig_hex)
    if result == "valid":
        cose.verify_signature(alg, key, msg, sig)
    elif result == "invalid":
        with pytest.raises(VerificationError):
            cose.verify_signature(alg, key, msg, sig)
    else:
        assert result == "acceptable", f"tc{tc_id}: unknown result {result!r}"
        with contextlib.suppress(VerificationError):
            cose.verify_signature(alg, key, msg, sig)


ED25519_FILE = "ed25519_test.json"
P256_FILE = "ecdsa_secp256r1_sha256_p1363_test.json"


@pytest.mark.parametrize(
    ("pk", "tc_id", "msg", "sig", "result"), _wycheproof_params(ED25519_FILE, "ed25519", "pk")
)
def test_wycheproof_ed25519(
    pk: str | tuple[str, ...], tc_id: int, msg: str, sig: str, result: str
) -> None:
    """Wycheproof Ed25519 through verify_signature with alg Ed25519 (-19)."""
    if isinstance(pk, tuple):
        shared_path(*pk)
        pytest.fail(f"{'/'.join(pk)} appeared after collection; re-run")
    key = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(pk))
    _wycheproof_check(cose.ALG_ED25519, key, msg, sig, result, tc_id)


@pytest.mark.parametrize(
    ("pk", "tc_id", "msg", "sig", "result"),
    _wycheproof_params(P256_FILE, "p256-p1363", "uncompressed"),
)
def test_wycheproof_p256_p1363(
    pk: str | tuple[str, ...], tc_id: int, msg: str, sig: str, result: str
) -> None:
    """Wycheproof ECDSA P-256/SHA-256 with raw r||s signatures (the COSE format), alg -9."""
    if isinstance(pk, tuple):
        shared_path(*pk)
        pytest.fail(f"{'/'.join(pk)} appeared after collection; re-run")
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(pk))
    _wycheproof_check(cose.ALG_ESP256, key, msg, sig, result, tc_id)


@pytest.mark.parametrize(
    ("name", "expected"), [(ED25519_FILE, 151), (P256_FILE, 262)], ids=["ed25519", "p256-p1363"]
)
def test_wycheproof_every_case_collected(name: str, expected: int, vectors: Path) -> None:
    """Each file's numberOfTests matches the cases collected above (none dropped)."""
    data = json.loads((vectors / "wycheproof" / name).read_text())
    assert data["numberOfTests"] == expected
    prefix = "ed25519" if name == ED25519_FILE else "p256-p1363"
    field = "pk" if name == ED25519_FILE else "uncompressed"
    assert len(_wycheproof_params(name, prefix, field)) == expected


@pytest.mark.parametrize("signer", ["ed25519", "p256"])
def test_verify_sign1_checks_the_sig_structure_with_verify_signature(
    signer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ties the Wycheproof results to COSE: verify_sign1 hands exactly the Sig_structure and the
    message's signature to verify_signature, so what the primitive accepts or refuses above is
    what a COSE_Sign1 built around that signature gets."""
    key: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if signer == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    payload, aad = b"wycheproof-linked", b"aad"
    message = cose.sign1(payload, key, external_aad=aad)
    protected_bytes, _, _, signature = cbor2.loads(message).value

    calls: list[tuple[object, object, bytes, bytes]] = []
    real = cose.verify_signature

    def spy(alg: object, public_key: object, tbs: bytes, sig: bytes) -> None:
        calls.append((alg, public_key, tbs, sig))
        real(alg, public_key, tbs, sig)

    monkeypatch.setattr(cose, "verify_signature", spy)
    public = key.public_key()
    assert cose.verify_sign1(message, public, external_aad=aad) == payload
    expected_tbs = cbor2.dumps(["Signature1", protected_bytes, aad, payload])
    assert calls == [(cose.alg_for_key(key), public, expected_tbs, signature)]

    # And a refusal by the primitive is a refusal of the message.
    def refuse(alg: object, public_key: object, tbs: bytes, sig: bytes) -> None:
        raise SignatureError("refused by the primitive", rule="cose.signature-invalid")

    monkeypatch.setattr(cose, "verify_signature", refuse)
    with pytest.raises(VerificationError):
        cose.verify_sign1(message, public, external_aad=aad)
