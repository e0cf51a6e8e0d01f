"""The trust model's parts: roles, the policy file, the CA tooling, the trust bundle, anti-clone.

The attacks that these parts exist to stop are in test_attacks.py; here each part is held to
what its docstrings and the policy file promise, including how it fails on bad input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import uuid
from importlib import resources
from pathlib import Path

import pytest
from attack_kit import (
    DAY,
    LAB,
    OEM,
    REPURPOSER,
    Attack,
    Step,
    actor_crls,
    at,
    build,
    bundle,
    ca_material,
    fresh_actor,
    loaded_bundle,
    pki_with_actors,
    root_crl_revoking,
    rules,
    services_certificate,
    tag,
    telemetry,
)
from cryptography import x509
from factories import T0, actor, birth_body, cell_key, passport, pki, sign_birth

from passport import cose
from passport.clone import (
    CHALLENGE_BYTES,
    DOMAIN,
    check_response,
    make_challenge,
    parse_challenge,
    respond,
)
from passport.errors import DecodeError, InputError, VerificationError
from passport.records import Entry, Kind, SignedRecord, SohMethod, Status, Values
from passport.trust import roles as roles_module
from passport.trust.bundle import Revocation, TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.policy import Policy
from passport.trust.roles import CELL, ROLE_OIDS, ROLE_UUIDS, Role, parse_role, roles_of
from passport.trust.store import load_certificates, thumbprint

DEFAULT_POLICY = resources.files("passport.trust").joinpath("policy.toml").read_bytes()
DEFAULT_TEXT = DEFAULT_POLICY.decode()

# --------------------------------------------------------------------------------------------
# Roles


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_role_oid_is_the_uuid5_of_its_urn(role: Role) -> None:
    """2.25.<UUIDv5 of urn:battery-passport:role:<name> in the URL namespace, as an integer>."""
    name_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:battery-passport:role:{role.value}")
    assert ROLE_UUIDS[role] == str(name_uuid)
    assert ROLE_OIDS[role].dotted_string == f"2.25.{name_uuid.int}"


def test_role_table_in_the_docs_lists_the_oids() -> None:
    """The module docstring's table is what integrators copy into their CA: it must agree."""
    doc = roles_module.__doc__ or ""
    for role in Role:
        row = next(line for line in doc.splitlines() if line.startswith(f"| {role.value} |"))
        assert row.endswith(f"| {ROLE_OIDS[role].dotted_string} |"), row


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_issued_certificate_grants_its_role(role: Role) -> None:
    _, cert = actor(f"Role probe {role.value}", role)
    assert roles_of(cert) == {role}


def test_certificate_without_role_eku_grants_none() -> None:
    _, services_ca = ca_material("services-ca")
    assert roles_of(services_ca) == frozenset()


def test_roles_of_several_role_certificate() -> None:
    _, cert = services_certificate("Multi Role Services", [Role.RECYCLER, Role.REPURPOSER])
    assert roles_of(cert) == {Role.RECYCLER, Role.REPURPOSER}


def test_several_role_certificate_may_write_lineage_as_repurposer() -> None:
    """A certificate granting recycler and repurposer may do whatever either role may: here
    write a repurposed status with lineage parents, which the policy allows repurposers."""
    key, cert = services_certificate("Multi Role Services", [Role.RECYCLER, Role.REPURPOSER])
    base = bundle()
    trust = TrustBundle(base.roots, intermediates=base.intermediates, certs=[actor(OEM)[1], cert])
    pp = passport()
    values = Values(status=Status.REPURPOSED, parents=(uuid.uuid4(),))
    entry = SignedRecord.sign(
        Entry(Kind.STATUS, 1, pp.birth.digest, T0 + 3600, values), key, x5t=thumbprint(cert)
    )
    report = Attack(tag([pp.birth, entry]), trust=trust).check()
    assert rules(report) == []


def test_parse_role() -> None:
    assert parse_role(" Tester\n") is Role.TESTER
    with pytest.raises(ValueError, match="unknown role 'auditor'; choose one of oem, "):
        parse_role("auditor")


# --------------------------------------------------------------------------------------------
# Policy


