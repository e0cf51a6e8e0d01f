"""The adversarial corpus: every attack on a passport the trust model must catch, by name.

Each case builds what an attacker could hand a verifier (an image, a tag's bytes or a full
history), its records well-formed and genuinely signed by someone, and names the exact rule and
record the verifier must report first, plus any other finding it must also make. The accepted
table holds the legitimate twins of several attacks: without them, a rule that refused everything
would pass. The property tests at the end generate valid histories and show that one mutation of
any kind is always caught.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import functools
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attack_kit import (
    ACTORS,
    DAY,
    LAB,
    NOW,
    OEM,
    RECYCLER,
    REPURPOSER,
    Attack,
    Receipts,
    Step,
    actor_crls,
    appended,
    at,
    build,
    bundle,
    ca_material,
    fresh_actor,
    loaded_bundle,
    root_crl_revoking,
    rules,
    sign_step,
    signed_with_header,
    tag,
    telemetry,
    with_payload_of,
    with_signature,
    x5t_of,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from factories import T0, Passport, actor, birth_body, cell_key, passport, pki, sign_birth
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from passport import clone, cose
from passport.chain import RULES, check_image, check_image_bytes, verify_image
from passport.errors import VerificationError
from passport.image import Image
from passport.records import Checkpoint, Entry, Kind, SignedRecord, SohMethod, Status, Values
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.keys import load_private, self_signed_certificate
from passport.trust.policy import Policy
from passport.trust.roles import CELL, Role
from passport.trust.store import load_certificates, thumbprint

Expected = tuple[tuple[str, int | None], ...]
Builder = Callable[[], Attack]

PARENT = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
SKEW = Policy.default().max_clock_skew_s
NOW_S = int(NOW.timestamp())

# --------------------------------------------------------------------------------------------
# Building blocks


def history(pp: Passport | None = None, count: int = 3) -> list[SignedRecord]:
    """Birth and `count` cell telemetry entries, one hour apart."""
    return build(pp or passport(), [telemetry(i) for i in range(1, count + 1)])


def measured(
    soh: int,
    hours: int,
    *,
    signer: str = LAB,
    sigma: int | None = None,
    kind: Kind = Kind.MEASUREMENT,
    status: Status | None = None,
) -> Step:
    values = Values(
        soh_capacity_cpct=soh,
        soh_method=SohMethod.CAPACITY_TEST,
        soh_sigma_cpct=sigma,
        status=status,
    )
    return Step(signer, kind, values, T0 + 3600 * hours)


def status(
    value: Status, hours: int, *, signer: str = RECYCLER, parents: tuple[uuid.UUID, ...] = ()
) -> Step:
    return Step(signer, Kind.STATUS, Values(status=value, parents=parents), T0 + 3600 * hours)


def signed_after(
    records: list[SignedRecord],
    key: cose.PrivateKey,
    cert: x509.Certificate | None,
    time: int,
    values: Values | None = None,
) -> list[SignedRecord]:
    """`records` and one more entry linked to them, signed by `key` naming `cert` (no x5t when
    None): a measurement, unless `values` are given (then telemetry)."""
    last = records[-1]
    assert isinstance(last.body, Entry)
    kind = Kind.MEASUREMENT if values is None else Kind.TELEMETRY
    values = values or Values(soh_capacity_cpct=9000, soh_method=SohMethod.EIS)
    body = Entry(kind, last.body.seq + 1, last.digest, time, values)
    x5t = thumbprint(cert) if cert is not None else None
    return [*records, SignedRecord.sign(body, key, x5t=x5t)]


def bundle_without(name: str) -> TrustBundle:
    """The default bundle minus one actor's certificate."""
    base = bundle()
    return TrustBundle(
        base.roots,
        intermediates=base.intermediates,
        certs=[actor(n)[1] for n in ACTORS if n != name],
    )


# --------------------------------------------------------------------------------------------
# Certificates with a story: short-lived, revoked, from another PKI, a CA's own


@functools.cache
def short_lived_tester() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, TrustBundle]:
    """A tester certified from T0 - 10 days for 30 days, i.e. until T0 + 20 days."""
    _, key, cert = fresh_actor(Role.TESTER, not_before=at(T0 - 10 * DAY), days=30)
    return key, cert, loaded_bundle()


