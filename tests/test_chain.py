"""passport.chain: signatures, signers and hash links of a whole image.

Each adversarial image below decodes (it is well-formed, every record genuinely signed by
someone) and must still be refused by `verify_image` with the rule naming what is wrong, and
reported by `check_image` with that rule at the record concerned. Images the writer refuses to
build are assembled with `Image(...)` directly. Verifiers take a `TrustBundle` of the test PKI
(factories.trust): every actor certificate chains to its root.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from factories import (
    T0,
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
    trust,
    trust_with,
)

from passport import cose
from passport.chain import (
    RULES,
    Finding,
    Report,
    check_image,
    check_image_bytes,
    check_records,
    verify_image,
)
from passport.errors import VerificationError
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
from passport.trust.bundle import TrustBundle
from passport.trust.keys import self_signed_certificate
from passport.trust.policy import Policy
from passport.trust.store import thumbprint

OEM = "ACME OEM"
RECYCLER = "Circular Metals Recycling"


def x5t_of(name: str, alg: int = cose.ALG_SHA256_64) -> X5t:
    return thumbprint(actor(name)[1], alg)


def at(seq: int) -> int:
    """The time next_entry gives entry `seq` (an hour per entry after the birth at T0)."""
    return T0 + 3600 * seq


def signers(report: Report) -> tuple[str, ...]:
    return tuple(r.signer for r in report.records)


def rules(report: Report) -> list[tuple[str, int | None]]:
    return [(f.rule, f.index) for f in report.findings]


def measurement(image: Image, lab: str = TEST_LAB, *, key_of: str | None = None) -> SignedRecord:
    """A test lab's measurement continuing `image`, naming `lab`'s certificate (signed with
    `key_of`'s key when given, to make a mismatch)."""
    key = actor(key_of or lab)[0]
    values = Values(soh_capacity_cpct=9400, soh_method=SohMethod.CAPACITY_TEST)
    return next_entry(image, key, values, kind=Kind.MEASUREMENT, x5t=x5t_of(lab))


def actor_entry(image: Image, name: str, kind: Kind, values: Values = Values()) -> SignedRecord:
    """An entry of `kind` continuing `image`, signed by actor `name` (x5t of its certificate)."""
    return next_entry(image, actor(name)[0], values, kind=kind, x5t=x5t_of(name))


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


def test_report_names_every_signer() -> None:
    """Birth by the OEM, entries by the cell, a measurement by the lab, a status by the
    recycler: one signer per record, in image order, labelled with the role that allowed it."""
    pp = passport()
    image = cell_entries(pp, 2)
    image, _ = image.append(measurement(image))
    image, _ = image.append(next_entry(image, pp.cell, telemetry_values(4)))
    image, _ = image.append(actor_entry(image, RECYCLER, Kind.STATUS, Values(status=Status.WASTE)))

    report = verify_image(image, trust(OEM, TEST_LAB, RECYCLER))
    assert isinstance(report, Report)
    assert report.valid
    assert report.findings == ()
    assert signers(report) == (
        f"oem: {OEM}",
        "cell",
        "cell",
        f"tester: {TEST_LAB}",
        "cell",
        f"recycler: {RECYCLER}",
    )
    assert report.birth == pp.birth.body
    assert [r.sha256 for r in report.records] == [r.digest.hex() for r in image.records]
    assert [r.index for r in report.records] == list(range(6))
    assert [r.kind for r in report.records] == [
        "birth", "telemetry", "telemetry", "measurement", "telemetry", "status",
    ]  # fmt: skip
    assert [r.seq for r in report.records] == [None, 1, 2, 3, 4, 5]
    assert [r.time for r in report.records] == [T0, *(at(seq) for seq in range(1, 6))]


def test_checkpoint_is_signed_by_the_cell() -> None:
    pp, image = checkpoint_image("st25dv16k", entries=3)
    report = verify_image(image, pp.store)
    assert signers(report) == (f"oem: {OEM}", "cell", "cell", "cell", f"tester: {TEST_LAB}")
    checkpoint = report.records[1]
    assert (checkpoint.kind, checkpoint.seq, checkpoint.time) == ("checkpoint", None, at(2))


def test_image_with_evicted_history_verifies() -> None:
    """After real evictions the first entry on memory links to the checkpoint's head."""
    pp = passport()
    image, _, evicted = grow(Image.create(pp.birth, "ntag216"), pp.cell, 12)
    assert evicted
    assert image.checkpoint is not None
    assert signers(verify_image(image, pp.store))[:2] == (f"oem: {OEM}", "cell")


def test_checkpoint_without_entries_verifies() -> None:
    pp, image = checkpoint_image()
    assert signers(verify_image(with_entries(image), pp.store)) == (f"oem: {OEM}", "cell")


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
    assert signers(verify_image(image, pp.store))[-1] == f"tester: {TEST_LAB}"


# --------------------------------------------------------------------------------------------
# The report


def test_report_of_a_valid_image() -> None:
    """check_image and verify_image give the same report; it serialises for `verify --json`."""
    pp, image = checkpoint_image("st25dv16k", entries=3)
    bundle = pp.store
    report = check_image(image, bundle)
    assert verify_image(image, bundle) == report
    assert check_image_bytes(image.to_bytes(), bundle) == report
    assert check_records(image.records, bundle) == report
    assert report.policy_sha256 == Policy.default().sha256 == bundle.policy.sha256
    data = report.to_dict()
    assert data == {
        "valid": True,
        "failures": [],
        "battery_id": pp.birth.body.battery_id,  # type: ignore[union-attr]
        "passport_id": str(pp.birth.body.passport_id),  # type: ignore[union-attr]
        "records": [r.to_dict() for r in report.records],
        "policy_sha256": bundle.policy.sha256,
    }
    assert data["records"][0] == {
        "record": 0,
        "kind": "birth",
        "seq": None,
        "time": T0,
        "signer": f"oem: {OEM}",
        "sha256": pp.birth.digest.hex(),
    }


def test_report_lists_every_finding() -> None:
    """Not just the first failure: every failed rule, with the record it concerns, in order;
    verify_image raises the first, naming its record."""
    pp, other = passport(), passport(seed=2, battery_id="ACME.0002")
    image = replace(cell_entries(pp, 2), birth=other.birth)
    report = check_image(image, pp.store)
    assert not report.valid
    assert rules(report) == [
        ("chain.prev-mismatch", 1),
        ("chain.entry-signature", 1),
        ("chain.entry-signature", 2),
    ]
    assert signers(report) == (f"oem: {OEM}", "?", "?")
    assert all(isinstance(f, Finding) and f.message for f in report.findings)
    assert report.to_dict()["failures"][0] == {
        "rule": "chain.prev-mismatch",
        "record": 1,
        "message": report.findings[0].message,
    }
    with pytest.raises(VerificationError) as info:
        verify_image(image, pp.store)
    assert info.value.rule == "chain.prev-mismatch"
    assert str(info.value) == f"record 1: {report.findings[0].message} [chain.prev-mismatch]"


def test_undecodable_bytes_are_one_finding() -> None:
    """check_image_bytes never raises for bad bytes: one finding about the whole passport."""
    bundle = passport().store
    report = check_image_bytes(b"\xe1\x40\x6f\x00" + bytes(884), bundle)
    assert not report.valid
    (finding,) = report.findings
    assert finding.index is None
    assert finding.rule.startswith("image.")
    assert report.records == ()
    assert report.birth is None
    data = report.to_dict()
    assert "battery_id" not in data
    assert data["records"] == []
    assert data["policy_sha256"] == bundle.policy.sha256


def test_history_not_starting_with_a_birth() -> None:
    pp = passport()
    entries = cell_entries(pp, 1).entries
    report = check_records(entries, pp.store)
    assert rules(report) == [("image.order", 0)]
    assert check_records([], pp.store).findings[0].rule == "image.order"


# --------------------------------------------------------------------------------------------
# Adversarial images


def _birth_wrong_oem_key() -> tuple[Image, TrustBundle]:
    """Signed by another OEM's key while naming ACME's certificate."""
    pp = passport()
    forged = sign_birth(pp.birth.body, OEM, key=actor("Rogue OEM")[0])  # type: ignore[arg-type]
    return Image.create(forged, "st25dv16k"), trust(OEM, "Rogue OEM")


def _birth_cert_missing() -> tuple[Image, TrustBundle]:
    pp = passport()
    return Image.create(pp.birth, "st25dv16k"), trust(TEST_LAB)


def _birth_self_signed_oem() -> tuple[Image, TrustBundle]:
    """A self-signed certificate in the bundle's certs does not make its key an OEM: it does
    not chain to an anchor."""
    key = ec.derive_private_key(0x5E1F, ec.SECP256R1())
    cert = self_signed_certificate(key, OEM, now=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    pp = passport()
    birth = SignedRecord.sign(pp.birth.body, key, x5t=thumbprint(cert))
    return Image.create(birth, "st25dv16k"), trust_with([cert, actor(TEST_LAB)[1]])


def _birth_by_tester() -> tuple[Image, TrustBundle]:
    """A test lab's genuine certificate may not issue passports."""
    pp = passport()
    birth = sign_birth(pp.birth.body, TEST_LAB)  # type: ignore[arg-type]
    return Image.create(birth, "st25dv16k"), pp.store


def _birth_body_changed() -> tuple[Image, TrustBundle]:
    """The OEM's signature copied onto a birth with another cell key: signature fails."""
    pp, other = passport(), passport(seed=2)
    spliced = SignedRecord.from_bytes(
        other.birth.raw[:-64] + pp.birth.signature  # same header and size, other payload
    )
    return Image.create(spliced, "st25dv16k"), pp.store


def _entry_other_cell() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 1)
    return with_entries(image, *image.entries, next_entry(image, cell_key(2))), pp.store


def _entry_p256_without_x5t() -> tuple[Image, TrustBundle]:
    """An actor key signing as if it were the cell (no x5t): alg does not fit the cell key."""
    pp = passport()
    image = cell_entries(pp, 1)
    return with_entries(image, *image.entries, next_entry(image, actor(OEM)[0])), pp.store


def _entry_actor_wrong_key() -> tuple[Image, TrustBundle]:
    """Names the lab's certificate, signed by the recycler's key."""
    pp = passport()
    image = cell_entries(pp, 1)
    forged = measurement(image, key_of=RECYCLER)
    return with_entries(image, *image.entries, forged), trust(OEM, TEST_LAB, RECYCLER)


def _entry_actor_cert_missing() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    return image, trust(OEM)


def _entry_tester_writes_telemetry() -> tuple[Image, TrustBundle]:
    """A tester's genuine signature on a kind its role may not write."""
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(actor_entry(image, TEST_LAB, Kind.TELEMETRY, telemetry_values(2)))
    return image, pp.store


def _entry_cell_writes_measurement() -> tuple[Image, TrustBundle]:
    """The cell may report telemetry, not a laboratory measurement."""
    pp = passport()
    image = cell_entries(pp, 1)
    values = Values(soh_capacity_cpct=9400, soh_method=SohMethod.CAPACITY_TEST)
    image, _ = image.append(next_entry(image, pp.cell, values, kind=Kind.MEASUREMENT))
    return image, pp.store


def _entry_prev_wrong() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 1)
    seq, prev = image.next_link()
    bad = SignedRecord.sign(
        Entry(Kind.TELEMETRY, seq, hashlib.sha256(prev).digest(), at(seq)), pp.cell
    )
    return with_entries(image, *image.entries, bad), pp.store


