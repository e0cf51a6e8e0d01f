"""passport.chain: signatures and hash links of a whole image.

Each adversarial image below decodes (it is well-formed, every record genuinely signed by
someone) and must still be refused by `verify_image` with the rule naming what is wrong.
Images the writer refuses to build are assembled with `Image(...)` directly.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from factories import (
    TEST_LAB,
    Passport,
    actor,
    birth_body,
    cell_key,
    checkpoint_image,
    grow,
    next_entry,
    passport,
    record_bytes,
    sign_birth,
    telemetry_values,
)

from passport import cose
from passport.chain import RULES, VerifiedPassport, verify_image
from passport.errors import ChainError, SignatureError, VerificationError
from passport.image import Image
from passport.records import (
    Checkpoint,
    Entry,
    Kind,
    SignedRecord,
    SohMethod,
    Status,
    Values,
    X5t,
)
from passport.trust.store import CertificateStore, thumbprint

OEM = "ACME OEM"
RECYCLER = "Circular Metals Recycling"


def store(*names: str) -> CertificateStore:
    return CertificateStore(actor(name)[1] for name in names)


def x5t_of(name: str, alg: int = cose.ALG_SHA256_64) -> X5t:
    return thumbprint(actor(name)[1], alg)


def measurement(image: Image, lab: str = TEST_LAB, *, key_of: str | None = None) -> SignedRecord:
    """A test lab's measurement continuing `image`, naming `lab`'s certificate (signed with
    `key_of`'s key when given, to make a mismatch)."""
    key = actor(key_of or lab)[0]
    values = Values(soh_capacity_cpct=9400, soh_method=SohMethod.CAPACITY_TEST)
    return next_entry(image, key, values, kind=Kind.MEASUREMENT, x5t=x5t_of(lab))


def cell_entries(pp: Passport, count: int, profile: str = "st25dv16k") -> Image:
    """An image holding the birth and `count` telemetry entries (no eviction)."""
    image, _, _ = grow(Image.create(pp.birth, profile), pp.cell, count, evict=False)
    return image


def with_entries(image: Image, *entries: SignedRecord) -> Image:
    """`image` holding exactly `entries` (whatever their links)."""
    return replace(image, entries=tuple(entries))


def resigned_checkpoint(image: Image, key: cose.PrivateKey, **changes: object) -> SignedRecord:
    """The checkpoint of `image` with fields changed, signed by `key`."""
    assert image.checkpoint is not None
    body = image.checkpoint.body
    assert isinstance(body, Checkpoint)
    return SignedRecord.sign(replace(body, **changes), key)


# --------------------------------------------------------------------------------------------
# Happy paths


def test_verified_passport_names_every_signer() -> None:
    """Birth by the OEM, entries by the cell, a measurement by the lab, a status by the
    recycler: one signer per record, in image order."""
    pp = passport()
    image = cell_entries(pp, 2)
    image, _ = image.append(measurement(image))
    image, _ = image.append(next_entry(image, pp.cell, telemetry_values(4)))
    status = next_entry(
        image,
        actor(RECYCLER)[0],
        Values(status=Status.WASTE),
        kind=Kind.STATUS,
        x5t=x5t_of(RECYCLER),
    )
    image, _ = image.append(status)

    verified = verify_image(image, store(OEM, TEST_LAB, RECYCLER))
    assert isinstance(verified, VerifiedPassport)
    assert verified.signers == (
        f"CN={OEM}",
        "cell",
        "cell",
        f"CN={TEST_LAB}",
        "cell",
        f"CN={RECYCLER}",
    )
    assert verified.birth == pp.birth.body
    assert verified.records == image.records
    assert verified.image is image


def test_checkpoint_is_signed_by_the_cell() -> None:
    pp, image = checkpoint_image("st25dv16k", entries=3)
    verified = verify_image(image, pp.store)
    assert verified.signers == (f"CN={OEM}", "cell", "cell", "cell", f"CN={TEST_LAB}")


def test_image_with_evicted_history_verifies() -> None:
    """After real evictions the first entry on memory links to the checkpoint's head."""
    pp = passport()
    image, _, evicted = grow(Image.create(pp.birth, "ntag216"), pp.cell, 12)
    assert evicted
    assert image.checkpoint is not None
    assert verify_image(image, pp.store).signers[:2] == (f"CN={OEM}", "cell")


def test_checkpoint_without_entries_verifies() -> None:
    pp, image = checkpoint_image()
    assert verify_image(with_entries(image), pp.store).signers == (f"CN={OEM}", "cell")


def test_full_sha256_x5t_is_accepted() -> None:
    """RFC 9360 also allows the untruncated SHA-256 thumbprint (-16)."""
    pp = passport()
    image = cell_entries(pp, 1)
    key = actor(TEST_LAB)[0]
    record = next_entry(
        image,
        key,
        Values(soh_capacity_cpct=9000, soh_method=SohMethod.EIS),
        kind=Kind.MEASUREMENT,
        x5t=x5t_of(TEST_LAB, cose.ALG_SHA256),
    )
    image, _ = image.append(record)
    assert verify_image(image, pp.store).signers[-1] == f"CN={TEST_LAB}"


# --------------------------------------------------------------------------------------------
# Adversarial images


def _birth_wrong_oem_key() -> tuple[Image, CertificateStore]:
    """Signed by another OEM's key while naming ACME's certificate."""
    pp = passport()
    forged = sign_birth(pp.birth.body, OEM, key=actor("Rogue OEM")[0])  # type: ignore[arg-type]
    return Image.create(forged, "st25dv16k"), store(OEM, "Rogue OEM")


def _birth_cert_missing() -> tuple[Image, CertificateStore]:
    pp = passport()
    return Image.create(pp.birth, "st25dv16k"), store(TEST_LAB)


def _birth_body_changed() -> tuple[Image, CertificateStore]:
    """The OEM's signature copied onto a birth with another cell key: signature fails."""
    pp, other = passport(), passport(seed=2)
    spliced = SignedRecord.from_bytes(
        other.birth.raw[:-64] + pp.birth.signature  # same header and size, other payload
    )
    return Image.create(spliced, "st25dv16k"), pp.store


def _entry_other_cell() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 1)
    return with_entries(image, *image.entries, next_entry(image, cell_key(2))), pp.store


