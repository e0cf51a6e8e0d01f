"""The trust bundle: anchors, intermediates, actor certificates, CRLs and the policy.

`TrustBundle.signer(cert)` answers "who is this certificate, by which chain, valid when, revoked
when": chains are validated once per certificate with `cryptography.x509.verification` and the
validity window (the intersection of every certificate's validity along the chain) is kept, so
each record only compares its claimed time with that window and with the revocation time.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import verification as xv

from passport._fileio import read_bytes
from passport.errors import InputError, VerificationError
from passport.records import X5t
from passport.trust.policy import Policy
from passport.trust.roles import Role, roles_of
from passport.trust.store import CertificateStore, load_certificates

MAX_CHAIN_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Revocation:
    at: dt.datetime
    reason: str  # ReasonFlags name, e.g. "key_compromise"
    subject: str  # which certificate of the chain was revoked


@dataclass(frozen=True, slots=True)
class Signer:
    """A validated actor certificate."""

    cert: x509.Certificate
    subject: str
    roles: frozenset[Role]
    chain: tuple[x509.Certificate, ...]  # leaf first, anchor last
    valid_from: dt.datetime  # latest notBefore along the chain
    valid_until: dt.datetime  # earliest notAfter along the chain
    revocations: tuple[Revocation, ...]  # of any certificate in the chain, earliest first

    @property
    def revocation(self) -> Revocation | None:
        """The earliest revocation along the chain, if any."""
        return self.revocations[0] if self.revocations else None


def _subject(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _reason(revoked: x509.RevokedCertificate) -> str:
    try:
        return revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        return "unspecified"


def _ee_policy() -> xv.ExtensionPolicy:
    # Actor certificates name no host or e-mail: no SAN is required; our role EKUs replace the
    # TLS ones the client verifier would otherwise demand.
    return (
        xv.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, xv.Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, xv.Criticality.AGNOSTIC, None)
    )


class TrustBundle:
    """What a verifier trusts. Build with `load(directory)` or from certificate objects."""

    def __init__(
        self,
        roots: Iterable[x509.Certificate],
        *,
        intermediates: Iterable[x509.Certificate] = (),
        certs: Iterable[x509.Certificate] = (),
        crls: Iterable[x509.CertificateRevocationList] = (),
        policy: Policy | None = None,
        source: str = "<memory>",
    ) -> None:
        self.roots = list(roots)
        self.intermediates = list(intermediates)
        self.store = CertificateStore([*self.intermediates, *certs])
        self.policy = policy or Policy.default()
        self.source = source
        self._crls: dict[bytes, x509.CertificateRevocationList] = {}
        cas = [*self.roots, *self.intermediates]
        for crl in crls:
            issuers = [c for c in cas if c.subject == crl.issuer]
            if not any(crl.is_signature_valid(c.public_key()) for c in issuers):  # type: ignore[arg-type]
                raise InputError(
                    f"CRL of {crl.issuer.rfc4514_string()} is not signed by a CA in the bundle",
                    source=source,
                )
            # Several CRLs of one issuer (an old copy left beside the new one): the newest wins.
            key = crl.issuer.public_bytes()
            known = self._crls.get(key)
            if known is None or _crl_order(crl) > _crl_order(known):
                self._crls[key] = crl
        self._signers: dict[bytes, Signer | VerificationError] = {}

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, policy: Policy | None = None
    ) -> TrustBundle:
        root = Path(directory)
        if not root.is_dir():
            raise InputError("not a trust bundle directory", source=str(root))
        roots = _certs_in(root / "roots")
        if not roots:
            raise InputError("trust bundle has no roots/ (trust anchors)", source=str(root))
        crls = []
        for path in sorted((root / "crls").glob("*")) if (root / "crls").is_dir() else []:
            data = read_bytes(path)
            try:
                crls.append(
                    x509.load_pem_x509_crl(data)
                    if b"-----BEGIN" in data
                    else x509.load_der_x509_crl(data)
                )
            except ValueError as exc:
                raise InputError(f"not a readable CRL ({exc})", source=str(path)) from None
        if policy is None:
            policy_file = root / "policy.toml"
            policy = Policy.load(policy_file) if policy_file.exists() else Policy.default()
        return cls(
            roots,
            intermediates=_certs_in(root / "intermediates"),
            certs=_certs_in(root / "certs"),
            crls=crls,
            policy=policy,
            source=str(root),
        )

    def find(self, x5t: X5t) -> list[x509.Certificate]:
        """Certificates with this thumbprint; raises `trust.cert-unknown` naming it."""
        return self.store.find(x5t)

    def signer(self, cert: x509.Certificate) -> Signer:
        """Validate `cert`'s chain to an anchor (cached); raises `trust.chain-invalid`."""
        key = cert.fingerprint(_SHA256)
        cached = self._signers.get(key)
        if cached is None:
            try:
                cached = self._validate(cert)
            except VerificationError as exc:
                cached = exc
            self._signers[key] = cached
        if isinstance(cached, VerificationError):
            raise VerificationError(cached.reason, rule=cached.rule)
        return cached

    def _validate(self, cert: x509.Certificate) -> Signer:
        subject = _subject(cert)
        # Validate at a moment when the leaf is valid; the window along the chain is kept.
        moment = max(cert.not_valid_before_utc, min(cert.not_valid_after_utc, _now()))
        verifier = (
            xv.PolicyBuilder()
            .store(xv.Store(self.roots))
            .time(moment)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(
                ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=_ee_policy()
            )
            .build_client_verifier()
        )
        try:
            chain = tuple(verifier.verify(cert, self.intermediates).chain)
        except xv.VerificationError as exc:
            raise VerificationError(
                f"certificate {subject!r} does not chain to a trust anchor of the bundle ({exc})",
                rule="trust.chain-invalid",
            ) from None
        revocations = []
        for child, issuer in itertools.pairwise(chain):
            crl = self._crls.get(issuer.subject.public_bytes())
            revoked = (
                crl.get_revoked_certificate_by_serial_number(child.serial_number) if crl else None
            )
            if revoked is not None:
                revocations.append(
                    Revocation(revoked.revocation_date_utc, _reason(revoked), _subject(child))
                )
        return Signer(
            cert=cert,
            subject=subject,
            roles=roles_of(cert),
            chain=chain,
            valid_from=max(c.not_valid_before_utc for c in chain),
            valid_until=min(c.not_valid_after_utc for c in chain),
            revocations=tuple(sorted(revocations, key=lambda r: r.at)),
        )


_SHA256 = hashes.SHA256()


def _crl_order(crl: x509.CertificateRevocationList) -> tuple[dt.datetime, int]:
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = -1
    return crl.last_update_utc, number


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _certs_in(directory: Path) -> list[x509.Certificate]:
    if not directory.is_dir():
        return []
    out: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if path.is_file():
            out.extend(load_certificates(path))
    return out