def _entry_first_prev_not_birth() -> tuple[Image, TrustBundle]:
    pp = passport()
    bad = SignedRecord.sign(Entry(Kind.TELEMETRY, 1, bytes(32), at(1)), pp.cell)
    return Image(Image.create(pp.birth, "st25dv16k").profile, pp.birth, None, (bad,)), pp.store


def _seq_gap() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 2)
    seq, prev = image.next_link()
    skipping = SignedRecord.sign(Entry(Kind.TELEMETRY, seq + 1, prev, at(seq)), pp.cell)
    return with_entries(image, *image.entries, skipping), pp.store


def _seq_repeated() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 2)
    seq, prev = image.next_link()
    repeat = SignedRecord.sign(Entry(Kind.TELEMETRY, seq - 1, prev, at(seq)), pp.cell)
    return with_entries(image, *image.entries, repeat), pp.store


def _first_seq_not_one() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = Image.create(pp.birth, "st25dv16k")
    record = SignedRecord.sign(Entry(Kind.TELEMETRY, 2, pp.birth.digest, at(1)), pp.cell)
    return with_entries(image, record), pp.store


def _entry_from_other_passport() -> tuple[Image, TrustBundle]:
    """Entry 2 of another cell's passport (same OEM) swapped in for our entry 2."""
    pp, other = passport(), passport(seed=2, battery_id="ACME.0002")
    ours, theirs = cell_entries(pp, 3), cell_entries(other, 3)
    return with_entries(ours, ours.entries[0], theirs.entries[1], ours.entries[2]), pp.store


