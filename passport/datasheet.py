"""The OEM's signed model data sheet: what a passport needs that the cell's memory cannot hold.

A tag has a few hundred bytes to spare; the EU battery passport wants materials, carbon
footprint, due-diligence and recycled-content data per battery model. That data is the same for
every cell of a model, so the OEM publishes it once as a data sheet and each birth record
carries the SHA-256 of the exact signed bytes (`Birth.datasheet_sha256`). Anyone holding the
sheet (the registry, a recycler's copy, a web server) can prove it is the one the cell was born
with, and that an OEM of the trust bundle signed it.

Format: a tagged COSE_Sign1 whose protected header carries `alg`, the `x5t` of the OEM's
certificate (SHA-256/64, as records use) and content type "application/json"; the unprotected
header is empty. The payload is canonical JSON (UTF-8, sorted keys, no whitespace, no NaN)::

    {"fields":{...},"format":"battery-passport/datasheet","issued":"2026-01-15",
     "manufacturer":"ACME Cells","model":"ACME-LFP-35","revision":"3","version":1}

`fields` holds any JSON object (depth <= 8, integers within +-(2**53 - 1) so every JSON reader
sees the same number, finite floats); the whole payload is at most 256 KiB. A signed payload
must be exactly the canonical encoding of what it decodes to, so every reader sees one value.

`read_datasheet` verifies; every failure is a `VerificationError` with a stable rule id:

- `datasheet.decode`: not a tagged COSE_Sign1, or its header is not a data sheet's.
- `datasheet.signature`: the signature does not verify with the certificate x5t names.
- `datasheet.signer`: x5t unknown to the bundle, chain invalid, not an OEM; or a certificate
  of the chain was revoked for a reason the policy does not trust (nothing proves when a sheet
  was signed), or for a trusted reason on or before the sheet's issue date.
- `datasheet.hash-mismatch`: not the bytes `expect_sha256` (the birth record) names.
- `datasheet.format`: the payload is not a valid data sheet in canonical JSON.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from passport import cose
from passport.errors import InputError, VerificationError
from passport.records import X5t
from passport.records.signed import parse_x5t
from passport.trust.bundle import Signer, TrustBundle
from passport.trust.roles import Role
from passport.trust.store import thumbprint

__all__ = [
    "CONTENT_TYPE",
    "FORMAT",
    "MAX_DATASHEET_BYTES",
    "MAX_DEPTH",
    "MAX_PAYLOAD_BYTES",
    "VERSION",
    "DataSheet",
    "VerifiedDataSheet",
    "datasheet_sha256",
    "example_document",
    "parse_document",
    "read_datasheet",
    "sign_datasheet",
    "unverified_datasheet",
    "verify_datasheet",
]

FORMAT = "battery-passport/datasheet"
VERSION = 1
CONTENT_TYPE = "application/json"
#: Largest canonical JSON payload.
MAX_PAYLOAD_BYTES = 256 * 1024
#: Largest signed data sheet (payload plus the COSE envelope).
MAX_DATASHEET_BYTES = MAX_PAYLOAD_BYTES + 1024
#: Deepest nesting of objects and arrays, counting `fields` itself as level 1.
MAX_DEPTH = 8
#: Largest integer magnitude (I-JSON, RFC 7493): beyond it JSON readers disagree.
MAX_SAFE_INTEGER = 2**53 - 1
#: Longest model, manufacturer and revision (characters); the registry's columns fit them.
MAX_MODEL = 128
MAX_MANUFACTURER = 200
MAX_REVISION = 64
#: Largest input document `parse_document` reads (pretty-printed JSON is bigger than canonical).
MAX_DOCUMENT_BYTES = 4 * MAX_PAYLOAD_BYTES

_TOP_KEYS = frozenset(
    {"format", "version", "model", "manufacturer", "revision", "issued", "fields"}
)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ALLOWED_LABELS = frozenset({cose.HDR_ALG, cose.HDR_CONTENT_TYPE, cose.HDR_X5T})


def _dumps(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class DataSheet:
    """One revision of an OEM's data sheet for a battery model.

    Construction validates everything `from_json` would (raising `InputError`) and keeps a
    normalized copy of `fields` (plain dicts and lists behind a read-only mapping: treat it as
    immutable), so `to_json` cannot fail.
    """

    model: str
    manufacturer: str
    revision: str
    issued: dt.date
    fields: Mapping[str, Any]
    _json: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _name(self.model, "model", MAX_MODEL)
        _name(self.manufacturer, "manufacturer", MAX_MANUFACTURER)
        _name(self.revision, "revision", MAX_REVISION)
        if type(self.issued) is not dt.date:
            raise InputError(f"issued must be a date, not {type(self.issued).__name__}")
        if not isinstance(self.fields, Mapping):
            raise InputError(f"fields must be a JSON object, not {_json_type(self.fields)}")
        plain = _normalize(self.fields, "fields", 1)
        object.__setattr__(self, "fields", MappingProxyType(plain))
        encoded = _dumps({**self._header(), "fields": plain})
        if len(encoded) > MAX_PAYLOAD_BYTES:
            raise InputError(
                f"data sheet is {len(encoded)} bytes as canonical JSON; the limit is "
                f"{MAX_PAYLOAD_BYTES}"
            )
        object.__setattr__(self, "_json", encoded)

    def __reduce__(self) -> tuple[Any, ...]:
        # For pickle and copy: the read-only mapping itself does not pickle.
        fields = copy.deepcopy(dict(self.fields))
        return (DataSheet, (self.model, self.manufacturer, self.revision, self.issued, fields))

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "manufacturer": self.manufacturer,
            "revision": self.revision,
            "issued": self.issued.isoformat(),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as a new Python object (format and version included)."""
        return {**self._header(), "fields": copy.deepcopy(dict(self.fields))}

    def to_json(self) -> bytes:
        """The canonical JSON payload (UTF-8, sorted keys, no whitespace)."""
        return self._json

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> DataSheet:
        """Parse a data sheet document strictly; `InputError` naming `source` and the fault.

        Whitespace and key order are free here; `read_datasheet` additionally requires a signed
        payload to be exactly `to_json()` of the result.
        """
        if len(data) > MAX_PAYLOAD_BYTES:
            raise InputError(
                f"data sheet is {len(data)} bytes; the limit is {MAX_PAYLOAD_BYTES}", source=source
            )
        return _from_document(_parse(data, source, bom=False), source, defaults=False)