REVOKED_AT = T0 + 10 * DAY


def revoked_tester(reason: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, TrustBundle]:
    """A fresh tester revoked for `reason` as of T0 + 10 days, and the bundle a verifier loads
    afterwards (fresh: never revoke a certificate another test uses)."""
    name, key, cert = fresh_actor(Role.TESTER)
    pki().revoke(name, reason=reason, at=at(REVOKED_AT))
    return key, cert, loaded_bundle()


@functools.cache
def rogue_pki() -> CertificateAuthority:
    """A second, unrelated demo PKI: well-formed certificates under an anchor nobody trusts."""
    directory = Path(tempfile.mkdtemp(prefix="passport-rogue-pki-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    authority = CertificateAuthority(directory)
    authority.init(not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    return authority


# --------------------------------------------------------------------------------------------
# Attacks: one builder per case


def tampered_payload() -> Attack:
    """One byte of a signed payload changed (fec 2.0 -> 2.1 cycles), still decodable."""
    pp = passport()
    birth, e1, e2, e3 = history(pp)
    donor = sign_step(pp, telemetry(2, fec_deci=21), 2, e1.digest)
    forged = with_payload_of(e2, donor)
    assert len(forged.raw) == len(e2.raw)
    assert sum(a != b for a, b in zip(forged.raw, e2.raw, strict=True)) == 1
    return Attack(tag([birth, e1, forged, e3]))


def copied_signature() -> Attack:
    birth, e1, e2 = history(count=2)
    return Attack(tag([birth, e1, with_signature(e2, e1.signature)]))


def other_cells_key() -> Attack:
    """The next entry signed by another (genuine) cell's key."""
    birth, e1 = history(count=1)
    return Attack(tag([birth, e1, sign_step(passport(seed=2), telemetry(2), 2, e1.digest)]))


def uncertified_p256_key() -> Attack:
    """A P-256 key with a self-made certificate in the lab's name: not in the bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed_certificate(key, LAB)
    return Attack(tag(signed_after(history(count=1), key, cert, T0 + 7200)))


def actor_key_as_cell() -> Attack:
    """An actor's P-256 key signing as if it were the cell (no x5t)."""
    records = signed_after(history(count=1), actor(OEM)[0], None, T0 + 7200, Values(fec_deci=20))
    return Attack(tag(records))


def deleted_entry() -> Attack:
    birth, e1, _, e3 = history()
    return Attack(tag([birth, e1, e3]))


def reordered_entries() -> Attack:
    birth, e1, e2, e3 = history()
    return Attack(tag([birth, e1, e3, e2]))


def duplicated_entry() -> Attack:
    birth, e1, e2, e3 = history()
    return Attack(tag([birth, e1, e2, e2, e3]))


def spliced_entry() -> Attack:
    """Entry 2 of another cell's passport put in place of ours."""
    birth, e1, _, e3 = history()
    return Attack(tag([birth, e1, history(passport(seed=2))[2], e3]))


def swapped_birth() -> Attack:
    """Another cell's genuine birth record in front of our entries."""
    _, *entries = history()
    return Attack(tag([passport(seed=2).birth, *entries]))


def weak_cell_key() -> Attack:
    """A birth certifying the all-zero Ed25519 key: a small-order point, anyone can forge."""
    return Attack(tag([sign_birth(birth_body(passport().cell, cell_public_key=bytes(32)))]))


def birth_by_another_oem_key() -> Attack:
    """Signed by another OEM's key while naming ACME's certificate."""
    birth = passport().birth.body
    return Attack(tag([sign_birth(birth, OEM, key=actor("Rogue OEM")[0])]))  # type: ignore[arg-type]


def birth_cert_missing() -> Attack:
    return Attack(tag(history(count=1)), trust=bundle_without(OEM))


def birth_signed_by_tester() -> Attack:
    return Attack(tag([sign_birth(passport().birth.body, LAB)]))  # type: ignore[arg-type]


def recycler_measures() -> Attack:
    return Attack(tag(build(passport(), [telemetry(1), measured(9000, 2, signer=RECYCLER)])))


def remanufacture_by_tester() -> Attack:
    """The lab claims the SoH reset only remanufacture (an OEM's) allows."""
    steps = [measured(9000, 1), measured(9500, 2, kind=Kind.REMANUFACTURE)]
    return Attack(tag(build(passport(), steps)))


def cell_writes_status() -> Attack:
    steps = [telemetry(1), Step(CELL, Kind.STATUS, Values(status=Status.WASTE), T0 + 7200)]
    return Attack(tag(build(passport(), steps)))


def by_short_lived_tester(time: int, logged: int | None = None) -> Builder:
    """A measurement claiming `time` by the short-lived tester; a receipt when `logged`."""

    def attack() -> Attack:
        key, cert, trust = short_lived_tester()
        records = signed_after(history(count=1), key, cert, time)
        receipts = Receipts({records[-1].digest: at(logged)} if logged is not None else {})
        return Attack(tag(records), trust=trust, receipts=receipts)

    return attack


def by_revoked_tester(reason: str, time: int, logged: int | None = None) -> Builder:
    """A measurement claiming `time` by a tester revoked for `reason` at REVOKED_AT."""

    def attack() -> Attack:
        key, cert, trust = revoked_tester(reason)
        records = signed_after(history(count=1), key, cert, time)
        receipts = Receipts({records[-1].digest: at(logged)} if logged is not None else {})
        return Attack(tag(records), trust=trust, receipts=receipts)

    return attack


def compromised_under_superseded_ca() -> Attack:
    """A key revoked for compromise (at T0 + 10 days) signs a record backdated to T0 + 2 h.
    Its issuing Services CA was also revoked, benignly (superseded), at T0 + 5 days. The
    compromise is still there: the backdated record needs a receipt as it does without the
    CA's revocation (case "backdated-by-compromised-key-no-receipt")."""
    key, cert, loaded = revoked_tester("key_compromise")
    _, services = ca_material("services-ca")
    superseded = root_crl_revoking(services, x509.ReasonFlags.superseded, T0 + 5 * DAY)
    trust = TrustBundle(
        loaded.roots,
        intermediates=loaded.intermediates,
        certs=[actor(OEM)[1], cert],
        crls=[*actor_crls(), superseded],
    )
    return Attack(tag(signed_after(history(count=1), key, cert, T0 + 7200)), trust=trust)


def unknown_root() -> Attack:
    """A tester of another PKI, its certificate supplied in the bundle's certs."""
    issued = next(c for c in rogue_pki().listing() if c["role"] == "tester")
    key = load_private(rogue_pki().dir / "keys" / f"{issued['name']}.key.pem")
    cert = load_certificates(rogue_pki().dir / "keys" / f"{issued['name']}.cert.pem")[0]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    base = bundle()
    trust = TrustBundle(base.roots, intermediates=base.intermediates, certs=[actor(OEM)[1], cert])
    return Attack(tag(signed_after(history(count=1), key, cert, T0 + 7200)), trust=trust)


def ca_key_as_actor() -> Attack:
    """The Services CA's own key signs a measurement naming its CA certificate (which the
    bundle holds as an intermediate): a CA certificate is no actor's."""
    key, cert = ca_material("services-ca")
    return Attack(tag(signed_after(history(count=1), key, cert, T0 + 7200)))


def ed25519_alg_on_p256() -> Attack:
    """The lab's P-256 signature under a header claiming Ed25519."""
    records = build(passport(), [telemetry(1), measured(9000, 2)])
    header = {cose.HDR_ALG: cose.ALG_ED25519, cose.HDR_X5T: list(x5t_of(LAB))}
    return Attack(tag([*records[:2], signed_with_header(records[2], actor(LAB)[0], header)]))


def p256_alg_on_ed25519() -> Attack:
    """The cell's Ed25519 signature under a header claiming ESP256."""
    pp = passport()
    birth, e1, e2 = history(pp, count=2)
    forged = signed_with_header(e2, pp.cell, {cose.HDR_ALG: cose.ALG_ESP256})
    return Attack(tag([birth, e1, forged]))


def x5t_names_another() -> Attack:
    """Signed by the OEM's key, naming the lab's certificate."""
    return Attack(tag(signed_after(history(count=1), actor(OEM)[0], actor(LAB)[1], T0 + 7200)))


def counter_backwards() -> Attack:
    return Attack(tag(build(passport(), [telemetry(1), telemetry(2, fec_deci=5)])))


def soh_rise(
    soh: int = 9500, *, sigma: int | None = None, kind: Kind = Kind.MEASUREMENT, signer: str = LAB
) -> Builder:
    """SoH 90.00 % (with `sigma`), then `soh` (with `sigma`) in a `kind` entry by `signer`."""

    def attack() -> Attack:
        reman = Status.REMANUFACTURED if kind is Kind.REMANUFACTURE else None
        later = measured(soh, 2, signer=signer, sigma=sigma, kind=kind, status=reman)
        return Attack(tag(build(passport(), [measured(9000, 1, sigma=sigma), later])))

    return attack


def time_backwards() -> Attack:
    return Attack(tag(build(passport(), [telemetry(1, hours=5), telemetry(2, hours=3)])))


def second_entry_at(epoch: int) -> Builder:
    def attack() -> Attack:
        steps = [telemetry(1), dataclasses.replace(telemetry(2), time=epoch)]
        return Attack(tag(build(passport(), steps)))

    return attack


def waste_then_repurposed() -> Attack:
    steps = [status(Status.WASTE, 1), status(Status.REPURPOSED, 2)]
    return Attack(tag(build(passport(), steps)))


def lineage(signer: str, value: Status) -> Builder:
    def attack() -> Attack:
        steps = [telemetry(1), status(value, 2, signer=signer, parents=(PARENT,))]
        return Attack(tag(build(passport(), steps)))

    return attack


def full_history(key: cose.PrivateKey | None = None, **changes: Any) -> Builder:
    """Birth, e1..e5, the checkpoint evicting e1..e3 (with `changes`; signed by `key`, else
    the cell) and e6, in the order the registry keeps them, for check_records."""

    def attack() -> Attack:
        pp = passport()
        records = history(pp, count=5)
        values = Values()
        for record in records[1:4]:
            assert isinstance(record.body, Entry)
            values = values.then(record.body.values)
        e3 = records[3]
        assert isinstance(e3.body, Entry)
        body = Checkpoint(
            count=3, head=e3.digest, time=e3.body.time, birth=pp.birth.digest, values=values
        )
        checkpoint = SignedRecord.sign(dataclasses.replace(body, **changes), key or pp.cell)
        e6 = sign_step(pp, telemetry(6), 6, records[-1].digest)
        return Attack([*records, checkpoint, e6])

    return attack


def history_without_birth() -> Attack:
    return Attack(history()[1:])


def second_birth_in_history() -> Attack:
    return Attack([*history(count=1), passport(seed=2).birth])


def truncated_tag() -> Attack:
    return Attack(appended(history(count=2), "st25dv16k").to_bytes()[:-8])


def rich_history() -> Attack:
    """Cell telemetry, a lab measurement, repurposing with lineage, an intake, the end."""
    steps = [
        telemetry(1),
        measured(9400, 2, sigma=40),
        telemetry(3, soh_capacity_cpct=9350, soh_method=SohMethod.BMS_ESTIMATE),
        status(Status.REPURPOSED, 4, signer=REPURPOSER, parents=(PARENT,)),
        telemetry(5),
        Step(RECYCLER, Kind.INTAKE, Values(resistance_uohm=31_000), T0 + 6 * 3600),
        status(Status.WASTE, 7),
    ]
    return Attack(appended(build(passport(), steps)))


# name -> (attack, expected findings: the first is the report's first, all must be there)
ATTACKS: dict[str, tuple[Builder, Expected]] = {
    "tampered-payload": (
        tampered_payload, (("chain.entry-signature", 2), ("chain.prev-mismatch", 3))),
    "signature-copied-from-another-record": (copied_signature, (("chain.entry-signature", 2),)),
    "resigned-by-another-cells-key": (other_cells_key, (("chain.entry-signature", 2),)),
    "resigned-by-uncertified-p256-key": (uncertified_p256_key, (("trust.cert-unknown", 2),)),
    "actor-key-signs-as-the-cell": (actor_key_as_cell, (("cose.alg-key-mismatch", 2),)),
    "deleted-entry": (deleted_entry, (("chain.prev-mismatch", 2), ("chain.seq-gap", 2))),
    "reordered-entries": (reordered_entries, (
        ("chain.prev-mismatch", 2), ("chain.seq-gap", 2), ("chain.time-backwards", 3))),
    "duplicated-entry": (duplicated_entry, (("chain.prev-mismatch", 3), ("chain.seq-gap", 3))),
    "spliced-from-another-passport": (
        spliced_entry, (("chain.prev-mismatch", 2), ("chain.entry-signature", 2))),
    "birth-swapped-from-another-cell": (swapped_birth, (
        ("chain.prev-mismatch", 1), ("chain.entry-signature", 1), ("chain.entry-signature", 2),
        ("chain.entry-signature", 3))),
    "birth-certifies-a-weak-cell-key": (weak_cell_key, (("chain.cell-key", 0),)),
    "birth-signed-by-another-oem-key": (birth_by_another_oem_key, (("chain.birth-signature", 0),)),
    "birth-signer-certificate-missing": (birth_cert_missing, (("trust.cert-unknown", 0),)),
    "tester-signs-a-birth": (birth_signed_by_tester, (("policy.write-denied", 0),)),
    "recycler-writes-a-measurement": (recycler_measures, (("policy.write-denied", 2),)),
    "tester-writes-a-remanufacture": (remanufacture_by_tester, (("policy.write-denied", 2),)),
    "cell-writes-a-status": (cell_writes_status, (("policy.write-denied", 2),)),
    "signed-after-certificate-expiry": (
        by_short_lived_tester(T0 + 20 * DAY + 1), (("trust.signer-expired", 2),)),
    "expired-certificate-no-receipt": (
        by_short_lived_tester(T0 + 7200), (("trust.expired-unproven", 2),)),
    "expired-certificate-late-receipt": (
        by_short_lived_tester(T0 + 7200, logged=T0 + 20 * DAY + 1),
        (("trust.expired-unproven", 2),)),
    "signed-after-revocation-key-compromise": (
        by_revoked_tester("key_compromise", REVOKED_AT + DAY), (("trust.signer-revoked", 2),)),
    "signed-at-revocation-superseded": (
        by_revoked_tester("superseded", REVOKED_AT), (("trust.signer-revoked", 2),)),
    "backdated-by-compromised-key-no-receipt": (
        by_revoked_tester("key_compromise", T0 + 7200), (("trust.revoked-unproven", 2),)),
    "backdated-by-compromised-key-late-receipt": (
        by_revoked_tester("key_compromise", T0 + 7200, logged=REVOKED_AT),
        (("trust.revoked-unproven", 2),)),
    "backdated-by-key-revoked-unspecified": (
        by_revoked_tester("unspecified", T0 + 7200), (("trust.revoked-unproven", 2),)),
    "backdated-by-compromised-key-under-superseded-ca": (
        compromised_under_superseded_ca, (("trust.revoked-unproven", 2),)),
    "unknown-root": (unknown_root, (("trust.chain-invalid", 2),)),
    "ca-key-signs-as-an-actor": (ca_key_as_actor, (("trust.chain-invalid", 2),)),
    "ed25519-alg-on-p256-signature": (ed25519_alg_on_p256, (("cose.alg-key-mismatch", 2),)),
    "p256-alg-on-ed25519-signature": (p256_alg_on_ed25519, (("cose.alg-key-mismatch", 2),)),
    "x5t-names-another-certificate": (x5t_names_another, (("chain.entry-signature", 2),)),
    "counter-goes-backwards": (counter_backwards, (("chain.counter-decreased", 2),)),
    "soh-rises-without-remanufacture": (soh_rise(), (("chain.soh-rise", 2),)),
    "soh-rises-beyond-its-uncertainty": (soh_rise(9400, sigma=100), (("chain.soh-rise", 2),)),
    "time-goes-backwards": (time_backwards, (("chain.time-backwards", 2),)),
    "record-from-the-future": (
        second_entry_at(NOW_S + SKEW + 1), (("chain.time-future", 2),)),
    "status-waste-then-repurposed": (waste_then_repurposed, (("chain.status-transition", 2),)),
    "lineage-written-by-a-recycler": (
        lineage(RECYCLER, Status.REPURPOSED), (("policy.lineage", 2),)),
    "lineage-with-status-reused": (lineage(REPURPOSER, Status.REUSED), (("policy.lineage", 2),)),
    "checkpoint-values-mismatch": (
        full_history(values=Values(fec_deci=1)), (("chain.checkpoint-mismatch", 6),)),
    "checkpoint-head-mismatch": (
        full_history(head=bytes(32)), (("chain.checkpoint-mismatch", 6),)),
    "checkpoint-of-another-passport": (
        full_history(birth=bytes(32)), (("chain.checkpoint-birth", 6),)),
    "checkpoint-signed-by-another-cell": (
        full_history(cell_key(2)), (("chain.checkpoint-signature", 6),)),
    "history-without-birth": (history_without_birth, (("image.order", 0),)),
    "second-birth-inside-a-history": (second_birth_in_history, (("image.order", 2),)),
    "truncated-tag": (truncated_tag, (("image.truncated", None),)),
}  # fmt: skip

ACCEPTED: dict[str, Builder] = {
    "rich-history": rich_history,
    "soh-rise-through-oem-remanufacture": soh_rise(kind=Kind.REMANUFACTURE, signer=OEM),
    "soh-rise-within-its-uncertainty": soh_rise(9300, sigma=100),
    "signed-at-the-last-second-of-validity": by_short_lived_tester(
        T0 + 20 * DAY, logged=T0 + 20 * DAY),
    "expired-certificate-with-receipt": by_short_lived_tester(T0 + 7200, logged=T0 + 3 * 3600),
    "compromised-key-with-receipt": by_revoked_tester(
        "key_compromise", T0 + 7200, logged=T0 + 3 * 3600),
    "superseded-key-before-revocation": by_revoked_tester("superseded", REVOKED_AT - 1),
    "record-within-the-clock-skew": second_entry_at(NOW_S + SKEW),
    "lineage-written-by-a-repurposer": lineage(REPURPOSER, Status.REPURPOSED),
    "consistent-checkpoint-in-full-history": full_history(),
}  # fmt: skip


@pytest.mark.parametrize(("build_attack", "expected"), ATTACKS.values(), ids=ATTACKS.keys())
def test_attack_is_refused(build_attack: Builder, expected: Expected) -> None:
    report = build_attack().check()
    assert not report.valid
    found = rules(report)
    assert found[0] == expected[0], found
    for finding in expected[1:]:
        assert finding in found, found


@pytest.mark.parametrize("build_attack", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_legitimate_twin_is_accepted(build_attack: Builder) -> None:
    report = build_attack().check()
    assert report.findings == ()
    assert report.valid


def test_every_rule_of_the_chain_is_exercised() -> None:
    """The corpus covers every rule `passport.chain` documents (its RULES table)."""
    covered = {rule for _, expected in ATTACKS.values() for rule, _ in expected}
    assert set(RULES) - covered == set()


def test_rich_history_report_names_every_signer() -> None:
    attack = rich_history()
    assert isinstance(attack.target, Image)
    report = verify_image(attack.target, attack.trust, now=NOW)
    signers = [info.signer for info in report.records]
    assert signers == [
        f"oem: {OEM}", "cell", f"tester: {LAB}", "cell", f"repurposer: {REPURPOSER}", "cell",
        f"recycler: {RECYCLER}", f"recycler: {RECYCLER}",
    ]  # fmt: skip
    assert report.birth == passport().birth.body
    assert report.policy_sha256 == Policy.default().sha256
    again = check_image_bytes(attack.target.to_bytes(), attack.trust, now=NOW)
    assert again.findings == ()
    assert again.records == report.records


def test_verify_image_raises_the_first_finding() -> None:
    attack = deleted_entry()
    assert isinstance(attack.target, Image)
    with pytest.raises(VerificationError) as caught:
        verify_image(attack.target, attack.trust, now=NOW)
    assert caught.value.rule == "chain.prev-mismatch"


def test_receipts_are_asked_about_the_record_in_question() -> None:
    """A receipt is looked up by the SHA-256 of the exact record whose time is in doubt."""
    attack = by_short_lived_tester(T0 + 7200)()
    assert isinstance(attack.target, Image)
    assert attack.receipts is not None
    attack.check()
    assert attack.receipts.asked == [attack.target.entries[-1].digest]


# --------------------------------------------------------------------------------------------
# Anti-clone


def clone_case(responder: int, answered: bytes, asked: bytes) -> Callable[[], None]:
    def check() -> None:
        image = tag(history(count=1))
        clone.check_response(image, asked, clone.respond(cell_key(responder), answered))

    return check


CHALLENGE = bytes(range(32))
CLONES: dict[str, tuple[Callable[[], None], str]] = {
    "tag-copied-onto-another-cell": (clone_case(2, CHALLENGE, CHALLENGE), "clone.response-invalid"),
    "replayed-response": (clone_case(1, CHALLENGE, bytes(32)), "clone.challenge-mismatch"),
}


@pytest.mark.parametrize(("attempt", "rule"), CLONES.values(), ids=CLONES.keys())
def test_clone_is_refused(attempt: Callable[[], None], rule: str) -> None:
    with pytest.raises(VerificationError) as caught:
        attempt()
    assert caught.value.rule == rule


def test_genuine_cell_answers_its_challenge() -> None:
    clone_case(1, CHALLENGE, CHALLENGE)()


# --------------------------------------------------------------------------------------------
# Properties: random valid histories, and one mutation of them


TRANSITIONS = Policy.default().transitions


@st.composite
def histories(draw: st.DrawFn) -> list[Step]:
    """Allowed steps by the cell, the lab and the recycler: counters that only grow, SoH that
    never rises (falling at most 1.5 points a step), increasing times, allowed statuses."""
    steps: list[Step] = []
    time, fec, ah, wh, hot = T0, 0, 0, 0, 0
    soh = draw(st.integers(8_000, 10_000))
    current = Status.ORIGINAL
    for _ in range(draw(st.integers(2, 7))):
        time += draw(st.integers(1, 4 * DAY))
        signer = draw(st.sampled_from((CELL, CELL, LAB, RECYCLER)))
        if signer == CELL:
            fec += draw(st.integers(1, 40))
            ah += draw(st.integers(0, 200))
            wh += draw(st.integers(0, 700))
            hot += draw(st.integers(0, 3))
            estimate = draw(st.booleans())
            soh -= draw(st.integers(0, 150)) if estimate else 0
            values = Values(
                fec_deci=fec, ah_deci=ah, wh=wh, minutes_hot=hot,
                soh_capacity_cpct=soh if estimate else None,
                soh_method=SohMethod.BMS_ESTIMATE if estimate else None,
            )  # fmt: skip
            steps.append(Step(CELL, Kind.TELEMETRY, values, time))
        elif signer == LAB:
            soh -= draw(st.integers(0, 150))
            values = Values(
                soh_capacity_cpct=soh,
                soh_method=draw(st.sampled_from(SohMethod)),
                soh_sigma_cpct=draw(st.none() | st.integers(0, 50)),
            )
            steps.append(Step(LAB, Kind.MEASUREMENT, values, time))
        elif draw(st.booleans()):
            values = Values(resistance_uohm=draw(st.integers(10_000, 40_000)))
            steps.append(Step(RECYCLER, Kind.INTAKE, values, time))
        else:
            current = draw(st.sampled_from(sorted(TRANSITIONS[current] | {current})))
            steps.append(Step(RECYCLER, Kind.STATUS, Values(status=current), time))
    return steps


@settings(max_examples=80)
@given(histories())
def test_random_valid_history_verifies(steps: list[Step]) -> None:
    image = appended(build(passport(), steps))
    report = check_image(image, bundle(), now=NOW)
    assert report.findings == ()
    assert len(report.records) == len(steps) + 1
    assert check_image_bytes(image.to_bytes(), bundle(), now=NOW).findings == ()


Mutation = Callable[[st.DataObject, Passport, list[Step]], tuple[Attack, tuple[str, int] | None]]


def flip_byte(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, None]:
    """XOR one byte of one record on the tag with a non-zero mask."""
    records = build(pp, steps)
    memory = bytearray(appended(records).to_bytes())
    index = data.draw(st.integers(0, len(records) - 1), label="record")
    offset = data.draw(st.integers(0, len(records[index].raw) - 1), label="offset")
    start = bytes(memory).index(b"".join(r.raw for r in records))
    memory[start + sum(len(r.raw) for r in records[:index]) + offset] ^= data.draw(
        st.integers(1, 255), label="mask"
    )
    return Attack(bytes(memory)), None


def drop_entry(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, Any]:
    """Drop an entry other than the newest (which nothing on the tag commits to)."""
    records = build(pp, steps)
    index = data.draw(st.integers(1, len(records) - 2), label="entry")
    return Attack(tag(records[:index] + records[index + 1 :])), ("chain.prev-mismatch", index)


def swap_entries(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, Any]:
    records = build(pp, steps)
    i = data.draw(st.integers(1, len(records) - 2), label="first")
    j = data.draw(st.integers(i + 1, len(records) - 1), label="second")
    records[i], records[j] = records[j], records[i]
    return Attack(tag(records)), ("chain.prev-mismatch", i)


def duplicate_entry(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, Any]:
    """Insert a copy of an entry anywhere after it."""
    records = build(pp, steps)
    i = data.draw(st.integers(1, len(records) - 1), label="entry")
    at_ = data.draw(st.integers(i + 1, len(records)), label="position")
    records.insert(at_, records[i])
    return Attack(tag(records)), ("chain.prev-mismatch", at_)


def other_cell(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, Any]:
    """The same body re-signed with another cell's key."""
    records = build(pp, steps)
    i = data.draw(st.integers(1, len(records) - 1), label="entry")
    records[i] = SignedRecord.sign(records[i].body, cell_key(2))
    return Attack(tag(records)), ("chain.entry-signature", i)


COUNTERS = ("fec_deci", "ah_deci", "wh", "minutes_hot")


def lower_counter(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, Any]:
    """A cell entry reports a counter one below the value before it, re-signed by the cell
    (and every later entry re-signed by its own signer, so that the links hold)."""
    cell = [i for i, s in enumerate(steps) if s.signer == CELL]
    if len(cell) < 2:
        reject()
    k = data.draw(st.sampled_from(cell[1:]), label="entry")
    before = steps[max(i for i in cell if i < k)].values
    name = data.draw(st.sampled_from([n for n in COUNTERS if getattr(before, n) > 0]))
    values = steps[k].values._replace(**{name: getattr(before, name) - 1})
    steps = [*steps[:k], dataclasses.replace(steps[k], values=values), *steps[k + 1 :]]
    return Attack(tag(build(pp, steps))), ("chain.counter-decreased", k + 1)


def raise_soh(data: st.DataObject, pp: Passport, steps: list[Step]) -> tuple[Attack, Any]:
    """An entry reports its SoH 10 points higher, re-signed by its own signer (and every later
    entry too)."""
    with_soh = [i for i, s in enumerate(steps) if s.values.soh_capacity_cpct is not None]
    if len(with_soh) < 2:
        reject()
    k = data.draw(st.sampled_from(with_soh[1:]), label="entry")
    soh = steps[k].values.soh_capacity_cpct
    assert soh is not None
    values = steps[k].values._replace(soh_capacity_cpct=soh + 1000)
    steps = [*steps[:k], dataclasses.replace(steps[k], values=values), *steps[k + 1 :]]
    return Attack(tag(build(pp, steps))), ("chain.soh-rise", k + 1)


MUTATIONS: dict[str, Mutation] = {
    "flip-a-byte": flip_byte,
    "drop-an-entry": drop_entry,
    "swap-two-entries": swap_entries,
    "duplicate-an-entry": duplicate_entry,
    "resign-with-another-cells-key": other_cell,
    "lower-a-counter-and-resign": lower_counter,
    "raise-soh-and-resign": raise_soh,
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
@settings(max_examples=40)
@given(steps=histories(), data=st.data())
def test_one_mutation_never_verifies(
    mutate: Mutation, steps: list[Step], data: st.DataObject
) -> None:
    attack, expected = mutate(data, passport(), steps)
    report = attack.check()
    assert not report.valid
    if expected is not None:
        assert expected in rules(report), rules(report)