def _entries_reordered() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 3)
    first, second, third = image.entries
    return with_entries(image, first, third, second), pp.store


def _entry_dropped() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 3)
    first, _, third = image.entries
    return with_entries(image, first, third), pp.store


def _entry_duplicated() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 2)
    return with_entries(image, *image.entries, image.entries[-1]), pp.store


def _birth_replaced() -> tuple[Image, TrustBundle]:
    """Our history under another (validly signed) birth record."""
    pp, other = passport(), passport(seed=2, battery_id="ACME.0002")
    image = cell_entries(pp, 2)
    return replace(image, birth=other.birth), pp.store


def _entry_time_backwards() -> tuple[Image, TrustBundle]:
    """Correctly linked and signed, but claiming a time before the entry it follows."""
    pp = passport()
    image = cell_entries(pp, 2)
    early = next_entry(image, pp.cell, telemetry_values(3), time=at(1) - 1)
    image, _ = image.append(early)
    return image, pp.store


def _entry_before_birth() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = Image.create(pp.birth, "st25dv16k")
    image, _ = image.append(next_entry(image, pp.cell, telemetry_values(1), time=T0 - 1))
    return image, pp.store


def _entry_in_the_future() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 1)
    tomorrow = int(dt.datetime.now(dt.UTC).timestamp()) + 86_400
    image, _ = image.append(next_entry(image, pp.cell, telemetry_values(2), time=tomorrow))
    return image, pp.store


