"""Key files: generate, save (private files 0600, optionally encrypted), load with clear errors.

Cells use Ed25519 (their secure element's key). Actors (OEM, tester, recycler, ...) use ECDSA
P-256 because their X.509 chains are validated with `cryptography.x509.verification`, which does
not accept Ed25519 certificates.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from passport._fileio import read_bytes, write_atomic
from passport.cose import PrivateKey, PublicKey
from passport.errors import InputError

KeyType = Literal["ed25519", "p256"]
KEY_TYPES: tuple[KeyType, ...] = ("ed25519", "p256")
PASSWORD_ENV = "PASSPORT_KEY_PASSWORD"


def generate(key_type: KeyType) -> PrivateKey:
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise InputError(f"unknown key type {key_type!r}; choose ed25519 or p256")


def private_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    public = (
        key.public_key()
        if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
        else key
    )
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def save_private(
    key: PrivateKey,
    path: str | os.PathLike[str],
    *,
    password: bytes | None = None,
    overwrite: bool = False,
) -> None:
    write_atomic(path, private_pem(key, password), mode=0o600, overwrite=overwrite)


def save_public(
    key: PrivateKey | PublicKey, path: str | os.PathLike[str], *, overwrite: bool = False
) -> None:
    write_atomic(path, public_pem(key), mode=0o644, overwrite=overwrite)


def load_private(path: str | os.PathLike[str], password: bytes | None = None) -> PrivateKey:
    """Load an Ed25519 or P-256 private key (PEM or DER, PKCS#8 or traditional)."""
    data = read_bytes(path, limit=1 << 20)
    source = str(path)
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=password)
    except TypeError as exc:
        if "encrypted" in str(exc).lower() and password is None:
            raise InputError(
                "private key is encrypted: give its password with --password-file or "
                f"${PASSWORD_ENV}",
                source=source,
            ) from None
        raise InputError(
            "private key is not encrypted but a password was given", source=source
        ) from None
    except ValueError as exc:
        hint = "wrong password or " if password is not None else ""
        raise InputError(
            f"not a readable private key ({hint}{_first_line(exc)})", source=source
        ) from None
    except Exception as exc:  # noqa: BLE001 - cryptography raises backend-specific errors
        raise InputError(
            f"not a readable private key ({_first_line(exc)})", source=source
        ) from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise InputError(
        f"unsupported key type {type(key).__name__}: use Ed25519 or ECDSA P-256", source=source
    )


def load_public(path: str | os.PathLike[str]) -> PublicKey:
    """Load a public key from a public-key file or a certificate (PEM or DER)."""
    data = read_bytes(path, limit=1 << 20)
    source = str(path)
    for loader in (
        serialization.load_pem_public_key,
        serialization.load_der_public_key,
    ):
        try:
            key = loader(data)
            break
        except Exception:  # noqa: BLE001 - try the next format
            continue
    else:
        try:
            cert = (
                x509.load_pem_x509_certificate(data)
                if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data)
            )
            key = cert.public_key()
        except Exception:  # noqa: BLE001 - any parse failure is "not a key"
            raise InputError("not a public key or certificate", source=source) from None
    if isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise InputError(f"unsupported public key type {type(key).__name__}", source=source)


def read_password(
    password_file: str | os.PathLike[str] | None, *, env: str = PASSWORD_ENV
) -> bytes | None:
    """A key password from a file (first line) or the environment; None when neither is set."""
    if password_file is not None:
        text = read_bytes(password_file, limit=4096).splitlines()
        if not text or not text[0]:
            raise InputError("password file is empty", source=str(password_file))
        return text[0]
    value = os.environ.get(env)
    return value.encode() if value else None


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    days: int = 3650,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """A self-signed P-256 certificate, for trying the format before a PKI exists."""
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError("certificates are issued for P-256 keys (use --type p256)")
    now = now or dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def public_path_for(private_path: str | os.PathLike[str]) -> Path:
    """Where `keys generate` puts the public key next to a private key file."""
    p = Path(private_path)
    stem = p.name[: -len(".pem")] if p.name.endswith(".pem") else p.name
    return p.with_name(f"{stem}.pub.pem")
