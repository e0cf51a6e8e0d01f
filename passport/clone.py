"""Anti-clone challenge-response: a copied tag cannot copy the cell's private key.

The verifier makes a fresh random challenge; the cell (its secure element; here a virtual cell
whose key is a sidecar file) signs it as a COSE_Sign1 whose payload is the challenge and whose
external AAD is a fixed domain-separation string, so a response can never be mistaken for a
record and a record never serves as a response. The response must verify with the key the
passport's birth record certifies.

Out of scope, and documented: a relay attack (a counterfeit forwarding the challenge to a
genuine cell) needs distance bounding in the radio protocol, not a better signature.
"""

from __future__ import annotations

import secrets

from passport import cose
from passport.chain import cell_public_key
from passport.cose import PrivateKey
from passport.errors import InputError, VerificationError
from passport.image import Image
from passport.records import Birth

CHALLENGE_BYTES = 32
DOMAIN = b"battery-passport/anti-clone/v1"


def make_challenge() -> bytes:
    return secrets.token_bytes(CHALLENGE_BYTES)


def parse_challenge(text: str) -> bytes:
    try:
        challenge = bytes.fromhex(text.strip())
    except ValueError:
        raise InputError("a challenge is hex digits (as `passport challenge` prints it)") from None
    if len(challenge) != CHALLENGE_BYTES:
        raise InputError(f"a challenge is {CHALLENGE_BYTES} bytes, got {len(challenge)}")
    return challenge


def respond(cell_key: PrivateKey, challenge: bytes) -> bytes:
    """What the cell answers: its signature over the challenge (virtual-cell stand-in)."""
    return cose.sign1(challenge, cell_key, external_aad=DOMAIN)


def check_response(image: Image, challenge: bytes, response: bytes) -> None:
    """Raise `VerificationError` unless `response` is the certified cell key's answer."""
    birth = image.birth.body
    assert isinstance(birth, Birth)
    key = cell_public_key(birth)
    try:
        answered = cose.verify_sign1(response, key, external_aad=DOMAIN)
    except VerificationError as exc:
        raise VerificationError(
            f"the response is not signed by the cell key this passport certifies ({exc.reason}): "
            "the tag may have been copied onto another cell",
            rule="clone.response-invalid",
        ) from None
    if answered != challenge:
        raise VerificationError(
            "the response answers a different challenge (replayed?)",
            rule="clone.challenge-mismatch",
        )