def _counter_decreased() -> tuple[Image, TrustBundle]:
    pp = passport()
    image = cell_entries(pp, 3)
    rolled_back = telemetry_values(4)._replace(fec_deci=telemetry_values(3).fec_deci - 1)
    image, _ = image.append(next_entry(image, pp.cell, rolled_back))
    return image, pp.store


def _soh_rise() -> tuple[Image, TrustBundle]:
    """The lab measured 94.00 %; the cell then claims 95.00 % with no stated uncertainty (the
    tolerance is the 0.5-point floor)."""
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    better = telemetry_values(3)._replace(soh_capacity_cpct=9500)
    image, _ = image.append(next_entry(image, pp.cell, better))
    return image, pp.store


def _status_after_waste() -> tuple[Image, TrustBundle]:
    """Waste is final: the recycler may not declare the cell reused afterwards."""
    pp = passport()
    image = cell_entries(pp, 1)
    for status in (Status.WASTE, Status.REUSED):
        image, _ = image.append(actor_entry(image, RECYCLER, Kind.STATUS, Values(status=status)))
    return image, trust(OEM, RECYCLER)


def _checkpoint_other_cell() -> tuple[Image, TrustBundle]:
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


def _checkpoint_other_passport_same_cell() -> tuple[Image, TrustBundle]:
    """The cell was issued a second passport (same cell key, new passport id): a checkpoint
    written for the first passport does not belong to the second."""
    pp, image = checkpoint_image()
    reissued = replace(pp.birth.body, passport_id=uuid.UUID(int=99))
    second_birth = sign_birth(reissued)  # type: ignore[arg-type]
    return replace(image, birth=second_birth), pp.store


def _checkpoint_birth_hash_wrong() -> tuple[Image, TrustBundle]:
    pp, image = checkpoint_image()
    checkpoint = resigned_checkpoint(image, pp.cell, birth=hashlib.sha256(b"x").digest())
    return replace(image, checkpoint=checkpoint), pp.store


def _checkpoint_signed_by_oem() -> tuple[Image, TrustBundle]:
    pp, image = checkpoint_image()
    return replace(image, checkpoint=resigned_checkpoint(image, actor(OEM)[0])), pp.store


def _checkpoint_signed_by_other_cell() -> tuple[Image, TrustBundle]:
    pp, image = checkpoint_image()
    return replace(image, checkpoint=resigned_checkpoint(image, cell_key(2))), pp.store


