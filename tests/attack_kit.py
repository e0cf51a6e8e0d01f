"""Shared builders for the adversarial corpus and the trust-model tests.

Histories are described as `Step`s (who signs what, when) and signed by `build`, so a test can
change one step and re-sign everything after it: the only defect left is the one it made.
Forgeries the library refuses to make (a borrowed signature, a header alg that does not fit the
key) are assembled here by hand from `passport.cbor` and `passport.cose`.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from factories import PKI_START, T0, TEST_LAB, Passport, actor, pki, trust

from passport import cbor, cose
from passport.chain import Report, check_image, check_image_bytes, check_records
from passport.image import Image
from passport.records import Entry, Kind, SignedRecord, Values, X5t
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.keys import load_private
from passport.trust.roles import CELL, ROLE_OIDS, Role
from passport.trust.store import load_certificates, thumbprint

OEM = "ACME OEM"
LAB = TEST_LAB
RECYCLER = "Circular Metals Recycling"
REPURPOSER = "SecondLife Repurposing"
ACTORS = (OEM, LAB, RECYCLER, REPURPOSER)

DAY = 86_400
#: The verifier's clock in these tests: after every record they make, within every default
#: certificate's validity (records claim T0 + hours; the default actors are valid 2020-2030).
NOW = dt.datetime.fromtimestamp(T0 + 90 * DAY, dt.UTC)


def at(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


@functools.cache
def bundle() -> TrustBundle:
    """The default actors' certificates with the test PKI's anchors, CRLs and default policy.
    Cached: the bundle caches each validated chain, which the property tests lean on."""
    return trust(*ACTORS)


def x5t_of(name: str) -> X5t:
    return thumbprint(actor(name)[1])


# --------------------------------------------------------------------------------------------
# Histories as steps


@dataclass(frozen=True, slots=True)
class Step:
    """One history entry before signing: `signer` is "cell" or an actor name."""

    signer: str
    kind: Kind
    values: Values
    time: int


def signing_key(pp: Passport, signer: str) -> tuple[cose.PrivateKey, X5t | None]:
    """(key, x5t) a step's signer uses: the cell key without x5t, or an actor's certificate."""
    if signer == CELL:
        return pp.cell, None
    key, cert = actor(signer)
    return key, thumbprint(cert)


def sign_step(pp: Passport, step: Step, seq: int, prev: bytes) -> SignedRecord:
    key, x5t = signing_key(pp, step.signer)
    return SignedRecord.sign(Entry(step.kind, seq, prev, step.time, step.values), key, x5t=x5t)


def build(pp: Passport, steps: Sequence[Step]) -> list[SignedRecord]:
    """Birth then one correctly linked entry per step (seq 1.., prev = hash of the record
    before)."""
    records = [pp.birth]
    for seq, step in enumerate(steps, start=1):
        records.append(sign_step(pp, step, seq, records[-1].digest))
    return records


def tag(records: Sequence[SignedRecord], profile: str = "st25dv64k") -> Image:
    """An image holding exactly `records` (birth first), whatever their links: `Image.append`
    would refuse the broken ones an attacker writes straight to memory."""
    return Image(Image.create(records[0], profile).profile, records[0], None, tuple(records[1:]))


def appended(records: Sequence[SignedRecord], profile: str = "st25dv64k") -> Image:
    """An image grown the honest way, through `Image.append` (which checks every link)."""
    image = Image.create(records[0], profile)
    for record in records[1:]:
        image, evicted = image.append(record)
        assert not evicted
    return image


def telemetry(i: int, hours: int | None = None, **changes: Any) -> Step:
    """Cell telemetry with counters that grow with `i`, claimed `hours` after T0 (default i)."""
    values = Values(fec_deci=10 * i, ah_deci=50 * i, wh=180 * i)._replace(**changes)
    return Step(CELL, Kind.TELEMETRY, values, T0 + 3600 * (i if hours is None else hours))


# --------------------------------------------------------------------------------------------
# Forgery by hand


def assemble(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    """The exact bytes of a tagged COSE_Sign1 record from its three parts, signature as given."""
    return b"".join(
        (
            b"\xd2\x84",
            cbor.head(2, len(protected)),
            protected,
            b"\xa0",
            cbor.head(2, len(payload)),
            payload,
            cbor.head(2, len(signature)),
            signature,
        )
    )


def with_signature(record: SignedRecord, signature: bytes) -> SignedRecord:
    return SignedRecord.from_bytes(
        assemble(record.protected_bytes, record.payload_bytes, signature)
    )


def with_payload_of(record: SignedRecord, donor: SignedRecord) -> SignedRecord:
    """`record`'s header and signature over `donor`'s payload (re-encoded by the library, so
    it decodes): what a tamperer who edits bytes but cannot sign produces."""
    return SignedRecord.from_bytes(
        assemble(record.protected_bytes, donor.payload_bytes, record.signature)
    )


def signed_with_header(
    record: SignedRecord, key: cose.PrivateKey, header: Mapping[int, object]
) -> SignedRecord:
    """`record`'s payload under the protected `header` given, genuinely signed by `key` (which
    need not fit the header's alg: `cose.sign1` would refuse that, so it is done by hand)."""
    protected = cbor.dumps(dict(header))
    signature = cose.raw_sign(key, cose.sig_structure(protected, b"", record.payload_bytes))
    return SignedRecord.from_bytes(assemble(protected, record.payload_bytes, signature))