@dataclass(frozen=True, slots=True)
class VerifiedDataSheet:
    """A data sheet `verify_datasheet` accepted, with who signed it."""

    sheet: DataSheet
    sha256: bytes
    signer: Signer
    x5t: X5t


# --------------------------------------------------------------------------------------------
# Validation of the document


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _BadNumber(Exception):
    def __init__(self, text: str) -> None:
        self.text = text


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(text)
    return value


def _constant(text: str) -> Any:
    raise _BadNumber(text)


def _parse(data: bytes, source: str, *, bom: bool) -> Any:
    """JSON text -> Python objects, refusing duplicate keys, NaN, Infinity and overflow."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InputError("data sheet must be bytes", source=source)
    try:
        text = bytes(data).decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", source=source) from None
    try:
        return json.loads(
            text, object_pairs_hook=_pairs, parse_float=_float, parse_constant=_constant
        )
    except _Duplicate as exc:
        raise InputError(f"duplicate key {exc.key!r}", source=source) from None
    except _BadNumber as exc:
        raise InputError(
            f"number {exc.text[:40]} is not finite (NaN and Infinity are not JSON)", source=source
        ) from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", source=source
        ) from None
    except RecursionError:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels", source=source) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InputError(f"not usable JSON: {exc}", source=source) from None


def _from_document(doc: Any, source: str, *, defaults: bool) -> DataSheet:
    if type(doc) is not dict:
        raise InputError(f"a data sheet is a JSON object, not {_json_type(doc)}", source=source)
    if defaults:
        doc = {"format": FORMAT, "version": VERSION, **doc}
    missing = sorted(_TOP_KEYS - doc.keys())
    extra = sorted(doc.keys() - _TOP_KEYS)
    if missing:
        raise InputError(f"missing key(s) {', '.join(missing)}", source=source)
    if extra:
        raise InputError(
            f"unknown top-level key(s) {', '.join(map(repr, extra))} (data goes in 'fields')",
            source=source,
        )
    if doc["format"] != FORMAT:
        raise InputError(f"format must be {FORMAT!r}, not {doc['format']!r}", source=source)
    if type(doc["version"]) is not int or doc["version"] != VERSION:
        raise InputError(
            f"version {doc['version']!r} is not supported (this reader knows {VERSION})",
            source=source,
        )
    issued = doc["issued"]
    if type(issued) is not str or not _DATE.fullmatch(issued):
        raise InputError(f"issued must be a date as YYYY-MM-DD, not {issued!r}", source=source)
    try:
        date = dt.date.fromisoformat(issued)
    except ValueError:
        raise InputError(f"issued {issued!r} is not a calendar date", source=source) from None
    if type(doc["fields"]) is not dict:
        raise InputError(
            f"fields must be a JSON object, not {_json_type(doc['fields'])}", source=source
        )
    try:
        return DataSheet(
            model=doc["model"],
            manufacturer=doc["manufacturer"],
            revision=doc["revision"],
            issued=date,
            fields=doc["fields"],
        )
    except InputError as exc:
        raise exc.at(source) from None


def _name(value: object, what: str, limit: int) -> None:
    if type(value) is not str:
        raise InputError(f"{what} must be a string, not {_json_type(value)}")
    if not value.strip():
        raise InputError(f"{what} is empty")
    if value != value.strip():
        raise InputError(f"{what} {value!r} has leading or trailing whitespace")
    if len(value) > limit:
        raise InputError(f"{what} is {len(value)} characters; the limit is {limit}")
    if _CONTROL.search(value):
        raise InputError(f"{what} {value!r} contains control characters")
    _text(value, what)


def _text(value: str, where: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: text holds a lone surrogate (not UTF-8)") from None


def _normalize(value: Any, where: str, depth: int) -> Any:
    """A plain-JSON deep copy of `value`; `InputError` naming the path of the first fault."""
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise InputError(f"{where}: integer {value} is beyond +-(2**53 - 1) (I-JSON)")
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise InputError(f"{where}: {value} is not finite (NaN and Infinity are not JSON)")
        return value
    if type(value) is str:
        _text(value, where)
        return value
    if isinstance(value, Mapping | list | tuple):
        if depth > MAX_DEPTH:
            raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise InputError(f"{where}: key {key!r} is not a string")
                _text(key, f"{where} key {key!r}")
                out[key] = _normalize(item, f"{where}.{key}", depth + 1)
            return out
        return [_normalize(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise InputError(f"{where}: {type(value).__name__} is not a JSON value")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is int or type(value) is float:
        return "a number"
    if type(value) is str:
        return "a string"
    if type(value) is list:
        return "an array"
    if type(value) is dict:
        return "an object"
    return type(value).__name__


def parse_document(data: bytes, *, source: str) -> DataSheet:
    """A data sheet as a person writes it (the input of `passport datasheet sign`): like
    `from_json`, but `format` and `version` may be left out, a UTF-8 BOM is tolerated and
    pretty-printing may make it larger than the canonical limit."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputError(
            f"document is {len(data)} bytes; the limit is {MAX_DOCUMENT_BYTES}", source=source
        )
    return _from_document(_parse(data, source, bom=True), source, defaults=True)