def _entry_p256_without_x5t() -> tuple[Image, CertificateStore]:
    """An actor key signing as if it were the cell (no x5t): alg does not fit the cell key."""
    pp = passport()
    image = cell_entries(pp, 1)
    return with_entries(image, *image.entries, next_entry(image, actor(OEM)[0])), pp.store


def _entry_actor_wrong_key() -> tuple[Image, CertificateStore]:
    """Names the lab's certificate, signed by the recycler's key."""
    pp = passport()
    image = cell_entries(pp, 1)
    forged = measurement(image, key_of=RECYCLER)
    return with_entries(image, *image.entries, forged), store(OEM, TEST_LAB, RECYCLER)


def _entry_actor_cert_missing() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    return image, store(OEM)


def _entry_prev_wrong() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 1)
    seq, prev = image.next_link()
    bad = SignedRecord.sign(Entry(Kind.TELEMETRY, seq, hashlib.sha256(prev).digest(), 0), pp.cell)
    return with_entries(image, *image.entries, bad), pp.store


def _entry_first_prev_not_birth() -> tuple[Image, CertificateStore]:
    pp = passport()
    bad = SignedRecord.sign(Entry(Kind.TELEMETRY, 1, bytes(32), 0), pp.cell)
    return Image(Image.create(pp.birth, "st25dv16k").profile, pp.birth, None, (bad,)), pp.store


def _seq_gap() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 2)
    seq, prev = image.next_link()
    skipping = SignedRecord.sign(Entry(Kind.TELEMETRY, seq + 1, prev, 0), pp.cell)
    return with_entries(image, *image.entries, skipping), pp.store


def _seq_repeated() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 2)
    seq, prev = image.next_link()
    repeat = SignedRecord.sign(Entry(Kind.TELEMETRY, seq - 1, prev, 0), pp.cell)
    return with_entries(image, *image.entries, repeat), pp.store


def _first_seq_not_one() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = Image.create(pp.birth, "st25dv16k")
    record = SignedRecord.sign(Entry(Kind.TELEMETRY, 2, pp.birth.digest, 0), pp.cell)
    return with_entries(image, record), pp.store


def _entry_from_other_passport() -> tuple[Image, CertificateStore]:
    """Entry 2 of another cell's passport (same OEM) swapped in for our entry 2."""
    pp, other = passport(), passport(seed=2, battery_id="ACME.0002")
    ours, theirs = cell_entries(pp, 3), cell_entries(other, 3)
    return with_entries(ours, ours.entries[0], theirs.entries[1], ours.entries[2]), pp.store


def _entries_reordered() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 3)
    first, second, third = image.entries
    return with_entries(image, first, third, second), pp.store