# --------------------------------------------------------------------------------------------
# Certificates made for one test


def fresh_actor(
    role: Role, *, not_before: dt.datetime = PKI_START, days: int | None = None
) -> tuple[str, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new actor of the shared test PKI, never used by another test (safe to revoke)."""
    name = f"fresh-{role.value}-{uuid.uuid4().hex[:12]}"
    issued = pki().issue(name, role, common_name=name, not_before=not_before, days=days)
    key = load_private(issued.key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return name, key, load_certificates(issued.cert_path)[0]


def pki_with_actors() -> CertificateAuthority:
    """The shared test PKI once the default actors are issued (`actor` issues lazily, so a
    bundle copied or loaded earlier would miss them)."""
    for name in ACTORS:
        actor(name)
    return pki()


def loaded_bundle() -> TrustBundle:
    """The test PKI's bundle as a verifier loads it now (every issued certificate, every CRL)."""
    return TrustBundle.load(pki_with_actors().trust_dir)


def ca_material(
    name: str, authority: CertificateAuthority | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Key and certificate of a CA (root, oem-ca, services-ca) of `authority` (default: the
    shared test PKI)."""
    directory = (authority or pki()).dir / "ca"
    key = load_private(directory / f"{name}.key.pem")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, load_certificates(directory / f"{name}.cert.pem")[0]


def root_crl_revoking(
    cert: x509.Certificate,
    reason: x509.ReasonFlags,
    when: int,
    authority: CertificateAuthority | None = None,
) -> x509.CertificateRevocationList:
    """A root CRL revoking the CA certificate `cert` (`passport ca revoke` only revokes
    actors), made in memory so that the PKI's own CRLs stay as they are."""
    key, root = ca_material("root", authority)
    now = dt.datetime.now(dt.UTC)
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(cert.serial_number)
        .revocation_date(at(when))
        .add_extension(x509.CRLReason(reason), critical=False)
        .build()
    )
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=30))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )


def actor_crls(
    authority: CertificateAuthority | None = None,
) -> list[x509.CertificateRevocationList]:
    """The current CRLs of the two issuing CAs of `authority` (default: the shared PKI)."""
    return [
        x509.load_pem_x509_crl(p.read_bytes())
        for p in sorted(((authority or pki()).trust_dir / "crls").glob("*.pem"))
        if p.name != "root.crl.pem"
    ]


def services_certificate(
    common_name: str, roles: Sequence[Role]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """An actor certificate of the shared PKI's Services CA granting any `roles` (the CA
    tooling grants exactly one), built as `passport ca issue` builds its certificates."""
    ca_key, ca_cert = ca_material("services-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(PKI_START)
        .not_valid_after(PKI_START + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ROLE_OIDS[r] for r in roles]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@dataclass
class Receipts:
    """A `ReceiptLookup` stand-in: digest -> when the registry proved it logged the record."""

    logged: dict[bytes, dt.datetime] = field(default_factory=dict)
    asked: list[bytes] = field(default_factory=list)

    def logged_at(self, record: SignedRecord) -> dt.datetime | None:
        self.asked.append(record.digest)
        return self.logged.get(record.digest)


# --------------------------------------------------------------------------------------------
# Running a check


Target = Image | bytes | Sequence[SignedRecord]


@dataclass(frozen=True)
class Attack:
    """What a verifier is handed: an image, a tag's bytes or a full history, and its context."""

    target: Target
    trust: TrustBundle = field(default_factory=bundle)
    receipts: Receipts | None = None
    now: dt.datetime = NOW

    def check(self) -> Report:
        now, receipts = self.now, self.receipts
        if isinstance(self.target, Image):
            return check_image(self.target, self.trust, now=now, receipts=receipts)
        if isinstance(self.target, bytes):
            return check_image_bytes(self.target, self.trust, now=now, receipts=receipts)
        return check_records(self.target, self.trust, now=now, receipts=receipts)


def rules(report: Report) -> list[tuple[str, int | None]]:
    """(rule, record index) of every finding, in report order."""
    return [(f.rule, f.index) for f in report.findings]