def test_default_policy_is_the_packaged_file() -> None:
    policy = Policy.default()
    assert policy.version == 1
    assert policy.sha256 == hashlib.sha256(DEFAULT_POLICY).hexdigest()


def test_policy_hash_is_of_the_file_bytes(tmp_path: Path) -> None:
    """A comment changes the hash though not the rules: the hash identifies the exact file a
    verdict was reached under, so results can be replayed."""
    data = DEFAULT_POLICY + b"\n# tightened by nobody\n"
    (tmp_path / "policy.toml").write_bytes(data)
    policy = Policy.load(tmp_path / "policy.toml")
    assert policy.sha256 == hashlib.sha256(data).hexdigest() != Policy.default().sha256
    assert policy.write == Policy.default().write
    assert policy.source == str(tmp_path / "policy.toml")


WRITE = {
    CELL: {Kind.TELEMETRY},
    "oem": {Kind.BIRTH, Kind.REMANUFACTURE},
    "integrator": {Kind.TELEMETRY},
    "tester": {Kind.MEASUREMENT},
    "recycler": {Kind.INTAKE, Kind.STATUS},
    "repurposer": {Kind.STATUS},
    "auditor": set(),  # no such role: nothing
}


@pytest.mark.parametrize(("signer", "kinds"), WRITE.items(), ids=WRITE.keys())
def test_default_write_permissions(signer: str, kinds: set[Kind]) -> None:
    policy = Policy.default()
    assert {k for k in Kind if policy.may_write(signer, k)} == kinds


def test_default_history_rules() -> None:
    policy = Policy.default()
    S = Status
    assert policy.transitions == {
        S.ORIGINAL: {S.REPURPOSED, S.REUSED, S.REMANUFACTURED, S.WASTE},
        S.REPURPOSED: {S.REUSED, S.REMANUFACTURED, S.WASTE},
        S.REUSED: {S.REPURPOSED, S.REMANUFACTURED, S.WASTE},
        S.REMANUFACTURED: {S.REPURPOSED, S.REUSED, S.WASTE},
        S.WASTE: set(),
    }
    assert policy.lineage_roles == {"repurposer", "oem"}
    assert policy.lineage_statuses == {S.REPURPOSED, S.REMANUFACTURED}
    assert (policy.soh_rise_sigmas, policy.soh_rise_floor_cpct) == (2.0, 50)
    assert policy.soh_reset_kinds == {Kind.REMANUFACTURE}
    assert policy.trusted_revocation_reasons == {
        "superseded", "cessation_of_operation", "affiliation_changed"
    }  # fmt: skip
    assert policy.expired_requires_receipt is True
    assert policy.max_clock_skew_s == 300


def edit(old: str, new: str) -> bytes:
    """The default policy with `old` (which must be there) replaced by `new`."""
    assert old in DEFAULT_TEXT
    return DEFAULT_TEXT.replace(old, new, 1).encode()


def without_section(name: str) -> bytes:
    """The default policy without the table `[name]` (header and keys)."""
    lines = DEFAULT_TEXT.splitlines(keepends=True)
    start = lines.index(f"[{name}]\n")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(("[", "#")))
    return "".join(lines[:start] + lines[end:]).encode()


