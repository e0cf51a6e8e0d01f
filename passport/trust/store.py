"""Certificates that actors' records point at by `x5t` (a certificate does not fit the tag).

The store only answers "which certificate has this thumbprint". Whether that certificate is
trusted for a role at a time is the trust model's question, not the store's.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from passport import cose
from passport._fileio import read_bytes
from passport.errors import InputError, VerificationError
from passport.records import X5t

_CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


def thumbprint(cert: x509.Certificate, alg: int = cose.ALG_SHA256_64) -> X5t:
    der = cert.public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).digest()
    if alg == cose.ALG_SHA256_64:
        return (alg, digest[:8])
    if alg == cose.ALG_SHA256:
        return (alg, digest)
    raise ValueError(f"unsupported x5t hash algorithm {alg}")


class CertificateStore:
    """Certificates indexed by their SHA-256 and SHA-256/64 thumbprints."""

    def __init__(self, certs: Iterable[x509.Certificate] = ()) -> None:
        self._by_x5t: dict[X5t, list[x509.Certificate]] = {}
        for cert in certs:
            self.add(cert)

    def __len__(self) -> int:
        return len({id(c) for certs in self._by_x5t.values() for c in certs})

    def add(self, cert: x509.Certificate) -> None:
        for alg in (cose.ALG_SHA256_64, cose.ALG_SHA256):
            bucket = self._by_x5t.setdefault(thumbprint(cert, alg), [])
            if cert not in bucket:
                bucket.append(cert)

    def find(self, x5t: X5t) -> list[x509.Certificate]:
        """Every certificate with this thumbprint (a truncated hash may, rarely, match two)."""
        found = self._by_x5t.get((x5t[0], bytes(x5t[1])), [])
        if not found:
            raise VerificationError(
                f"no certificate with x5t {x5t[1].hex()} is known; supply it (e.g. --cert FILE)",
                rule="trust.cert-unknown",
            )
        return list(found)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike[str]]) -> CertificateStore:
        """Load certificates from files (PEM bundles or DER) and directories of such files."""
        store = cls()
        for path in paths:
            p = Path(path)
            files = (
                sorted(f for f in p.rglob("*") if f.suffix.lower() in _CERT_SUFFIXES)
                if p.is_dir()
                else [p]
            )
            for f in files:
                for cert in load_certificates(f):
                    store.add(cert)
        return store


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    data = read_bytes(path, limit=16 << 20)
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        if b"-----BEGIN" in data:
            return []  # a key or CRL next to the certificates: not ours to read here
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise InputError(f"not a readable certificate ({exc})", source=str(path)) from None