def _entry_dropped() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 3)
    first, _, third = image.entries
    return with_entries(image, first, third), pp.store


def _entry_duplicated() -> tuple[Image, CertificateStore]:
    pp = passport()
    image = cell_entries(pp, 2)
    return with_entries(image, *image.entries, image.entries[-1]), pp.store


def _birth_replaced() -> tuple[Image, CertificateStore]:
    """Our history under another (validly signed) birth record."""
    pp, other = passport(), passport(seed=2, battery_id="ACME.0002")
    image = cell_entries(pp, 2)
    return replace(image, birth=other.birth), pp.store


def _checkpoint_other_cell() -> tuple[Image, CertificateStore]:
    """Another cell's checkpoint: its signature fails under our cell key first."""
    pp, image = checkpoint_image()
    _, other = checkpoint_image_for(seed=2)
    return replace(image, checkpoint=other.checkpoint), pp.store


def checkpoint_image_for(seed: int) -> tuple[Passport, Image]:
    """A valid birth + checkpoint image for another cell (another passport)."""
    pp = passport(seed=seed, battery_id=f"ACME.{seed:04d}")
    image = cell_entries(pp, 2, "ntag216")
    last = image.entries[-1]
    assert isinstance(last.body, Entry)
    checkpoint = SignedRecord.sign(
        Checkpoint(last.body.seq, last.digest, last.body.time, pp.birth.digest), pp.cell
    )
    return pp, Image(image.profile, pp.birth, checkpoint)


def _checkpoint_other_passport_same_cell() -> tuple[Image, CertificateStore]:
    """The cell was issued a second passport (same cell key, new passport id): a checkpoint
    written for the first passport does not belong to the second."""
    pp, image = checkpoint_image()
    reissued = replace(pp.birth.body, passport_id=uuid.UUID(int=99))
    second_birth = sign_birth(reissued)  # type: ignore[arg-type]
    return replace(image, birth=second_birth), pp.store


def _checkpoint_birth_hash_wrong() -> tuple[Image, CertificateStore]:
    pp, image = checkpoint_image()
    checkpoint = resigned_checkpoint(image, pp.cell, birth=hashlib.sha256(b"x").digest())
    return replace(image, checkpoint=checkpoint), pp.store


def _checkpoint_signed_by_oem() -> tuple[Image, CertificateStore]:
    pp, image = checkpoint_image()
    return replace(image, checkpoint=resigned_checkpoint(image, actor(OEM)[0])), pp.store


def _checkpoint_signed_by_other_cell() -> tuple[Image, CertificateStore]:
    pp, image = checkpoint_image()
    return replace(image, checkpoint=resigned_checkpoint(image, cell_key(2))), pp.store


def _checkpoint_head_wrong() -> tuple[Image, CertificateStore]:
    pp, image = checkpoint_image()
    head = hashlib.sha256(b"not the last evicted entry").digest()
    return replace(image, checkpoint=resigned_checkpoint(image, pp.cell, head=head)), pp.store


def _checkpoint_count_wrong() -> tuple[Image, CertificateStore]:
    pp, image = checkpoint_image()
    assert image.checkpoint is not None
    count = image.checkpoint.body.count + 1  # type: ignore[union-attr]
    return replace(image, checkpoint=resigned_checkpoint(image, pp.cell, count=count)), pp.store


def _entry_forged_with_ed25519_identity() -> tuple[Image, CertificateStore]:
    """Sanity: the all-zero 'signature trick' does not verify under a real cell key."""
    pp = passport()
    image = Image.create(pp.birth, "st25dv16k")
    payload = SignedRecord.sign(Entry(Kind.TELEMETRY, 1, pp.birth.digest, 0), pp.cell)
    forged = forge_identity_signature(payload.payload_bytes)
    return with_entries(image, forged), pp.store


