"""Plain builders shared by the record, image and chain tests.

Everything here goes through the public API except `record_bytes` and `image_bytes`, which
assemble COSE_Sign1 records and tag images by hand so that tests can make exactly the bytes the
library would refuse to make.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from passport import cbor, cose
from passport.image import MEDIA_TYPE, Image
from passport.records import (
    Birth,
    CapacityTest,
    Checkpoint,
    Chemistry,
    Entry,
    Event,
    Kind,
    ResistanceTest,
    SignedRecord,
    SohMethod,
    Values,
    X5t,
)
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.keys import load_private
from passport.trust.policy import Policy
from passport.trust.roles import Role
from passport.trust.store import load_certificates, thumbprint

GS1_ID = "https://id.gs1.org/01/09506000134352/21/A0001"
TEST_LAB = "ACME Test Lab"
T0 = 1_790_000_000  # a fixed epoch second (2026) so that records are reproducible


# --------------------------------------------------------------------------------------------
# Keys and certificates


def cell_key(seed: int) -> ed25519.Ed25519PrivateKey:
    """A deterministic Ed25519 cell key: the same seed always gives the same key."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"cell%d" % seed).digest())


def raw_public(key: ed25519.Ed25519PrivateKey) -> bytes:
    """The 32 raw bytes a birth record certifies."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


PKI_START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@functools.cache
def pki() -> CertificateAuthority:
    """One real demo PKI per test process (root, OEM and services CAs, CRLs), valid from 2020:
    certificate signing is the slowest thing the tests do."""
    directory = Path(tempfile.mkdtemp(prefix="passport-test-pki-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    authority = CertificateAuthority(directory)
    authority.init(not_before=PKI_START)
    return authority


def role_for(name: str) -> Role:
    """The role an actor of the tests plays, from its name (an OEM unless it says otherwise)."""
    lowered = name.lower()
    for word, role in (("lab", Role.TESTER), ("test", Role.TESTER), ("recycl", Role.RECYCLER),
                       ("repurpos", Role.REPURPOSER), ("integrat", Role.INTEGRATOR)):  # fmt: skip
        if word in lowered:
            return role
    return Role.OEM


@functools.cache
def actor(
    name: str, role: Role | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A P-256 key and its certificate (CN=`name`) issued by the test PKI for `role` (guessed
    from the name when not given), cached per name."""
    file_name = hashlib.sha256(f"{name}/{role}".encode()).hexdigest()[:16]
    issued = pki().issue(file_name, role or role_for(name), common_name=name, not_before=PKI_START)
    key = load_private(issued.key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key, load_certificates(issued.cert_path)[0]


def trust(*names: str, policy: Policy | None = None) -> TrustBundle:
    """A trust bundle with the test PKI's anchors and CRLs and the certificates of `names`
    (all issued actors when no name is given)."""
    bundle = TrustBundle.load(pki().trust_dir, policy=policy)
    if not names:
        return bundle
    return TrustBundle(
        bundle.roots,
        intermediates=bundle.intermediates,
        certs=[actor(n)[1] for n in names],
        crls=[*_crls()],
        policy=bundle.policy,
    )


def _crls() -> list[x509.CertificateRevocationList]:
    return [
        x509.load_pem_x509_crl(p.read_bytes()) for p in sorted((pki().trust_dir / "crls").glob("*"))
    ]


def trust_with(
    certs: Iterable[x509.Certificate], *, cls: type[TrustBundle] = TrustBundle
) -> TrustBundle:
    """A bundle of the test PKI's anchors, intermediates, CRLs and default policy holding
    exactly `certs` (any certificate objects: self-signed ones, decoys); `cls` may be a
    TrustBundle subclass."""
    base = TrustBundle.load(pki().trust_dir)
    return cls(
        base.roots,
        intermediates=base.intermediates,
        certs=certs,
        crls=_crls(),
        policy=base.policy,
    )


def subject(cert: x509.Certificate) -> str:
    """The signer name the verifier reports for a certificate (its common name)."""
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


# --------------------------------------------------------------------------------------------
# Bodies


def birth_body(cell: ed25519.Ed25519PrivateKey, **changes: Any) -> Birth:
    """A plausible NMC 21700 birth certifying `cell`; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "passport_id": uuid.UUID("6f1c2a44-0d3e-4b59-9a7e-2f5b8c1d0e42"),
        "battery_id": GS1_ID,
        "manufacturer": "ACME",
        "issued_at": T0,
        "model": "ACME-21700-50E",
        "chemistry": Chemistry.NMC,
        "rated_capacity_mah": 5000,
        "nominal_voltage_mv": 3630,
        "min_voltage_mv": 2500,
        "max_voltage_mv": 4200,
        "initial_capacity_mah": 5021,
        "capacity_test": CapacityTest(temperature_dc=250, c_rate_centi=20),
        "initial_resistance_uohm": 14_200,
        "resistance_test": ResistanceTest(temperature_dc=250, soc_pct=50, pulse_ms=10),
        "manufacture_date": dt.date(2026, 11, 2),
        "site": "DE-BER1",
        "expected_cycle_life": 1500,
        "exhaustion_threshold_cpct": 6000,
        "datasheet_sha256": hashlib.sha256(b"ACME-21700-50E datasheet").digest(),
        "cell_public_key": raw_public(cell),
    }
    fields.update(changes)
    return Birth(**fields)


def telemetry_values(i: int) -> Values:
    """Cumulative counters that grow with `i`; every fifth entry reports an event."""
    return Values(
        fec_deci=10 * i,
        ah_deci=50 * i,
        wh=180 * i,
        minutes_hot=i // 3,
        deep_discharges=i // 7,
        events=(Event((i // 5) % 6 + 1),) if i % 5 == 4 else (),
    )


def sign_birth(
    birth: Birth, oem: str = "ACME OEM", *, key: cose.PrivateKey | None = None
) -> SignedRecord:
    """`birth` signed by the OEM named `oem` (or by `key`), with that OEM certificate's x5t."""
    oem_key, cert = actor(oem)
    return SignedRecord.sign(birth, key or oem_key, x5t=thumbprint(cert))


# --------------------------------------------------------------------------------------------
# Passports


@dataclass(frozen=True)
class Passport:
    """A cell, the birth record certifying it and the store a verifier needs."""

    cell: ed25519.Ed25519PrivateKey
    birth: SignedRecord
    oem: str = "ACME OEM"

    @property
    def store(self) -> TrustBundle:
        """A trust bundle with the OEM's and the test lab's certificates."""
        return trust(self.oem, TEST_LAB)


def passport(seed: int = 1, **changes: Any) -> Passport:
    """A passport for the cell of `seed`; keyword arguments override birth fields."""
    cell = cell_key(seed)
    return Passport(cell, sign_birth(birth_body(cell, **changes)))


def next_entry(
    image: Image,
    key: cose.PrivateKey,
    values: Values = Values(),
    *,
    kind: Kind = Kind.TELEMETRY,
    time: int | None = None,
    x5t: X5t | None = None,
) -> SignedRecord:
    """The entry that continues `image` (right seq and prev), signed with `key`."""
    seq, prev = image.next_link()
    body = Entry(kind, seq, prev, T0 + 3600 * seq if time is None else time, values)
    return SignedRecord.sign(body, key, x5t=x5t)


def grow(
    image: Image,
    cell: ed25519.Ed25519PrivateKey,
    count: int,
    start: int = 1,
    *,
    evict: bool = True,
) -> tuple[Image, list[SignedRecord], list[SignedRecord]]:
    """Append `count` telemetry entries (values `telemetry_values(start..)`), evicting with the
    cell key unless `evict` is false. Returns (image, appended, every evicted record in order)."""
    appended: list[SignedRecord] = []
    evicted: list[SignedRecord] = []
    for i in range(start, start + count):
        record = next_entry(image, cell, telemetry_values(i))
        image, gone = image.append(record, cell_key=cell if evict else None)
        appended.append(record)
        evicted.extend(gone)
    return image, appended, evicted


def checkpoint_image(profile: str = "ntag216", entries: int = 2) -> tuple[Passport, Image]:
    """A valid image holding a birth, a checkpoint (for two evicted entries) and `entries`
    entries, the last of them a measurement signed by the test lab (x5t). Built without
    eviction, so its layout does not depend on eviction policy; raises CapacityError when it
    does not fit `profile`."""
    pp = passport()
    image = Image.create(pp.birth, profile)
    image, _, _ = grow(image, pp.cell, 2, evict=False)
    last = image.entries[-1]
    assert isinstance(last.body, Entry)
    values = Values()
    for record in image.entries:
        assert isinstance(record.body, Entry)
        values = values.then(record.body.values)
    checkpoint = SignedRecord.sign(
        Checkpoint(
            count=last.body.seq,
            head=last.digest,
            time=last.body.time,
            birth=pp.birth.digest,
            values=values,
        ),
        pp.cell,
    )
    image = Image(image.profile, pp.birth, checkpoint)
    image, _, _ = grow(image, pp.cell, entries - 1, start=3, evict=False)
    lab_key, lab_cert = actor(TEST_LAB)
    measurement = next_entry(
        image,
        lab_key,
        Values(soh_capacity_cpct=9712, soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=35),
        kind=Kind.MEASUREMENT,
        x5t=thumbprint(lab_cert),
    )
    image, _ = image.append(measurement)
    return pp, image


# --------------------------------------------------------------------------------------------
# Hand-made bytes


def record_bytes(
    payload: bytes | dict[Any, Any],
    key: cose.PrivateKey,
    protected: dict[Any, Any] | bytes,
    *,
    unprotected: bytes = b"\xa0",
    prefix: bytes = b"\xd2",
    signature_size: int | None = None,
) -> bytes:
    """A record assembled by hand with a genuine signature over the given bytes.

    `payload` and `protected` are used verbatim when given as bytes (deterministic CBOR
    otherwise); `prefix` is what precedes the 4-item array (the tag head); `signature_size`
    cuts or zero-pads the signature."""
    payload_bytes = payload if isinstance(payload, bytes) else cbor.dumps(payload)
    protected_bytes = protected if isinstance(protected, bytes) else cbor.dumps(protected)
    signature = cose.raw_sign(key, cose.sig_structure(protected_bytes, b"", payload_bytes))
    if signature_size is not None:
        signature = signature[:signature_size].ljust(signature_size, b"\x00")
    return b"".join(
        (
            prefix,
            b"\x84",
            cbor.head(2, len(protected_bytes)),
            protected_bytes,
            unprotected,
            cbor.head(2, len(payload_bytes)),
            payload_bytes,
            cbor.head(2, len(signature)),
            signature,
        )
    )


def capability_container(size: int) -> bytes:
    """The T5T capability container for a memory of `size` bytes (NFC Forum T5T 4.3)."""
    if size > 2040:
        return bytes((0xE2, 0x40, 0x00, 0x00, 0x00, 0x00)) + (size // 8).to_bytes(2, "big")
    return bytes((0xE1, 0x40, size // 8, 0x00))


def image_bytes(
    records: Iterable[bytes], size: int = 888, *, media_type: bytes = MEDIA_TYPE
) -> bytes:
    """A tag image built by hand around the concatenated `records` (any bytes at all)."""
    payload = b"".join(records)
    if len(payload) < 256:
        ndef = bytes((0xD2, len(media_type), len(payload)))
    else:
        ndef = bytes((0xC2, len(media_type))) + len(payload).to_bytes(4, "big")
    ndef += media_type + payload
    tlv = bytes((0x03, len(ndef))) if len(ndef) < 0xFF else b"\x03\xff" + len(ndef).to_bytes(2)
    body = capability_container(size) + tlv + ndef + b"\xfe"
    assert len(body) <= size, f"{len(body)} bytes do not fit {size}"
    return body + bytes(size - len(body))


def raws(records: Sequence[SignedRecord]) -> list[bytes]:
    """The exact bytes of each record."""
    return [r.raw for r in records]