def example_document() -> str:
    """A valid input document for `passport datasheet sign` (pretty-printed JSON)."""
    example = {
        "format": FORMAT,
        "version": VERSION,
        "model": "ACME-LFP-35",
        "manufacturer": "ACME Cells",
        "revision": "3",
        "issued": "2026-01-15",
        "fields": {
            "category": "ev",
            "chemistry": "LFP",
            "weight_kg": 0.92,
            "rated_capacity_ah": 35,
            "carbon_footprint_kg_co2e_per_kwh": 61.2,
            "recycled_content_pct": {"cobalt": 0, "lithium": 6, "nickel": 0, "lead": 0},
            "due_diligence_report": "https://acme.example/dd/2025.pdf",
        },
    }
    return json.dumps(example, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# Signing and verifying


def sign_datasheet(sheet: DataSheet, key: cose.PrivateKey, cert: x509.Certificate) -> bytes:
    """A tagged COSE_Sign1 over `sheet.to_json()`, naming `cert` by its x5t (SHA-256/64)."""
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
        raise InputError("the signing key does not belong to the certificate")
    alg, digest = thumbprint(cert)
    header = {cose.HDR_X5T: [alg, digest], cose.HDR_CONTENT_TYPE: CONTENT_TYPE}
    return cose.sign1(sheet.to_json(), key, protected=header)


def datasheet_sha256(raw: bytes) -> bytes:
    """SHA-256 of the exact signed bytes: the value a birth record carries."""
    return hashlib.sha256(bytes(raw)).digest()


def _fail(rule: str, reason: str, source: str) -> VerificationError:
    return VerificationError(reason, rule=rule, source=source)


def _open(raw: bytes, source: str) -> tuple[cose.Sign1, X5t, bytes]:
    """Decode the envelope and check its header; (message, x5t, payload)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _fail("datasheet.decode", "a data sheet must be bytes", source)
    raw = bytes(raw)
    if len(raw) > MAX_DATASHEET_BYTES:
        raise _fail(
            "datasheet.decode",
            f"data sheet is {len(raw)} bytes; the limit is {MAX_DATASHEET_BYTES}",
            source,
        )
    try:
        msg = cose.decode_sign1(raw)
    except VerificationError as exc:
        raise _fail(
            "datasheet.decode", f"not a COSE_Sign1 data sheet: {exc.reason}", source
        ) from None
    if not msg.tagged:
        raise _fail("datasheet.decode", "a data sheet is a tagged COSE_Sign1 (tag 18)", source)
    if msg.unprotected:
        raise _fail("datasheet.decode", "the unprotected header must be empty", source)
    unknown = msg.protected.keys() - _ALLOWED_LABELS
    if unknown:
        raise _fail(
            "datasheet.decode",
            f"protected header labels {sorted(unknown, key=repr)} are not allowed in a data sheet",
            source,
        )
    if type(msg.protected.get(cose.HDR_ALG)) is not int:
        raise _fail("datasheet.decode", "the protected header has no integer alg", source)
    ctype = msg.protected.get(cose.HDR_CONTENT_TYPE)
    if ctype != CONTENT_TYPE:
        raise _fail(
            "datasheet.decode", f"content type must be {CONTENT_TYPE!r}, not {ctype!r}", source
        )
    x5t = parse_x5t(msg.protected.get(cose.HDR_X5T))
    if x5t is None:
        raise _fail(
            "datasheet.decode",
            "the protected header needs x5t as [-15, 8-byte hash] or [-16, 32-byte hash]",
            source,
        )
    if msg.payload is None:
        raise _fail("datasheet.decode", "the payload is detached; a data sheet carries it", source)
    return msg, x5t, msg.payload


def _sheet(payload: bytes, source: str) -> DataSheet:
    try:
        sheet = DataSheet.from_json(payload, source=source)
    except InputError as exc:
        raise _fail("datasheet.format", f"payload: {exc.reason}", source) from None
    if sheet.to_json() != payload:
        raise _fail(
            "datasheet.format",
            "payload is not canonical JSON (sorted keys, no whitespace, shortest numbers)",
            source,
        )
    return sheet


def unverified_datasheet(raw: bytes, *, source: str) -> DataSheet:
    """Decode a data sheet for display WITHOUT checking its signature or signer.

    Raises `VerificationError` (`datasheet.decode`, `datasheet.format`)."""
    _msg, _x5t, payload = _open(raw, source)
    return _sheet(payload, source)


def verify_datasheet(
    raw: bytes, trust: TrustBundle, *, source: str, expect_sha256: bytes | None = None
) -> VerifiedDataSheet:
    """Verify a signed data sheet; the sheet, its SHA-256 and its signer.

    The certificate its x5t names must be in `trust`, verify the signature, chain to an anchor
    of the bundle and carry the OEM role. No certificate along the chain may be revoked for a
    reason the policy does not trust, and the sheet must be issued before any other revocation.
    With `expect_sha256` (from the birth record) the bytes must be exactly those. Raises
    `VerificationError` (and `InputError` only for a malformed `expect_sha256`), nothing else.
    """
    if expect_sha256 is not None and (
        not isinstance(expect_sha256, bytes) or len(expect_sha256) != 32
    ):
        raise InputError("expect_sha256 must be 32 bytes", source=source)
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _fail("datasheet.decode", "a data sheet must be bytes", source)
    raw = bytes(raw)
    digest = datasheet_sha256(raw)
    if expect_sha256 is not None and digest != expect_sha256:
        raise _fail(
            "datasheet.hash-mismatch",
            f"data sheet SHA-256 is {digest.hex()}, the birth record names {expect_sha256.hex()}",
            source,
        )
    msg, x5t, payload = _open(raw, source)
    try:
        candidates = trust.find(x5t)
    except VerificationError as exc:
        raise _fail("datasheet.signer", exc.reason, source) from None
    tbs = cose.sig_structure(msg.protected_bytes, b"", payload)
    cert = None
    problem = "signature does not verify"
    for candidate in candidates:
        try:
            public_key = candidate.public_key()
            cose.verify_signature(msg.alg, public_key, tbs, msg.signature)
        except VerificationError as exc:
            problem = exc.reason
            continue
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        cert = candidate
        break
    if cert is None:
        raise _fail("datasheet.signature", f"{problem} (certificate x5t {x5t[1].hex()})", source)
    try:
        signer = trust.signer(cert)
    except VerificationError as exc:
        raise _fail("datasheet.signer", exc.reason, source) from None
    if Role.OEM not in signer.roles:
        roles = ", ".join(sorted(r.value for r in signer.roles)) or "no role"
        raise _fail(
            "datasheet.signer",
            f"{signer.subject} ({roles}) is not an OEM: only an OEM signs data sheets",
            source,
        )
    sheet = _sheet(payload, source)
    _check_revocations(sheet, signer, trust, source)
    return VerifiedDataSheet(sheet, digest, signer, x5t)


def _check_revocations(sheet: DataSheet, signer: Signer, trust: TrustBundle, source: str) -> None:
    """A sheet carries no trustworthy signing time (`issued` is the document's date: an OEM
    may re-sign an old revision with a newer certificate), so expiry is not judged. A
    revocation for a reason the policy does not trust (key compromise, unspecified) refuses
    every sheet of that key; a benign one refuses only sheets issued on or after it."""
    for revocation in signer.revocations:
        if revocation.reason not in trust.policy.trusted_revocation_reasons:
            raise _fail(
                "datasheet.signer",
                f"{revocation.subject} was revoked ({revocation.reason}) at "
                f"{revocation.at.date()}: nothing proves when the sheet was signed",
                source,
            )
        if sheet.issued >= revocation.at.date():
            raise _fail(
                "datasheet.signer",
                f"issued {sheet.issued}, on or after {revocation.subject} was revoked "
                f"({revocation.reason}) at {revocation.at.date()}",
                source,
            )


def read_datasheet(
    raw: bytes, trust: TrustBundle, *, source: str, expect_sha256: bytes | None = None
) -> DataSheet:
    """Verify a signed data sheet (see `verify_datasheet`) and return it."""
    return verify_datasheet(raw, trust, source=source, expect_sha256=expect_sha256).sheet