ADVERSARIAL: dict[str, tuple[Callable[[], tuple[Image, CertificateStore]], str]] = {
    "birth-signed-by-other-oem-key": (_birth_wrong_oem_key, "chain.birth-signature"),
    "birth-cert-missing": (_birth_cert_missing, "trust.cert-unknown"),
    "birth-payload-swapped": (_birth_body_changed, "chain.birth-signature"),
    "birth-replaced": (_birth_replaced, "chain.prev-mismatch"),
    "entry-signed-by-other-cell": (_entry_other_cell, "chain.entry-signature"),
    "entry-signed-by-actor-as-cell": (_entry_p256_without_x5t, "chain.entry-signature"),
    "entry-actor-wrong-key": (_entry_actor_wrong_key, "chain.entry-signature"),
    "entry-actor-cert-missing": (_entry_actor_cert_missing, "trust.cert-unknown"),
    "entry-prev-wrong": (_entry_prev_wrong, "chain.prev-mismatch"),
    "first-entry-prev-not-birth": (_entry_first_prev_not_birth, "chain.prev-mismatch"),
    "seq-gap": (_seq_gap, "chain.seq-gap"),
    "seq-repeated": (_seq_repeated, "chain.seq-gap"),
    "first-seq-not-one": (_first_seq_not_one, "chain.seq-gap"),
    "entry-from-other-passport": (_entry_from_other_passport, "chain.prev-mismatch"),
    "entries-reordered": (_entries_reordered, "chain.prev-mismatch"),
    "entry-dropped": (_entry_dropped, "chain.prev-mismatch"),
    "entry-duplicated": (_entry_duplicated, "chain.prev-mismatch"),
    "checkpoint-from-other-cell": (_checkpoint_other_cell, "chain.checkpoint-signature"),
    "checkpoint-from-other-passport-same-cell": (
        _checkpoint_other_passport_same_cell,
        "chain.checkpoint-birth",
    ),
    "checkpoint-birth-hash-wrong": (_checkpoint_birth_hash_wrong, "chain.checkpoint-birth"),
    "checkpoint-signed-by-oem": (_checkpoint_signed_by_oem, "chain.checkpoint-signature"),
    "checkpoint-signed-by-other-cell": (
        _checkpoint_signed_by_other_cell,
        "chain.checkpoint-signature",
    ),
    "checkpoint-head-not-first-prev": (_checkpoint_head_wrong, "chain.prev-mismatch"),
    "checkpoint-count-off-by-one": (_checkpoint_count_wrong, "chain.seq-gap"),
    "identity-signature-under-real-key": (
        _entry_forged_with_ed25519_identity,
        "chain.entry-signature",
    ),
}


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_adversarial_image(name: str) -> None:
    """The image survives encoding (it is well-formed) and verify_image refuses it with the
    rule; the error class matches the rule family."""
    build, rule = ADVERSARIAL[name]
    image, certs = build()
    decoded = Image.from_bytes(image.to_bytes())
    assert decoded == image
    with pytest.raises(VerificationError) as info:
        verify_image(decoded, certs)
    assert info.value.rule == rule, str(info.value)
    assert rule in RULES
    if rule.endswith("-signature"):
        assert isinstance(info.value, SignatureError)
    elif rule.startswith("chain."):
        assert isinstance(info.value, ChainError)


def test_adversarial_stores_hold_the_honest_certificates() -> None:
    """The honest versions of the table's images verify with the same stores, so each refusal
    comes from the forgery and not from a missing certificate."""
    pp = passport()
    image = cell_entries(pp, 3)
    image, _ = image.append(measurement(image))
    assert verify_image(image, store(OEM, TEST_LAB, RECYCLER)).signers[-1] == f"CN={TEST_LAB}"
    cp_pp, cp_image = checkpoint_image()
    verify_image(cp_image, cp_pp.store)
    other_pp, other = checkpoint_image_for(seed=2)
    verify_image(other, other_pp.store)


# --------------------------------------------------------------------------------------------
# Weak cell keys (chain.cell-key)

P = 2**255 - 19
IDENTITY_POINT = (1).to_bytes(32, "little")  # y = 1, x = 0: the neutral element (order 1)
OFF_CURVE = (2).to_bytes(32, "little")  # y = 2 has no x on edwards25519
NON_CANONICAL = (P + 1).to_bytes(32, "little")  # y = p + 1, the identity encoded out of range


def forge_identity_signature(payload_bytes: bytes) -> SignedRecord:
    """A cell-signed record whose "signature" is R = identity, S = 0. It verifies under the
    identity public key for every message ([0]B == R + [k]O), and under no real key."""
    signature = IDENTITY_POINT + bytes(32)
    protected = b"\xa1\x01\x32"
    unsigned = record_bytes(payload_bytes, cell_key(0), protected)
    return SignedRecord.from_bytes(unsigned[:-64] + signature)