CELL_WRITE = 'cell = ["telemetry"]'
REASONS = 'trusted_revocation_reasons = ["superseded", '
INVALID_POLICIES: dict[str, tuple[bytes, str]] = {
    "bad-toml": (edit("version = 1", "version = = 1"), "not a TOML policy"),
    "not-utf8": (DEFAULT_POLICY + b"\n# \xff\n", "not a TOML policy"),
    "wrong-version": (edit("version = 1", "version = 2"), "version 2 is not supported"),
    "no-version": (edit("version = 1", ""), "version None is not supported"),
    "version-as-text": (edit("version = 1", 'version = "1"'), "version '1' is not supported"),
    "version-as-boolean": (edit("version = 1", "version = true"), "version True"),
    "unknown-section": (DEFAULT_POLICY + b"\n[audit]\nlog = true\n", "unknown sections ['audit']"),
    "missing-section": (without_section("soh"), "'soh'"),
    "unknown-signer": (edit(CELL_WRITE, CELL_WRITE + '\nauditor = ["status"]'), "'auditor'"),
    "unknown-kind": (edit('tester = ["measurement"', 'tester = ["calibration"'), "'calibration'"),
    "checkpoint-is-no-writable-kind": (
        edit(CELL_WRITE, 'cell = ["telemetry", "checkpoint"]'), "'checkpoint'"),
    "kinds-not-a-list": (edit('tester = ["measurement"]', 'tester = "measurement"'),
                         "[write].tester must be a list"),
    "unknown-status": (edit("waste = []", "waste = []\nrefurbished = []"), "'refurbished'"),
    "unknown-target-status": (edit("waste = []", 'waste = ["refurbished"]'), "'refurbished'"),
    "unknown-revocation-reason": (edit(REASONS, REASONS + '"stolen", '), "'stolen'"),
    "receipt-flag-as-text": (
        edit("expired_requires_receipt = true", 'expired_requires_receipt = "false"'),
        "expired_requires_receipt"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("data", "problem"), INVALID_POLICIES.values(), ids=INVALID_POLICIES.keys()
)
def test_invalid_policy_is_refused_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(InputError) as caught:
        Policy.from_bytes(data, source="site-policy.toml")
    assert problem in caught.value.reason
    assert caught.value.source == "site-policy.toml"


def test_missing_policy_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        Policy.load(tmp_path / "policy.toml")


# --------------------------------------------------------------------------------------------
# Certificate authority (each test its own, in tmp_path)

LAYOUT = {
    "ca/issued.json",
    *(
        f"ca/{ca}.{part}.pem"
        for ca in ("root", "oem-ca", "services-ca")
        for part in ("key", "cert")
    ),
    *(f"keys/{role.value}.{part}.pem" for role in Role for part in ("key", "cert")),
    *(f"trust/certs/{role.value}.pem" for role in Role),
    *(f"trust/crls/{ca}.crl.pem" for ca in ("root", "oem-ca", "services-ca")),
    "trust/intermediates/oem-ca.pem",
    "trust/intermediates/services-ca.pem",
    "trust/roots/root.pem",
    "trust/policy.toml",
}


@pytest.fixture
def authority(tmp_path: Path) -> CertificateAuthority:
    ca = CertificateAuthority(tmp_path / "pki")
    ca.init()
    return ca


def files_under(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def cert_at(path: Path) -> x509.Certificate:
    return load_certificates(path)[0]


def crl_of(ca: CertificateAuthority, issuer: str) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl((ca.trust_dir / "crls" / f"{issuer}.crl.pem").read_bytes())


def test_init_writes_the_documented_layout(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    issued = ca.init()
    assert files_under(ca.dir) == LAYOUT
    assert {(i.name, i.role) for i in issued} == {(r.value, r.value) for r in Role}
    assert (ca.trust_dir / "policy.toml").read_bytes() == DEFAULT_POLICY
    for item in issued:
        cert = cert_at(item.cert_path)
        assert roles_of(cert) == {Role(item.role)}
        assert cert.serial_number == item.serial
        assert (ca.trust_dir / "certs" / f"{item.name}.pem").read_bytes() == (
            item.cert_path.read_bytes()
        )


def test_private_keys_are_owner_only(authority: CertificateAuthority) -> None:
    keys = sorted(authority.dir.rglob("*.key.pem"))
    assert len(keys) == 3 + len(Role)
    assert {p.name: p.stat().st_mode & 0o777 for p in keys} == {p.name: 0o600 for p in keys}
    leaked = [p for p in (authority.trust_dir).rglob("*") if b"PRIVATE KEY" in _read(p)]
    assert leaked == []


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


def test_init_refuses_to_replace_a_ca_without_force(authority: CertificateAuthority) -> None:
    root = (authority.trust_dir / "roots" / "root.pem").read_bytes()
    with pytest.raises(InputError, match="already holds a CA"):
        authority.init()
    assert (authority.trust_dir / "roots" / "root.pem").read_bytes() == root
    authority.init(force=True)
    assert (authority.trust_dir / "roots" / "root.pem").read_bytes() != root


def test_issue_adds_the_certificate_to_the_bundle(authority: CertificateAuthority) -> None:
    start = dt.datetime.now(dt.UTC).replace(microsecond=0)  # within the CA's validity
    issued = authority.issue("lab-2", Role.TESTER, common_name="Lab Two", not_before=start, days=90)
    cert = cert_at(authority.trust_dir / "certs" / "lab-2.pem")
    assert cert == cert_at(issued.cert_path)
    assert (issued.issuer, issued.serial) == ("services-ca", cert.serial_number)
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (
        start, start + dt.timedelta(days=90)
    )  # fmt: skip
    assert issued.key_path.stat().st_mode & 0o777 == 0o600
    signer = TrustBundle.load(authority.trust_dir).signer(cert)
    assert (signer.subject, signer.roles) == ("Lab Two", frozenset({Role.TESTER}))


@pytest.mark.parametrize(
    ("name", "problem"),
    [("tester", "exists"), ("lab two", "letters, digits"), ("", "letters, digits")],
    ids=["existing-name", "space-in-name", "empty-name"],
)
def test_issue_refuses(authority: CertificateAuthority, name: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        authority.issue(name, Role.TESTER)


def test_revoke_resigns_the_issuers_crl(authority: CertificateAuthority) -> None:
    when = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
    tester = cert_at(authority.dir / "keys" / "tester.cert.pem")
    result = authority.revoke("tester", reason="superseded", at=when)
    assert result == {"name": "tester", "serial": format(tester.serial_number, "x"),
                      "at": when.isoformat(), "reason": "superseded"}  # fmt: skip
    crl = crl_of(authority, "services-ca")
    _, services = ca_material("services-ca", authority)
    assert crl.is_signature_valid(services.public_key())  # type: ignore[arg-type]
    assert crl.issuer == services.subject
    revoked = crl.get_revoked_certificate_by_serial_number(tester.serial_number)
    assert revoked is not None
    assert revoked.revocation_date_utc == when
    reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.superseded
    assert len(crl) == 1
    assert len(crl_of(authority, "oem-ca")) == 0
    listed = {c["name"]: c for c in authority.listing()}
    assert (listed["tester"]["revoked"], listed["tester"]["reason"]) == (
        when.isoformat(), "superseded"
    )  # fmt: skip
    assert (listed["oem"]["revoked"], listed["oem"]["reason"]) == (None, None)


def test_revoke_by_serial(authority: CertificateAuthority) -> None:
    serial = cert_at(authority.dir / "keys" / "oem.cert.pem").serial_number
    assert authority.revoke(f"0x{serial:X}")["name"] == "oem"
    assert crl_of(authority, "oem-ca").get_revoked_certificate_by_serial_number(serial)


@pytest.mark.parametrize(
    ("target", "reason", "problem"),
    [("tester", "stolen", "unknown reason 'stolen'"), ("auditor", "superseded", "'auditor'")],
    ids=["unknown-reason", "unknown-actor"],
)
def test_revoke_refuses(
    authority: CertificateAuthority, target: str, reason: str, problem: str
) -> None:
    with pytest.raises(InputError, match=problem):
        authority.revoke(target, reason=reason)


def test_every_resigned_crl_has_a_larger_crl_number(authority: CertificateAuthority) -> None:
    """RFC 5280 5.2.3: a CRL issuer's CRLNumber increases monotonically, so a relying party
    can tell the newer of two CRLs. Two revocations in the same second are two CRLs."""
    moment = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

    def number() -> int:
        crl = crl_of(authority, "services-ca")
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    authority.revoke("tester", now=moment)
    first = number()
    authority.revoke("recycler", now=moment)
    assert number() > first


def test_listing_names_every_issued_certificate(authority: CertificateAuthority) -> None:
    listed = authority.listing()
    assert [c["name"] for c in listed] == [r.value for r in Role]
    for row in listed:
        cert = cert_at(authority.dir / "keys" / f"{row['name']}.cert.pem")
        assert row["serial"] == format(cert.serial_number, "x")
        assert row["not_after"] == cert.not_valid_after_utc.isoformat()
        assert row["issuer"] == (
            "oem-ca" if row["role"] in ("oem", "integrator") else "services-ca"
        )


# --------------------------------------------------------------------------------------------
# Trust bundle


def test_load_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a trust bundle directory"):
        TrustBundle.load(tmp_path / "nowhere")


def test_load_refuses_a_bundle_without_roots(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    trust = shutil.copytree(authority.trust_dir, tmp_path / "trust")
    shutil.rmtree(trust / "roots")
    with pytest.raises(InputError, match="no roots"):
        TrustBundle.load(trust)


def test_load_refuses_an_unreadable_crl(authority: CertificateAuthority) -> None:
    (authority.trust_dir / "crls" / "extra.crl.pem").write_bytes(b"-----BEGIN X509 CRL-----\n")
    with pytest.raises(InputError, match="not a readable CRL") as caught:
        TrustBundle.load(authority.trust_dir)
    assert caught.value.source == str(authority.trust_dir / "crls" / "extra.crl.pem")


def test_load_refuses_a_crl_signed_by_a_key_outside_the_bundle(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    """Another demo PKI's Services CA has the same name but not the same key."""
    other = CertificateAuthority(tmp_path / "other")
    other.init()
    shutil.copy(other.trust_dir / "crls" / "services-ca.crl.pem", authority.trust_dir / "crls"
                / "zz-foreign.crl.pem")  # fmt: skip
    with pytest.raises(InputError, match="is not signed by a CA in the bundle"):
        TrustBundle.load(authority.trust_dir)


def test_load_refuses_an_invalid_bundle_policy(authority: CertificateAuthority) -> None:
    (authority.trust_dir / "policy.toml").write_bytes(edit("version = 1", "version = 2"))
    with pytest.raises(InputError, match="version 2"):
        TrustBundle.load(authority.trust_dir)


def test_signer_describes_a_validated_certificate(authority: CertificateAuthority) -> None:
    trust = TrustBundle.load(authority.trust_dir)
    cert = cert_at(authority.dir / "keys" / "tester.cert.pem")
    signer = trust.signer(cert)
    _, services = ca_material("services-ca", authority)
    _, root = ca_material("root", authority)
    assert signer.subject == "Volta Test Lab"
    assert signer.roles == {Role.TESTER}
    assert signer.chain == (cert, services, root)
    assert signer.valid_from == max(c.not_valid_before_utc for c in signer.chain)
    assert signer.valid_until == cert.not_valid_after_utc  # the leaf ends first
    assert signer.revocation is None
    assert trust.signer(cert) is signer  # validated once


def test_signer_window_is_the_intersection_along_the_chain(tmp_path: Path) -> None:
    """A leaf issued to outlive its CA is valid only while the CA is."""
    ca = CertificateAuthority(tmp_path / "pki")
    ca.init(days=30)
    issued = ca.issue("long", Role.OEM, days=3650)
    cert = cert_at(issued.cert_path)
    signer = TrustBundle.load(ca.trust_dir).signer(cert)
    _, oem_ca = ca_material("oem-ca", ca)
    assert cert.not_valid_after_utc == oem_ca.not_valid_after_utc  # issue clamps to the CA
    assert signer.valid_until == oem_ca.not_valid_after_utc


def test_signer_reports_the_revocation(authority: CertificateAuthority) -> None:
    when = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    authority.revoke("recycler", at=when)
    cert = cert_at(authority.dir / "keys" / "recycler.cert.pem")
    signer = TrustBundle.load(authority.trust_dir).signer(cert)
    assert signer.revocation == Revocation(when, "key_compromise", "Circulo Recycling")


def test_signer_reports_a_revoked_ca_above_the_certificate() -> None:
    _, services = ca_material("services-ca")
    when = T0 + 30 * DAY
    base = bundle()
    trust = TrustBundle(
        base.roots,
        intermediates=base.intermediates,
        certs=[actor(LAB)[1]],
        crls=[*actor_crls(), root_crl_revoking(services, x509.ReasonFlags.ca_compromise, when)],
    )
    revocation = trust.signer(actor(LAB)[1]).revocation
    assert revocation == Revocation(at(when), "ca_compromise", "Battery Passport Demo Services CA")


def test_stale_crl_does_not_mask_a_newer_revocation(tmp_path: Path) -> None:
    """A bundle holding two CRLs of one CA (here a backup copy made before the latest
    revocation) must not let the older one hide that revocation: refusing the bundle or using
    the newer CRL are both fine."""
    name, _, cert = fresh_actor(Role.TESTER)
    crls = pki().trust_dir / "crls"
    before = (crls / "services-ca.crl.pem").read_bytes()
    pki().revoke(name, at=at(T0))
    directory = shutil.copytree(pki().trust_dir, tmp_path / "trust")
    (directory / "crls" / "services-ca.crl.pem.bak").write_bytes(before)
    try:
        trust = TrustBundle.load(directory)
    except InputError:
        return
    revocation = trust.signer(cert).revocation
    assert revocation is not None
    assert revocation.at == at(T0)


def test_signer_failure_is_cached_and_raised_each_time(tmp_path: Path) -> None:
    other = CertificateAuthority(tmp_path / "other")
    other.init()
    stranger = cert_at(other.dir / "keys" / "tester.cert.pem")
    trust = bundle()
    for _ in range(2):
        with pytest.raises(VerificationError) as caught:
            trust.signer(stranger)
        assert caught.value.rule == "trust.chain-invalid"


def test_find_names_an_unknown_thumbprint() -> None:
    with pytest.raises(VerificationError) as caught:
        bundle().find((cose.ALG_SHA256_64, bytes(8)))
    assert caught.value.rule == "trust.cert-unknown"
    assert "0000000000000000" in caught.value.reason


def lab_measurement() -> list[SignedRecord]:
    """Birth, telemetry, a lab measurement: valid under the default policy."""
    values = Values(soh_capacity_cpct=9400, soh_method=SohMethod.CAPACITY_TEST)
    steps = [telemetry(1), Step(LAB, Kind.MEASUREMENT, values, T0 + 7200)]
    return build(passport(), steps)


def bundle_with_policy(tmp_path: Path, policy: bytes) -> TrustBundle:
    """The shared test PKI's bundle, copied, with `policy` as its policy.toml."""
    directory = shutil.copytree(pki_with_actors().trust_dir, tmp_path / "trust")
    (directory / "policy.toml").write_bytes(policy)
    return TrustBundle.load(directory)


def test_bundle_policy_overrides_the_default(tmp_path: Path) -> None:
    stricter = edit('tester = ["measurement"]', "tester = []")
    trust = bundle_with_policy(tmp_path, stricter)
    assert trust.policy.sha256 == hashlib.sha256(stricter).hexdigest()
    report = Attack(tag(lab_measurement()), trust=trust).check()
    assert rules(report) == [("policy.write-denied", 2)]
    assert report.policy_sha256 == hashlib.sha256(stricter).hexdigest()
    assert Attack(tag(lab_measurement()), trust=loaded_bundle()).check().valid


def test_policy_argument_overrides_the_bundle_file(tmp_path: Path) -> None:
    bundle_with_policy(tmp_path, edit('tester = ["measurement"]', "tester = []"))
    trust = TrustBundle.load(tmp_path / "trust", policy=Policy.default())
    assert Attack(tag(lab_measurement()), trust=trust).check().valid


def test_policy_may_waive_receipts_for_expired_certificates(tmp_path: Path) -> None:
    """The time question is policy data: without expired_requires_receipt, a record claimed
    inside its (since expired) certificate's validity passes on its claim."""
    _, key, cert = fresh_actor(Role.TESTER, not_before=at(T0 - 10 * DAY), days=30)
    records = lab_measurement()[:2]
    body = Entry(Kind.MEASUREMENT, 2, records[-1].digest, T0 + 7200,
                 Values(soh_capacity_cpct=9400, soh_method=SohMethod.EIS))  # fmt: skip
    records.append(SignedRecord.sign(body, key, x5t=thumbprint(cert)))
    lenient = edit("expired_requires_receipt = true", "expired_requires_receipt = false")
    strict = Attack(tag(records), trust=loaded_bundle()).check()
    assert rules(strict) == [("trust.expired-unproven", 2)]
    assert Attack(tag(records), trust=bundle_with_policy(tmp_path, lenient)).check().valid


def test_policy_decides_which_revocation_reasons_are_trusted(tmp_path: Path) -> None:
    """With no trusted reasons, even a superseded key's earlier records need receipts."""
    name, key, cert = fresh_actor(Role.TESTER)
    pki().revoke(name, reason="superseded", at=at(T0 + 10 * DAY))
    records = lab_measurement()[:2]
    body = Entry(Kind.MEASUREMENT, 2, records[-1].digest, T0 + 7200,
                 Values(soh_capacity_cpct=9400, soh_method=SohMethod.EIS))  # fmt: skip
    records.append(SignedRecord.sign(body, key, x5t=thumbprint(cert)))
    assert Attack(tag(records), trust=loaded_bundle()).check().valid
    none_trusted = edit(
        'trusted_revocation_reasons = ["superseded", "cessation_of_operation", '
        '"affiliation_changed"]',
        "trusted_revocation_reasons = []",
    )
    report = Attack(tag(records), trust=bundle_with_policy(tmp_path, none_trusted)).check()
    assert rules(report) == [("trust.revoked-unproven", 2)]


def test_policy_lineage_roles_are_data(tmp_path: Path) -> None:
    """Taking repurposer off [lineage].roles turns its lineage into a policy.lineage finding."""
    steps = [
        telemetry(1),
        Step(REPURPOSER, Kind.STATUS, Values(status=Status.REPURPOSED, parents=(uuid.uuid4(),)),
             T0 + 7200),
    ]  # fmt: skip
    records = build(passport(), steps)
    assert Attack(tag(records)).check().valid
    oem_only = edit('roles = ["repurposer", "oem"]', 'roles = ["oem"]')
    report = Attack(tag(records), trust=bundle_with_policy(tmp_path, oem_only)).check()
    assert rules(report) == [("policy.lineage", 2)]


# --------------------------------------------------------------------------------------------
# Anti-clone


def test_make_challenge_is_fresh_and_32_bytes() -> None:
    first, second = make_challenge(), make_challenge()
    assert len(first) == len(second) == CHALLENGE_BYTES == 32
    assert first != second


def test_parse_challenge_round_trips_hex() -> None:
    challenge = make_challenge()
    assert parse_challenge(f"  {challenge.hex().upper()}\n") == challenge


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("zz" * 32, "hex digits"),
        ("abc", "hex digits"),
        ("ab" * 31, "32 bytes, got 31"),
        ("ab" * 33, "32 bytes, got 33"),
        ("", "32 bytes, got 0"),
    ],
    ids=["not-hex", "odd-length", "short", "long", "empty"],
)
def test_parse_challenge_refuses(text: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        parse_challenge(text)


def test_response_round_trip() -> None:
    pp = passport()
    challenge = make_challenge()
    check_response(tag([pp.birth]), challenge, respond(pp.cell, challenge))


def test_record_signature_is_no_response() -> None:
    """Domain separation: a cell signs records and responses with one key, so neither may pass
    for the other. A cell-signed COSE_Sign1 over the challenge without the anti-clone AAD
    (what a record-signing oracle would produce) is refused, and so is a genuine entry."""
    pp = passport()
    challenge = make_challenge()
    entry = build(pp, [telemetry(1)])[1]
    image = tag([pp.birth])
    for response in (cose.sign1(challenge, pp.cell), entry.raw):
        with pytest.raises(VerificationError) as caught:
            check_response(image, challenge, response)
        assert caught.value.rule == "clone.response-invalid"


def test_response_is_no_record() -> None:
    pp = passport()
    response = respond(pp.cell, make_challenge())
    with pytest.raises(DecodeError):
        SignedRecord.from_bytes(response)
    public = pp.cell.public_key()
    assert cose.verify_sign1(response, public, external_aad=DOMAIN)
    with pytest.raises(VerificationError):
        cose.verify_sign1(response, public)


def test_response_of_a_weak_cell_key_is_refused() -> None:
    """A birth certifying a small-order key proves nothing, whatever the response."""
    birth = sign_birth(birth_body(cell_key(1), cell_public_key=bytes(32)))
    challenge = make_challenge()
    with pytest.raises(VerificationError) as caught:
        check_response(tag([birth]), challenge, respond(cell_key(1), challenge))
    assert caught.value.rule == "chain.cell-key"