def _checkpoint_head_wrong() -> tuple[Image, TrustBundle]:
    pp, image = checkpoint_image()
    head = hashlib.sha256(b"not the last evicted entry").digest()
    return replace(image, checkpoint=resigned_checkpoint(image, pp.cell, head=head)), pp.store


def _checkpoint_count_wrong() -> tuple[Image, TrustBundle]:
    pp, image = checkpoint_image()
    assert image.checkpoint is not None
    count = image.checkpoint.body.count + 1  # type: ignore[union-attr]
    return replace(image, checkpoint=resigned_checkpoint(image, pp.cell, count=count)), pp.store


def _entry_forged_with_ed25519_identity() -> tuple[Image, TrustBundle]:
    """Sanity: the all-zero 'signature trick' does not verify under a real cell key."""
    pp = passport()
    image = Image.create(pp.birth, "st25dv16k")
    payload = SignedRecord.sign(Entry(Kind.TELEMETRY, 1, pp.birth.digest, at(1)), pp.cell)
    forged = forge_identity_signature(payload.payload_bytes)
    return with_entries(image, forged), pp.store


Build = Callable[[], tuple[Image, TrustBundle]]

# name -> (builder, rule of the first finding, record it concerns)
ADVERSARIAL: dict[str, tuple[Build, str, int]] = {
    "birth-signed-by-other-oem-key": (_birth_wrong_oem_key, "chain.birth-signature", 0),
    "birth-cert-missing": (_birth_cert_missing, "trust.cert-unknown", 0),
    "birth-self-signed-oem-cert": (_birth_self_signed_oem, "trust.chain-invalid", 0),
    "birth-signed-by-tester": (_birth_by_tester, "policy.write-denied", 0),
    "birth-payload-swapped": (_birth_body_changed, "chain.birth-signature", 0),
    "birth-replaced": (_birth_replaced, "chain.prev-mismatch", 1),
    "entry-signed-by-other-cell": (_entry_other_cell, "chain.entry-signature", 2),
    # ES256 under the cell's Ed25519 key: the COSE layer names the mismatch precisely.
    "entry-signed-by-actor-as-cell": (_entry_p256_without_x5t, "cose.alg-key-mismatch", 2),
    "entry-actor-wrong-key": (_entry_actor_wrong_key, "chain.entry-signature", 2),
    "entry-actor-cert-missing": (_entry_actor_cert_missing, "trust.cert-unknown", 2),
    "entry-tester-writes-telemetry": (_entry_tester_writes_telemetry, "policy.write-denied", 2),
    "entry-cell-writes-measurement": (_entry_cell_writes_measurement, "policy.write-denied", 2),
    "entry-prev-wrong": (_entry_prev_wrong, "chain.prev-mismatch", 2),
    "first-entry-prev-not-birth": (_entry_first_prev_not_birth, "chain.prev-mismatch", 1),
    "seq-gap": (_seq_gap, "chain.seq-gap", 3),
    "seq-repeated": (_seq_repeated, "chain.seq-gap", 3),
    "first-seq-not-one": (_first_seq_not_one, "chain.seq-gap", 1),
    "entry-from-other-passport": (_entry_from_other_passport, "chain.prev-mismatch", 2),
    "entries-reordered": (_entries_reordered, "chain.prev-mismatch", 2),
    "entry-dropped": (_entry_dropped, "chain.prev-mismatch", 2),
    "entry-duplicated": (_entry_duplicated, "chain.prev-mismatch", 3),
    "entry-time-backwards": (_entry_time_backwards, "chain.time-backwards", 3),
    "entry-before-birth": (_entry_before_birth, "chain.time-backwards", 1),
    "entry-in-the-future": (_entry_in_the_future, "chain.time-future", 2),
    "counter-decreased": (_counter_decreased, "chain.counter-decreased", 4),
    "soh-rise": (_soh_rise, "chain.soh-rise", 3),
    "status-after-waste": (_status_after_waste, "chain.status-transition", 3),
    "checkpoint-from-other-cell": (_checkpoint_other_cell, "chain.checkpoint-signature", 1),
    "checkpoint-from-other-passport-same-cell": (
        _checkpoint_other_passport_same_cell,
        "chain.checkpoint-birth",
        1,
    ),
    "checkpoint-birth-hash-wrong": (_checkpoint_birth_hash_wrong, "chain.checkpoint-birth", 1),
    # ES256 under the cell's Ed25519 key, as for the entry above.
    "checkpoint-signed-by-oem": (_checkpoint_signed_by_oem, "cose.alg-key-mismatch", 1),
    "checkpoint-signed-by-other-cell": (
        _checkpoint_signed_by_other_cell,
        "chain.checkpoint-signature",
        1,
    ),
    "checkpoint-head-not-first-prev": (_checkpoint_head_wrong, "chain.prev-mismatch", 2),
    "checkpoint-count-off-by-one": (_checkpoint_count_wrong, "chain.seq-gap", 2),
    "identity-signature-under-real-key": (
        _entry_forged_with_ed25519_identity,
        "chain.entry-signature",
        1,
    ),
}

