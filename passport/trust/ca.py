"""A demo PKI with real X.509 certificates and CRLs: `passport ca init | issue | revoke`.

Layout of a CA directory::

    ca/         CA keys (0600) and certificates, and issued.json (what was issued and revoked)
    keys/       one key (0600) and certificate per actor: oem, integrator, tester, ...
    trust/      the trust bundle every verifier takes (--trust DIR/trust):
        roots/          trust anchors
        intermediates/  CA certificates between anchors and actors
        certs/          actor certificates, found by the x5t records carry
        crls/           one CRL per CA, re-signed on every revocation
        policy.toml     the trust policy (a copy of the default; edit to tighten)

Root CA -> "OEM CA" (issues oem and integrator certificates) and "Services CA" (tester,
repurposer, recycler). All keys are ECDSA P-256: `cryptography.x509.verification` does not
validate Ed25519 certificates.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from passport._fileio import read_bytes, write_atomic
from passport.errors import InputError
from passport.trust import keys
from passport.trust.roles import ROLE_OIDS, Role

ROOT = "root"
CAS = {"oem-ca": "OEM CA", "services-ca": "Services CA"}
ISSUER_FOR_ROLE = {
    Role.OEM: "oem-ca",
    Role.INTEGRATOR: "oem-ca",
    Role.TESTER: "services-ca",
    Role.REPURPOSER: "services-ca",
    Role.RECYCLER: "services-ca",
}
DEMO_ACTORS = {
    Role.OEM: "ACME Cells OEM",
    Role.INTEGRATOR: "ACME Pack Integration",
    Role.TESTER: "Volta Test Lab",
    Role.REPURPOSER: "SecondLife Storage",
    Role.RECYCLER: "Circulo Recycling",
}
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key_compromise": x509.ReasonFlags.key_compromise,
    "ca_compromise": x509.ReasonFlags.ca_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
}
CRL_DAYS = 30
STATE = "issued.json"


@dataclass(frozen=True, slots=True)
class Issued:
    name: str
    role: str
    serial: int
    issuer: str
    cert_path: Path
    key_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "battery-passport demo PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _build(
    subject: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None = None,
    ca: bool,
    role: Role | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(_key_usage(ca=ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if role is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ROLE_OIDS[role]]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _utc(moment: dt.datetime | None) -> dt.datetime:
    moment = moment or dt.datetime.now(dt.UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


class CertificateAuthority:
    """A CA directory on disk (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    # ------------------------------------------------------------------ paths and state

    @property
    def trust_dir(self) -> Path:
        return self.dir / "trust"

    def _ca_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        key = keys.load_private(self.dir / "ca" / f"{name}.key.pem")
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _ca_cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(read_bytes(self.dir / "ca" / f"{name}.cert.pem"))

    def _state(self) -> dict[str, Any]:
        path = self.dir / "ca" / STATE
        if not path.exists():
            raise InputError(
                f"not a CA directory (no ca/{STATE}); run `passport ca init`", source=str(self.dir)
            )
        try:
            state: dict[str, Any] = json.loads(read_bytes(path))
        except ValueError as exc:
            raise InputError(f"unreadable CA state: {exc}", source=str(path)) from None
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.dir / "ca" / STATE, json.dumps(state, indent=2).encode() + b"\n")

    # ------------------------------------------------------------------ operations

    def init(
        self,
        *,
        not_before: dt.datetime | None = None,
        days: int = 3650,
        force: bool = False,
        now: dt.datetime | None = None,
    ) -> list[Issued]:
        """Create root, OEM and services CAs, one actor per role, CRLs and the trust bundle."""
        if (self.dir / "ca" / STATE).exists() and not force:
            raise InputError("already holds a CA (use --force to replace it)", source=str(self.dir))
        now = _utc(now)
        start = _utc(not_before) if not_before else now - dt.timedelta(days=1)
        end = max(now, start) + dt.timedelta(days=days)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _build(
            _name("Battery Passport Demo Root CA"), root_key.public_key(),
            _name("Battery Passport Demo Root CA"), root_key,
            not_before=start, not_after=end + dt.timedelta(days=365), path_length=1, ca=True,
        )  # fmt: skip
        keys.save_private(root_key, self.dir / "ca" / f"{ROOT}.key.pem", overwrite=True)
        write_atomic(self.dir / "ca" / f"{ROOT}.cert.pem", _pem(root))
        write_atomic(self.trust_dir / "roots" / f"{ROOT}.pem", _pem(root))
        for name, label in CAS.items():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _build(
                _name(f"Battery Passport Demo {label}"), key.public_key(), root.subject,
                root_key, not_before=start, not_after=end + dt.timedelta(days=180),
                path_length=0, ca=True,
            )  # fmt: skip
            keys.save_private(key, self.dir / "ca" / f"{name}.key.pem", overwrite=True)
            write_atomic(self.dir / "ca" / f"{name}.cert.pem", _pem(cert))
            write_atomic(self.trust_dir / "intermediates" / f"{name}.pem", _pem(cert))
        policy = resources.files("passport.trust").joinpath("policy.toml").read_bytes()
        write_atomic(self.trust_dir / "policy.toml", policy)
        self._save_state({"version": 1, "days": days, "certs": [], "revoked": []})
        for issuer in (ROOT, *CAS):
            self._write_crl(issuer, now=now)
        return [
            self.issue(role.value, role, common_name=cn, not_before=start, days=days, now=now)
            for role, cn in DEMO_ACTORS.items()
        ]

    def issue(
        self,
        name: str,
        role: Role,
        *,
        common_name: str | None = None,
        days: int | None = None,
        not_before: dt.datetime | None = None,
        now: dt.datetime | None = None,
        force: bool = False,
    ) -> Issued:
        """A new actor key and certificate for `role`, added to the trust bundle."""
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise InputError(f"actor name {name!r}: use letters, digits, '-' and '_'")
        state = self._state()
        if any(c["name"] == name for c in state["certs"]) and not force:
            raise InputError(f"an actor named {name!r} exists (use --force to re-issue)")
        now = _utc(now)
        start = _utc(not_before) if not_before else now - dt.timedelta(minutes=5)
        issuer = ISSUER_FOR_ROLE[role]
        issuer_cert = self._ca_cert(issuer)
        # Never outside the issuer's own validity: such a certificate could never validate.
        start = max(start, issuer_cert.not_valid_before_utc)
        end = min(
            start + dt.timedelta(days=days or int(state["days"])), issuer_cert.not_valid_after_utc
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _build(
            _name(common_name or name), key.public_key(), issuer_cert.subject,
            self._ca_key(issuer), not_before=start, not_after=end, ca=False, role=role,
        )  # fmt: skip
        key_path = self.dir / "keys" / f"{name}.key.pem"
        cert_path = self.dir / "keys" / f"{name}.cert.pem"
        keys.save_private(key, key_path, overwrite=True)
        write_atomic(cert_path, _pem(cert))
        write_atomic(self.trust_dir / "certs" / f"{name}.pem", _pem(cert))
        state["certs"] = [c for c in state["certs"] if c["name"] != name] + [
            {"name": name, "role": role.value, "serial": format(cert.serial_number, "x"),
             "issuer": issuer, "not_after": cert.not_valid_after_utc.isoformat()}
        ]  # fmt: skip
        self._save_state(state)
        return Issued(name, role.value, cert.serial_number, issuer, cert_path, key_path)

    def revoke(
        self,
        name_or_serial: str,
        *,
        reason: str = "key_compromise",
        at: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Revoke an actor certificate as of `at` (default now) and re-sign its CA's CRL."""
        if reason not in REASONS:
            raise InputError(f"unknown reason {reason!r}; choose one of {', '.join(REASONS)}")
        state = self._state()
        wanted = name_or_serial.lower().removeprefix("0x")
        matches = [c for c in state["certs"] if wanted in (c["name"].lower(), c["serial"])]
        if not matches:
            raise InputError(f"no issued certificate named or numbered {name_or_serial!r}")
        entry = matches[0]
        now = _utc(now)
        when = _utc(at) if at else now
        state["revoked"] = [r for r in state["revoked"] if r["serial"] != entry["serial"]] + [
            {"serial": entry["serial"], "issuer": entry["issuer"], "name": entry["name"],
             "at": when.isoformat(), "reason": reason}
        ]  # fmt: skip
        self._save_state(state)
        self._write_crl(entry["issuer"], now=now)
        return {
            "name": entry["name"],
            "serial": entry["serial"],
            "at": when.isoformat(),
            "reason": reason,
        }

    def _write_crl(self, issuer: str, *, now: dt.datetime) -> None:
        state = self._state()
        # RFC 5280 5.2.3: every CRL an issuer signs has a larger number than the last.
        numbers = state.setdefault("crl_numbers", {})
        number = numbers[issuer] = int(numbers.get(issuer, 0)) + 1
        self._save_state(state)
        cert = self._ca_cert(issuer)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=CRL_DAYS))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        for revoked in state["revoked"]:
            if revoked["issuer"] != issuer:
                continue
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(revoked["serial"], 16))
                .revocation_date(dt.datetime.fromisoformat(revoked["at"]))
                .add_extension(x509.CRLReason(REASONS[revoked["reason"]]), critical=False)
                .build()
            )
        crl = builder.sign(self._ca_key(issuer), hashes.SHA256())
        write_atomic(
            self.trust_dir / "crls" / f"{issuer}.crl.pem",
            crl.public_bytes(serialization.Encoding.PEM),
        )

    def listing(self) -> list[dict[str, Any]]:
        state = self._state()
        revoked = {r["serial"]: r for r in state["revoked"]}
        return [
            {**c, "revoked": revoked.get(c["serial"], {}).get("at"),
             "reason": revoked.get(c["serial"], {}).get("reason")}
            for c in state["certs"]
        ]  # fmt: skip