def test_no_32_byte_string_is_rejected_as_an_ed25519_key() -> None:
    """chain.cell_public_key relies on Ed25519PublicKey.from_public_bytes raising ValueError,
    but cryptography (OpenSSL) accepts any 32 bytes; so chain.cell-key cannot fire for a
    decodable birth. Documented here: if this starts failing, add a chain.cell-key case."""
    for raw in (IDENTITY_POINT, OFF_CURVE, NON_CANONICAL, bytes(32), b"\xff" * 32):
        ed25519.Ed25519PublicKey.from_public_bytes(raw)


@pytest.mark.parametrize(
    "weak_key",
    [IDENTITY_POINT, OFF_CURVE, NON_CANONICAL],
    ids=["identity-point", "off-curve", "non-canonical"],
)
def test_birth_certifying_a_weak_cell_key_is_refused(weak_key: bytes) -> None:
    """BUG: the rule table promises chain.cell-key ("the birth record certifies a valid
    Ed25519 cell key"), but a birth certifying a point that is not on the curve, the neutral
    element, or a non-canonical encoding verifies."""
    birth = sign_birth(birth_body(cell_key(1), cell_public_key=weak_key))
    image = Image.create(birth, "st25dv16k")
    with pytest.raises(ChainError) as info:
        verify_image(image, store(OEM))
    assert info.value.rule == "chain.cell-key"


def test_identity_cell_key_lets_anyone_forge_entries() -> None:
    """BUG (consequence of the above): with the identity point certified as the cell key, an
    entry nobody signed verifies as "cell". Any verifier accepting this image accepts
    arbitrary history."""
    birth = sign_birth(birth_body(cell_key(1), cell_public_key=IDENTITY_POINT))
    image = Image.create(birth, "st25dv16k")
    lie = Entry(Kind.TELEMETRY, 1, birth.digest, 0, Values(fec_deci=0, soh_capacity_cpct=10_000))
    payload = SignedRecord.sign(lie, cell_key(9)).payload_bytes
    image, _ = image.append(forge_identity_signature(payload))
    with pytest.raises(VerificationError):
        verify_image(image, store(OEM))


# --------------------------------------------------------------------------------------------
# Certificates looked up by x5t


def test_right_certificate_found_among_several() -> None:
    """With many certificates in the store, each record is verified with the one its x5t
    names, and the signer reported is that certificate's subject."""
    names = [f"Lab {i}" for i in range(6)]
    certs = store(OEM, *names)
    assert len(certs) == 7
    pp = passport()
    image = cell_entries(pp, 1)
    for name in (names[4], names[1]):
        image, _ = image.append(measurement(image, name))
    verified = verify_image(image, certs)
    assert verified.signers == (f"CN={OEM}", "cell", "CN=Lab 4", "CN=Lab 1")
    for name in names:
        assert certs.find(x5t_of(name)) == [actor(name)[1]]
        assert certs.find(x5t_of(name, cose.ALG_SHA256)) == [actor(name)[1]]


class CollidingStore(CertificateStore):
    """A store in which every truncated x5t also matches some decoys (listed first), as a
    64-bit hash collision would: verification must try each candidate."""

    def __init__(self, certs: list[x509.Certificate], decoys: list[x509.Certificate]) -> None:
        super().__init__(certs)
        self.decoys = decoys

    def find(self, x5t: X5t) -> list[x509.Certificate]:
        return [*self.decoys, *super().find(x5t)]


def test_truncated_x5t_collision_tries_every_candidate() -> None:
    """A decoy sharing the thumbprint does not hide the real signer, nor get credited."""
    decoys = [actor("Decoy A")[1], actor("Decoy B")[1]]
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    colliding = CollidingStore([actor(OEM)[1], actor(TEST_LAB)[1]], decoys)
    assert verify_image(image, colliding).signers == (
        f"CN={OEM}",
        "cell",
        f"CN={TEST_LAB}",
    )


@pytest.mark.parametrize(
    ("signer", "rule"),
    [(OEM, "chain.birth-signature"), (TEST_LAB, "chain.entry-signature")],
)
def test_collision_with_only_decoys_is_refused(signer: str, rule: str) -> None:
    """If none of the candidates verifies, the record is refused (not credited to a decoy)."""
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    honest = [actor(name)[1] for name in (OEM, TEST_LAB) if name != signer]

    class OnlyDecoys(CertificateStore):
        def find(self, x5t: X5t) -> list[x509.Certificate]:
            real = actor(signer)[1]
            if x5t == thumbprint(real):
                return [actor("Decoy A")[1], actor("Decoy B")[1]]
            return super().find(x5t)

    with pytest.raises(SignatureError) as info:
        verify_image(image, OnlyDecoys(honest))
    assert info.value.rule == rule