# Cases whose one fault is the only finding (the others also break links after them).
SINGLE_FAULT = {
    "birth-signed-by-other-oem-key", "birth-cert-missing", "birth-self-signed-oem-cert",
    "birth-signed-by-tester", "birth-payload-swapped", "entry-signed-by-other-cell",
    "entry-signed-by-actor-as-cell", "entry-actor-wrong-key", "entry-actor-cert-missing",
    "entry-tester-writes-telemetry", "entry-cell-writes-measurement", "entry-prev-wrong",
    "first-entry-prev-not-birth", "seq-gap", "seq-repeated", "first-seq-not-one",
    "entry-time-backwards", "entry-before-birth", "entry-in-the-future", "counter-decreased",
    "soh-rise", "status-after-waste", "checkpoint-birth-hash-wrong", "checkpoint-signed-by-oem",
    "checkpoint-head-not-first-prev", "checkpoint-count-off-by-one",
    "identity-signature-under-real-key",
}  # fmt: skip


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_adversarial_image(name: str) -> None:
    """The image survives encoding (it is well-formed); check_image reports the rule at the
    record concerned first, and verify_image refuses it with that rule, naming the record."""
    build, rule, index = ADVERSARIAL[name]
    image, bundle = build()
    decoded = Image.from_bytes(image.to_bytes())
    assert decoded == image
    report = check_image(decoded, bundle)
    assert not report.valid
    assert rules(report)[0] == (rule, index), report.findings
    if name in SINGLE_FAULT:
        assert rules(report) == [(rule, index)], report.findings
    assert len(report.records) == len(image.records)
    with pytest.raises(VerificationError) as info:
        verify_image(decoded, bundle)
    assert info.value.rule == rule, str(info.value)
    assert info.value.reason.startswith(f"record {index}: ")
    assert rule in RULES or rule.startswith("cose.")


def test_single_fault_cases_exist() -> None:
    assert set(ADVERSARIAL) >= SINGLE_FAULT


def test_adversarial_stores_hold_the_honest_certificates() -> None:
    """The honest versions of the table's images verify with the same bundles, so each refusal
    comes from the forgery and not from a missing certificate or a rule the honest image
    breaks too."""
    pp = passport()
    image = cell_entries(pp, 3)
    image, _ = image.append(measurement(image))
    assert signers(verify_image(image, trust(OEM, TEST_LAB, RECYCLER)))[-1] == (
        f"tester: {TEST_LAB}"
    )
    image, _ = image.append(next_entry(image, pp.cell, telemetry_values(5)))
    image, _ = image.append(actor_entry(image, RECYCLER, Kind.STATUS, Values(status=Status.WASTE)))
    assert verify_image(image, trust(OEM, TEST_LAB, RECYCLER)).valid
    assert verify_image(cell_entries(pp, 3), trust(OEM, RECYCLER)).valid
    cp_pp, cp_image = checkpoint_image()
    verify_image(cp_image, cp_pp.store)
    other_pp, other = checkpoint_image_for(seed=2)
    verify_image(other, other_pp.store)


# --------------------------------------------------------------------------------------------
# Full histories (as the registry keeps them) and tags agree


def registry_history(pp: Passport, count: int) -> tuple[Image, list[SignedRecord]]:
    """A tag after `count` telemetry appends with evictions, and the full history: birth,
    every evicted record in order, then what is still on the tag."""
    image, _, evicted = grow(Image.create(pp.birth, "ntag216"), pp.cell, count)
    assert image.checkpoint is not None
    assert sum(r.kind is Kind.CHECKPOINT for r in evicted) >= 2
    return image, [pp.birth, *evicted, image.checkpoint, *image.entries]


def test_full_history_with_checkpoints_verifies() -> None:
    """Checkpoints inside a full history restate the entries before them; the report credits
    every record."""
    pp = passport()
    image, history = registry_history(pp, 16)
    report = check_records(history, pp.store)
    assert report.valid, report.findings
    assert len(report.records) == len(history)
    assert signers(report) == (f"oem: {OEM}", *("cell",) * (len(history) - 1))
    assert [r.seq for r in report.records if r.kind == "telemetry"] == list(range(1, 17))
    assert verify_image(image, pp.store).valid


@pytest.mark.parametrize(
    "change",
    [
        {"values": Values(fec_deci=1)},
        {"time": at(99)},
        {"head": bytes(32)},
    ],
    ids=["values", "time", "head"],
)
def test_checkpoint_contradicting_the_full_history(change: dict[str, object]) -> None:
    """A (cell-signed) checkpoint that does not restate the entries it stands for is caught
    when the registry's full history is checked."""
    pp = passport()
    _, history = registry_history(pp, 16)
    index = next(i for i, r in enumerate(history) if r.kind is Kind.CHECKPOINT)
    body = history[index].body
    assert isinstance(body, Checkpoint)
    history[index] = SignedRecord.sign(replace(body, **change), pp.cell)  # type: ignore[arg-type]
    report = check_records(history, pp.store)
    assert ("chain.checkpoint-mismatch", index) in rules(report)


def test_eviction_does_not_widen_the_soh_tolerance() -> None:
    """BUG: the SoH-rise tolerance after a checkpoint uses the checkpoint's folded
    soh_sigma, which may come from an older report than the SoH it carries (a later report
    without a sigma does not override it). Entry 1 says 90.00 % +- 3.00, entry 2 says 89.00 %
    with no sigma (0, per the policy), entry N claims 95.00 % with no sigma: the full history
    fails chain.soh-rise (tolerance 0.5 points), but once entries 1 and 2 are evicted the tag
    verifies (tolerance 2 * 3.00 + 0.5 points). A tag's verdict must not depend on eviction."""
    pp = passport()
    image = Image.create(pp.birth, "ntag216")
    history = [pp.birth]

    def add(values: Values) -> None:
        nonlocal image
        record = next_entry(image, pp.cell, values)
        image, _ = image.append(record, cell_key=pp.cell)
        history.append(record)

    bms = SohMethod.BMS_ESTIMATE
    add(Values(fec_deci=10, soh_capacity_cpct=9000, soh_method=bms, soh_sigma_cpct=300))
    add(Values(fec_deci=20, soh_capacity_cpct=8900, soh_method=bms))
    i = 3
    while image.checkpoint is None or image.checkpoint.body.count < 2:  # type: ignore[union-attr]
        add(telemetry_values(i))
        i += 1
    add(telemetry_values(i)._replace(soh_capacity_cpct=9500, soh_method=bms))
    assert rules(check_records(history, pp.store)) == [("chain.soh-rise", len(history) - 1)]
    assert rules(check_image(image, pp.store)) == [("chain.soh-rise", len(image.records) - 1)]


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
    """cryptography (OpenSSL) accepts any 32 bytes as an Ed25519 public key, so
    chain.cell_public_key must check the point itself for chain.cell-key to fire. Documented
    here: if this starts failing, the library's own check may be simplified."""
    for raw in (IDENTITY_POINT, OFF_CURVE, NON_CANONICAL, bytes(32), b"\xff" * 32):
        ed25519.Ed25519PublicKey.from_public_bytes(raw)


@pytest.mark.parametrize(
    "weak_key",
    [IDENTITY_POINT, OFF_CURVE, NON_CANONICAL],
    ids=["identity-point", "off-curve", "non-canonical"],
)
def test_birth_certifying_a_weak_cell_key_is_refused(weak_key: bytes) -> None:
    """A birth certifying a point that is not on the curve, the neutral element, or a
    non-canonical encoding is refused with chain.cell-key."""
    birth = sign_birth(birth_body(cell_key(1), cell_public_key=weak_key))
    image = Image.create(birth, "st25dv16k")
    bundle = trust(OEM)
    assert rules(check_image(image, bundle)) == [("chain.cell-key", 0)]
    with pytest.raises(VerificationError) as info:
        verify_image(image, bundle)
    assert info.value.rule == "chain.cell-key"


def test_identity_cell_key_lets_nobody_forge_entries() -> None:
    """With the identity point certified as the cell key, an entry nobody signed would verify
    as "cell" if the key were used: the birth is refused and the entry credited to no one."""
    birth = sign_birth(birth_body(cell_key(1), cell_public_key=IDENTITY_POINT))
    image = Image.create(birth, "st25dv16k")
    lie = Entry(
        Kind.TELEMETRY, 1, birth.digest, at(1), Values(fec_deci=0, soh_capacity_cpct=10_000)
    )
    payload = SignedRecord.sign(lie, cell_key(9)).payload_bytes
    image, _ = image.append(forge_identity_signature(payload))
    report = check_image(image, trust(OEM))
    assert rules(report) == [("chain.cell-key", 0)]
    assert signers(report) == (f"oem: {OEM}", "?")
    with pytest.raises(VerificationError):
        verify_image(image, trust(OEM))


# --------------------------------------------------------------------------------------------
# Certificates looked up by x5t


def test_right_certificate_found_among_several() -> None:
    """With many certificates in the bundle, each record is verified with the one its x5t
    names, and the signer reported is that certificate's role and subject."""
    names = [f"Lab {i}" for i in range(6)]
    bundle = trust(OEM, *names)
    assert len(bundle.store) == 7 + len(bundle.intermediates)
    pp = passport()
    image = cell_entries(pp, 1)
    for name in (names[4], names[1]):
        image, _ = image.append(measurement(image, name))
    report = verify_image(image, bundle)
    assert signers(report) == (f"oem: {OEM}", "cell", "tester: Lab 4", "tester: Lab 1")
    for name in names:
        assert bundle.find(x5t_of(name)) == [actor(name)[1]]
        assert bundle.find(x5t_of(name, cose.ALG_SHA256)) == [actor(name)[1]]


class CollidingBundle(TrustBundle):
    """A bundle in which every truncated x5t also matches some decoys (listed first), as a
    64-bit hash collision would: verification must try each candidate."""

    decoys: tuple[x509.Certificate, ...] = ()

    def find(self, x5t: X5t) -> list[x509.Certificate]:
        return [*self.decoys, *super().find(x5t)]


def test_truncated_x5t_collision_tries_every_candidate() -> None:
    """A decoy sharing the thumbprint does not hide the real signer, nor get credited."""
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    colliding = trust_with([actor(OEM)[1], actor(TEST_LAB)[1]], cls=CollidingBundle)
    colliding.decoys = (actor("Decoy A")[1], actor("Decoy B")[1])  # type: ignore[attr-defined]
    assert signers(verify_image(image, colliding)) == (
        f"oem: {OEM}",
        "cell",
        f"tester: {TEST_LAB}",
    )


@pytest.mark.parametrize(
    ("signer", "rule", "index"),
    [(OEM, "chain.birth-signature", 0), (TEST_LAB, "chain.entry-signature", 2)],
)
def test_collision_with_only_decoys_is_refused(signer: str, rule: str, index: int) -> None:
    """If none of the candidates verifies, the record is refused (not credited to a decoy)."""
    pp = passport()
    image = cell_entries(pp, 1)
    image, _ = image.append(measurement(image))
    honest = [actor(name)[1] for name in (OEM, TEST_LAB) if name != signer]

    class OnlyDecoys(TrustBundle):
        def find(self, x5t: X5t) -> list[x509.Certificate]:
            real = actor(signer)[1]
            if x5t == thumbprint(real):
                return [actor("Decoy A")[1], actor("Decoy B")[1]]
            return super().find(x5t)

    bundle = trust_with(honest, cls=OnlyDecoys)
    report = check_image(image, bundle)
    assert rules(report) == [(rule, index)]
    assert report.records[index].signer == "?"
    with pytest.raises(VerificationError) as info:
        verify_image(image, bundle)
    assert info.value.rule == rule
