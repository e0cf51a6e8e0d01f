"""OEM model data sheets: the JSON document, signing and verification (one rule id per way to
fail), registry storage on both engines, the 0001 -> 0002 migration, and the CLI
(`passport datasheet sign|show`, `passport registry datasheet`).

Signatures are ECDSA (randomized), so every `signed()` call makes new bytes.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from attack_kit import fresh_actor
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from factories import TEST_LAB, actor, pki, trust_with
from hypothesis import assume, given
from hypothesis import strategies as st
from registry_kit import OEM, open_registry, registry_trust
from sqlalchemy import func, insert, inspect, select
from typer.testing import CliRunner, Result

from cli.app import app
from passport import cbor, cose
from passport.datasheet import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    DataSheet,
    datasheet_sha256,
    example_document,
    parse_document,
    read_datasheet,
    sign_datasheet,
    unverified_datasheet,
    verify_datasheet,
)
from passport.errors import InputError, StorageError, VerificationError
from passport.registry import Registry, migrate, models
from passport.registry.db import make_engine
from passport.registry.models import alert_t, datasheet_t
from passport.trust import keys
from passport.trust.bundle import TrustBundle
from passport.trust.roles import Role
from passport.trust.store import thumbprint

SHEET = DataSheet(
    model="ACME-LFP-35",
    manufacturer="ACME Cells",
    revision="3",
    issued=dt.date(2026, 1, 15),
    fields={
        "category": "ev",
        "weight_kg": 0.92,
        "carbon_footprint_kg_co2e_per_kwh": 61.2,
        "materials": [{"name": "lithium iron phosphate", "share_pct": 31.5}, {"name": "graphite"}],
        "recycled": None,
        "conflict_free": True,
    },
)


def signed(sheet: DataSheet = SHEET, signer: str = OEM) -> bytes:
    return sign_datasheet(sheet, *actor(signer))


def bundle() -> TrustBundle:
    """The OEM and the test lab under the test PKI."""
    return registry_trust()


# --------------------------------------------------------------------------------------------
# The JSON document


def test_to_json_is_the_canonical_document() -> None:
    data = SHEET.to_json()
    assert data == json.dumps(
        SHEET.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert data.startswith(b'{"fields":{"carbon_footprint_kg_co2e_per_kwh":61.2,"category":"ev"')
    assert b'"format":"battery-passport/datasheet"' in data
    assert b'"issued":"2026-01-15"' in data
    assert b'"version":1}' in data
    assert DataSheet.from_json(data, source="sheet.json") == SHEET


def test_non_ascii_text_is_utf8_not_escaped() -> None:
    sheet = dataclasses.replace(SHEET, manufacturer="ACME Zellen München")
    assert "München".encode() in sheet.to_json()
    assert DataSheet.from_json(sheet.to_json(), source="s") == sheet


def test_fields_are_a_read_only_copy() -> None:
    source = {"a": [1, 2]}
    sheet = dataclasses.replace(SHEET, fields=source)
    source["b"] = [3]
    assert dict(sheet.fields) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        sheet.fields["c"] = 1  # type: ignore[index]
    document = sheet.to_dict()
    document["fields"]["a"].append(3)
    assert sheet.to_dict()["fields"] == {"a": [1, 2]}


def test_sheets_pickle_and_copy() -> None:
    assert pickle.loads(pickle.dumps(SHEET)) == SHEET
    assert copy.deepcopy(SHEET).to_json() == SHEET.to_json()


def _doc(**changes: Any) -> bytes:
    document: dict[str, Any] = json.loads(SHEET.to_json())
    for key, value in changes.items():
        if value is dataclasses.MISSING:
            del document[key]
        else:
            document[key] = value
    return json.dumps(document).encode()


def _nested(levels: int) -> dict[str, Any]:
    """A fields object nesting `levels` objects in all (fields itself counts as one)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


_GOOD = SHEET.to_json()
INVALID_DOCUMENTS: dict[str, tuple[bytes, str]] = {
    "not-utf8": (b'{"model": "\xff"}', "not UTF-8"),
    "not-json": (b'{"model": ', "not JSON"),
    "trailing-garbage": (_GOOD + b"x", "not JSON"),
    "array": (b"[]", "not an array"),
    "wrong-format": (_doc(format="battery-passport/other"), "format must be"),
    "missing-format": (_doc(format=dataclasses.MISSING), "missing key(s) format"),
    "version-2": (_doc(version=2), "version 2 is not supported"),
    "version-as-text": (_doc(version="1"), "version '1' is not supported"),
    "version-as-float": (_doc(version=1.0), "version 1.0 is not supported"),
    "version-as-bool": (_doc(version=True), "version True is not supported"),
    "missing-model": (_doc(model=dataclasses.MISSING), "missing key(s) model"),
    "extra-top-level-key": (_doc(colour="blue"), "unknown top-level key(s) 'colour'"),
    "model-not-text": (_doc(model=35), "model must be a string, not a number"),
    "model-empty": (_doc(model=""), "model is empty"),
    "model-padded": (_doc(model=" ACME-LFP-35"), "leading or trailing whitespace"),
    "model-control-char": (_doc(model="ACME\nLFP"), "control characters"),
    "model-too-long": (_doc(model="M" * 129), "the limit is 128"),
    "manufacturer-null": (_doc(manufacturer=None), "manufacturer must be a string, not null"),
    "revision-number": (_doc(revision=3), "revision must be a string"),
    "issued-month-13": (_doc(issued="2026-13-01"), "is not a calendar date"),
    "issued-german": (_doc(issued="15.01.2026"), "issued must be a date as YYYY-MM-DD"),
    "issued-basic-format": (_doc(issued="20260115"), "issued must be a date as YYYY-MM-DD"),
    "issued-datetime": (_doc(issued="2026-01-15T00:00:00"), "YYYY-MM-DD"),
    "issued-number": (_doc(issued=20260115), "YYYY-MM-DD"),
    "fields-array": (_doc(fields=[1]), "fields must be a JSON object, not an array"),
    "fields-missing": (_doc(fields=dataclasses.MISSING), "missing key(s) fields"),
    "nan": (_GOOD.replace(b'"weight_kg":0.92', b'"weight_kg":NaN'), "not finite"),
    "infinity": (_GOOD.replace(b"0.92", b"Infinity"), "not finite"),
    "minus-infinity": (_GOOD.replace(b"0.92", b"-Infinity"), "not finite"),
    "overflowing-float": (_GOOD.replace(b"0.92", b"1e400"), "not finite"),
    "integer-beyond-2^53": (_doc(fields={"n": 2**53}), "beyond +-(2**53 - 1)"),
    "integer-with-5000-digits": (_GOOD.replace(b"0.92", b"9" * 5000), "not usable JSON"),
    "duplicate-top-level-key": (_GOOD[:-1] + b',"model":"X"}', "duplicate key 'model'"),
    "duplicate-nested-key": (
        _GOOD.replace(b'"category":"ev"', b'"category":"ev","category":"ess"'),
        "duplicate key 'category'",
    ),
    "lone-surrogate": (_GOOD.replace(b'"ev"', b'"\\ud800"'), "lone surrogate"),
    "lone-surrogate-key": (_GOOD.replace(b'"category"', b'"\\udfff"'), "lone surrogate"),
    "too-deep": (_doc(fields=_nested(MAX_DEPTH + 1)), f"deeper than {MAX_DEPTH} levels"),
    "very-deep": (_GOOD.replace(b"0.92", b"[" * 5000 + b"]" * 5000), "deeper than"),
    "too-big": (_doc(fields={"blob": "x" * MAX_PAYLOAD_BYTES}), f"limit is {MAX_PAYLOAD_BYTES}"),
}


@pytest.mark.parametrize(
    ("data", "message"), INVALID_DOCUMENTS.values(), ids=list(INVALID_DOCUMENTS)
)
def test_from_json_refuses(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as info:
        DataSheet.from_json(data, source="sheet.json")
    assert info.value.source == "sheet.json"
    assert message in info.value.reason


def test_depth_limit_is_inclusive() -> None:
    sheet = DataSheet.from_json(_doc(fields=_nested(MAX_DEPTH)), source="s")
    assert DataSheet.from_json(sheet.to_json(), source="s") == sheet


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issued": dt.datetime(2026, 1, 15, tzinfo=dt.UTC)}, "issued must be a date"),
        ({"fields": {"t": (1, {2: "x"})}}, "fields.t[1]: key 2 is not a string"),
        ({"fields": {"when": dt.date(2026, 1, 1)}}, "fields.when: date is not a JSON value"),
        ({"fields": {"x": float("nan")}}, "fields.x: nan is not finite"),
        ({"fields": []}, "fields must be a JSON object"),
    ],
    ids=["datetime", "int-key", "date-value", "nan", "fields-list"],
)
def test_construction_validates(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dataclasses.replace(SHEET, **changes)


def test_parse_document_takes_what_a_person_writes() -> None:
    text = example_document()
    sheet = parse_document(text.encode(), source="example.json")
    assert sheet.model == "ACME-LFP-35"
    assert sheet.fields["carbon_footprint_kg_co2e_per_kwh"] == 61.2
    document = json.loads(text)
    del document["format"], document["version"]
    pretty = b"\xef\xbb\xbf" + json.dumps(document, indent=4).encode()  # a BOM, no header
    assert parse_document(pretty, source="x.json") == sheet
    with pytest.raises(InputError, match="format must be"):
        parse_document(_doc(format="other"), source="x.json")


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
_NAME = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30).filter(
    lambda s: s == s.strip() and s.strip() != ""
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(
    model=_NAME,
    manufacturer=_NAME,
    revision=_NAME,
    issued=st.dates(),
    fields=st.dictionaries(st.text(max_size=10), _VALUES, max_size=6),
)
def test_json_round_trip(
    model: str, manufacturer: str, revision: str, issued: dt.date, fields: dict[str, Any]
) -> None:
    assume(_depth(fields) <= MAX_DEPTH)
    sheet = DataSheet(model, manufacturer, revision, issued, fields)
    data = sheet.to_json()
    back = DataSheet.from_json(data, source="s")
    assert back == sheet
    assert back.to_json() == data
    pretty = json.dumps(sheet.to_dict(), indent=1, ensure_ascii=True).encode()
    assert parse_document(pretty, source="s").to_json() == data


# --------------------------------------------------------------------------------------------
# Signing and verification


def test_sign_and_read_round_trip() -> None:
    raw = signed()
    msg = cose.decode_sign1(raw)
    _, cert = actor(OEM)
    assert msg.tagged
    assert msg.unprotected == {}
    assert msg.payload == SHEET.to_json()
    assert msg.protected == {
        cose.HDR_ALG: cose.ALG_ESP256,
        cose.HDR_CONTENT_TYPE: "application/json",
        cose.HDR_X5T: list(thumbprint(cert)),
    }
    assert cbor.loads(raw[1:], what="data sheet") is not None  # deterministic CBOR throughout
    digest = datasheet_sha256(raw)
    assert digest == hashlib.sha256(raw).digest()
    assert read_datasheet(raw, bundle(), source="s.cose") == SHEET
    assert read_datasheet(raw, bundle(), source="s.cose", expect_sha256=digest) == SHEET
    checked = verify_datasheet(raw, bundle(), source="s.cose")
    assert (checked.sha256, checked.signer.subject, checked.x5t) == (
        digest,
        OEM,
        thumbprint(cert),
    )
    assert Role.OEM in checked.signer.roles
    assert unverified_datasheet(raw, source="s.cose") == SHEET


def test_signing_with_a_key_that_is_not_the_certificates_is_refused() -> None:
    key, _ = actor(TEST_LAB)
    _, cert = actor(OEM)
    with pytest.raises(InputError, match="does not belong to the certificate"):
        sign_datasheet(SHEET, key, cert)


def _header(cert: x509.Certificate, extra: dict[int, Any] | None = None) -> dict[Any, Any]:
    header = {cose.HDR_X5T: list(thumbprint(cert)), cose.HDR_CONTENT_TYPE: "application/json"}
    return {**header, **(extra or {})}


def _oem_signs(payload: bytes, extra: dict[int, Any] | None = None) -> bytes:
    key, cert = actor(OEM)
    return cose.sign1(payload, key, protected=_header(cert, extra))


def _envelope(raw: bytes, index: int, value: Any) -> bytes:
    parts = list(cbor2.loads(raw).value)
    parts[index] = value
    return cbor.dumps(cbor2.CBORTag(18, parts))


def _flip_last(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0x01])


def _self_signed_oem() -> tuple[bytes, TrustBundle]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = keys.self_signed_certificate(key, "Self-made OEM")
    return sign_datasheet(SHEET, key, cert), trust_with([cert])


def _revoked_oem(reason: str, issued: dt.date) -> tuple[bytes, TrustBundle]:
    name, key, cert = fresh_actor(Role.OEM)
    pki().revoke(name, reason=reason, at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    raw = sign_datasheet(dataclasses.replace(SHEET, issued=issued), key, cert)
    return raw, TrustBundle.load(pki().trust_dir)


Case = Callable[[], tuple[bytes, TrustBundle | None, bytes | None]]
_OTHER = dataclasses.replace(SHEET, revision="4")
FAILURES: dict[str, tuple[Case, str]] = {
    "flipped-signature-byte": (lambda: (_flip_last(signed()), None, None), "datasheet.signature"),
    "payload-swapped": (
        lambda: (_envelope(signed(), 2, _OTHER.to_json()), None, None),
        "datasheet.signature",
    ),
    "header-swapped": (
        lambda: (_envelope(signed(), 0, cbor.dumps(_header(actor(OEM)[1], {1: -7}))), None, None),
        "datasheet.signature",
    ),
    "signed-by-the-tester": (lambda: (signed(signer=TEST_LAB), None, None), "datasheet.signer"),
    "x5t-outside-the-bundle": (
        lambda: (signed(signer="Other OEM"), None, None),
        "datasheet.signer",
    ),
    "chain-invalid": (lambda: (*_self_signed_oem(), None), "datasheet.signer"),
    "issued-after-a-benign-revocation": (
        lambda: (*_revoked_oem("superseded", dt.date(2026, 1, 15)), None),
        "datasheet.signer",
    ),
    "key-compromised-before-use": (
        lambda: (*_revoked_oem("key_compromise", dt.date(2025, 6, 1)), None),
        "datasheet.signer",
    ),
    "wrong-expect-sha256": (
        lambda: (signed(), None, hashlib.sha256(b"another sheet").digest()),
        "datasheet.hash-mismatch",
    ),
    "truncated": (lambda: (signed()[:-10], None, None), "datasheet.decode"),
    "empty": (lambda: (b"", None, None), "datasheet.decode"),
    "not-cbor": (lambda: (SHEET.to_json(), None, None), "datasheet.decode"),
    "not-cose": (lambda: (cbor.dumps({"model": "ACME-LFP-35"}), None, None), "datasheet.decode"),
    "untagged": (lambda: (signed()[1:], None, None), "datasheet.decode"),
    "record-tag-only": (lambda: (b"\xd2", None, None), "datasheet.decode"),
    "unprotected-header": (
        lambda: (_envelope(signed(), 1, {4: b"kid"}), None, None),
        "datasheet.decode",
    ),
    "detached-payload": (lambda: (_envelope(signed(), 2, None), None, None), "datasheet.decode"),
    "content-type-text": (
        lambda: (_oem_signs(SHEET.to_json(), {3: "text/plain"}), None, None),
        "datasheet.decode",
    ),
    "extra-header-label": (
        lambda: (_oem_signs(SHEET.to_json(), {4: b"kid"}), None, None),
        "datasheet.decode",
    ),
    "x5t-malformed": (
        lambda: (_oem_signs(SHEET.to_json(), {34: [-15, b"short"]}), None, None),
        "datasheet.decode",
    ),
    "too-large": (
        lambda: (b"\xd2" + b"\x00" * (MAX_PAYLOAD_BYTES + 2048), None, None),
        "datasheet.decode",
    ),
    "payload-not-json": (lambda: (_oem_signs(b"\x00\x01"), None, None), "datasheet.format"),
    "payload-not-a-datasheet": (
        lambda: (_oem_signs(_doc(version=2)), None, None),
        "datasheet.format",
    ),
    "payload-not-canonical": (
        lambda: (_oem_signs(json.dumps(SHEET.to_dict(), indent=2).encode()), None, None),
        "datasheet.format",
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=list(FAILURES))
def test_verification_failures(case: tuple[Case, str]) -> None:
    build, rule = case
    raw, trust, expect = build()
    with pytest.raises(VerificationError) as info:
        read_datasheet(raw, trust or bundle(), source="sheet.cose", expect_sha256=expect)
    assert info.value.rule == rule, info.value
    assert info.value.source == "sheet.cose"
    assert str(info.value).startswith("sheet.cose: ")


def test_a_sheet_issued_before_a_benign_revocation_still_verifies() -> None:
    raw, trust = _revoked_oem("superseded", dt.date(2025, 6, 1))
    assert read_datasheet(raw, trust, source="s").issued == dt.date(2025, 6, 1)


def test_an_old_revision_re_signed_by_a_newer_certificate_verifies() -> None:
    # `issued` is the document's date, not the signing time: the test PKI starts in 2020.
    old = dataclasses.replace(SHEET, issued=dt.date(2019, 6, 1))
    assert read_datasheet(signed(old), bundle(), source="s") == old


def test_unverified_reading_checks_only_decoding_and_format() -> None:
    assert unverified_datasheet(signed(signer=TEST_LAB), source="s") == SHEET
    assert unverified_datasheet(_flip_last(signed()), source="s") == SHEET
    for raw, rule in (
        (b"\x00", "datasheet.decode"),
        (_oem_signs(b"{}"), "datasheet.format"),
    ):
        with pytest.raises(VerificationError) as info:
            unverified_datasheet(raw, source="s")
        assert info.value.rule == rule


def test_every_single_byte_change_is_refused_with_a_datasheet_rule() -> None:
    raw = signed(dataclasses.replace(SHEET, fields={"category": "ev"}))
    trust = bundle()
    for i in range(len(raw)):
        for mask in (0x01, 0x80):
            mutated = raw[:i] + bytes([raw[i] ^ mask]) + raw[i + 1 :]
            with pytest.raises(VerificationError) as info:
                read_datasheet(mutated, trust, source="s")
            assert info.value.rule.startswith("datasheet."), (i, mask, info.value)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_verification_errors(data: bytes) -> None:
    with pytest.raises(VerificationError) as info:
        read_datasheet(data, bundle(), source="s")
    assert info.value.rule in {"datasheet.decode", "datasheet.signer", "datasheet.signature"}


# --------------------------------------------------------------------------------------------
# Registry


def _rows(registry: Registry) -> list[Any]:
    with registry.engine.connect() as conn:
        return list(conn.execute(select(datasheet_t)).all())


def test_registry_stores_a_verified_sheet_idempotently(db_url: str) -> None:
    registry = open_registry(db_url)
    raw = signed()
    digest = registry.add_datasheet(raw, source="sheet.cose")
    assert digest == datasheet_sha256(raw)
    assert registry.datasheet(digest) == raw
    assert registry.add_datasheet(raw) == digest  # the same bytes again: a no-op
    other = signed()  # a second signature over the same sheet: other bytes, another row
    assert registry.add_datasheet(other) == datasheet_sha256(other) != digest
    rows = {bytes(r.sha256): r for r in _rows(registry)}
    assert set(rows) == {digest, datasheet_sha256(other)}
    row = rows[digest]
    assert (row.model, row.manufacturer, row.revision, bytes(row.raw)) == (
        "ACME-LFP-35",
        "ACME Cells",
        "3",
        raw,
    )
    assert row.added_at.tzinfo is not None
    assert registry.datasheet(hashlib.sha256(b"unknown").digest()) is None
    # What the registry hands out verifies against the hash a birth record carries.
    assert (
        read_datasheet(
            registry.datasheet(digest) or b"", bundle(), source="registry", expect_sha256=digest
        )
        == SHEET
    )


def test_registry_refuses_forged_sheets_and_stores_nothing(db_url: str) -> None:
    registry = open_registry(db_url)
    for raw, rule in (
        (_flip_last(signed()), "datasheet.signature"),
        (signed(signer=TEST_LAB), "datasheet.signer"),
        (b"not a sheet", "datasheet.decode"),
    ):
        with pytest.raises(VerificationError) as info:
            registry.add_datasheet(raw, source="forged.cose")
        assert (info.value.rule, info.value.source) == (rule, "forged.cose")
        assert registry.datasheet(datasheet_sha256(raw)) is None
    assert _rows(registry) == []


def test_registry_needs_trust_and_an_initialised_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with pytest.raises(InputError, match="trust bundle"):
        Registry(url).add_datasheet(signed())
    with pytest.raises(StorageError, match="not initialised"):
        Registry(url).datasheet(b"\x00" * 32)
    with pytest.raises(StorageError, match="not initialised"):
        Registry(url, trust=bundle()).add_datasheet(signed())


def test_a_database_at_revision_0001_upgrades(db_url: str) -> None:
    engine = make_engine(db_url)
    config = migrate.alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with engine.begin() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001"
        assert "datasheet" not in inspect(conn).get_table_names()
        conn.execute(insert(alert_t).values(
            kind="clone", fingerprint="f", message="kept across the upgrade", detail={},
            created_at=dt.datetime.now(dt.UTC),
        ))  # fmt: skip
    migrate.upgrade(engine)
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head
        assert "datasheet" in inspect(conn).get_table_names()
        assert compare_metadata(MigrationContext.configure(conn), models.metadata) == []
        assert conn.execute(select(func.count()).select_from(alert_t)).scalar_one() == 1
    registry = Registry(db_url, trust=bundle(), engine=engine)
    digest = registry.add_datasheet(signed())
    assert registry.datasheet(digest) is not None
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    with engine.connect() as conn:
        assert "datasheet" not in inspect(conn).get_table_names()
    engine.dispose()


# --------------------------------------------------------------------------------------------
# Command line

RUNNER = CliRunner(
    env={"COLUMNS": "200", "NO_COLOR": "1", "PASSPORT_DEBUG": None, "PASSPORT_TRUST": None,
         "PASSPORT_DB": None, "PASSPORT_KEY_PASSWORD": None}
)  # fmt: skip


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str | Path) -> Result:
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def credentials(directory: Path, name: str = OEM, password: bytes | None = None) -> list[str]:
    """--key and --cert options for actor `name`, written into `directory`."""
    key, cert = actor(name)
    stem = hashlib.sha256(name.encode()).hexdigest()[:8]
    key_path, cert_path = directory / f"{stem}.key.pem", directory / f"{stem}.cert.pem"
    key_path.write_bytes(keys.private_pem(key, password))
    cert_path.write_bytes(keys.cert_pem(cert))
    return ["--key", str(key_path), "--cert", str(cert_path)]


def trust_dir() -> Path:
    bundle()  # issues the OEM and the test lab before the bundle is read from disk
    directory: Path = pki().trust_dir
    return directory


def sign_cli(directory: Path, name: str = OEM, out: str = "sheet.cose") -> Path:
    sheet = directory / "sheet.json"
    if not sheet.exists():
        sheet.write_text(example_document())
    result = run("datasheet", "sign", sheet, *credentials(directory, name), "--out", out)
    assert result.exit_code == 0, result.stderr
    return directory / out


def test_cli_example_is_a_valid_sheet() -> None:
    result = run("datasheet", "sign", "--example")
    assert result.exit_code == 0
    sheet = parse_document(result.stdout.encode(), source="example")
    assert sheet.model == "ACME-LFP-35"
    assert {"category", "weight_kg", "carbon_footprint_kg_co2e_per_kwh"} <= set(sheet.fields)


def test_cli_sign_prints_the_sha256_for_the_issuance_csv(here: Path) -> None:
    (here / "sheet.json").write_text(example_document())
    (here / "pw.txt").write_text("secret\n")
    options = credentials(here, password=b"secret")
    result = run("datasheet", "sign", "sheet.json", *options, "--password-file", "pw.txt",
                 "--out", "sheet.cose")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    raw = (here / "sheet.cose").read_bytes()
    assert result.stdout == datasheet_sha256(raw).hex() + "\n"
    assert "datasheet_sha256=" in result.stderr
    assert read_datasheet(raw, bundle(), source="s") == parse_document(
        example_document().encode(), source="e"
    )
    again = run("datasheet", "sign", "sheet.json", *options, "--password-file", "pw.txt",
                "--out", "sheet.cose")  # fmt: skip
    assert again.exit_code == 2
    assert "sheet.cose: already exists" in again.stderr
    forced = run("datasheet", "sign", "sheet.json", *options, "--password-file", "pw.txt",
                 "--out", "sheet.cose", "--force", "--json")  # fmt: skip
    assert forced.exit_code == 0, forced.stderr
    data = json.loads(forced.stdout)
    assert data["sha256"] == datasheet_sha256((here / "sheet.cose").read_bytes()).hex()
    assert (data["model"], data["out"]) == ("ACME-LFP-35", "sheet.cose")


def test_cli_sign_usage_errors_name_the_file(here: Path) -> None:
    options = credentials(here)
    (here / "bad.json").write_bytes(_GOOD.replace(b"0.92", b"NaN"))
    (here / "sheet.json").write_text(example_document())
    cases = [
        (["bad.json", *options, "--out", "o.cose"], "bad.json: number NaN is not finite"),
        (["missing.json", *options, "--out", "o.cose"], "missing.json: no such file"),
        (["sheet.json", "--out", "o.cose"], "--key, --cert"),
        ([], "give the data sheet JSON"),
        (
            [
                "sheet.json",
                "--key",
                options[1],
                "--cert",
                credentials(here, TEST_LAB)[3],
                "--out",
                "o.cose",
            ],
            "does not belong to the certificate",
        ),
    ]
    for args, message in cases:
        result = run("datasheet", "sign", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert not (here / "o.cose").exists()


def test_cli_show_verified_and_unverified(here: Path) -> None:
    path = sign_cli(here)
    digest = datasheet_sha256(path.read_bytes()).hex()
    plain = run("datasheet", "show", path)
    assert plain.exit_code == 0, plain.stderr
    assert "model: ACME-LFP-35" in plain.stdout
    assert "UNVERIFIED" in plain.stdout
    assert "UNVERIFIED" in plain.stderr
    checked = run("datasheet", "show", path, "--trust", trust_dir(), "--expect-sha256", digest,
                  "--json")  # fmt: skip
    assert checked.exit_code == 0, checked.stderr
    data = json.loads(checked.stdout)
    assert (data["verified"], data["signer"], data["sha256"]) == (True, OEM, digest)
    assert data["sheet"]["fields"]["weight_kg"] == 0.92
    assert f"OK: {path}" in checked.stderr


def test_cli_show_exit_codes(here: Path) -> None:
    good = sign_cli(here)
    tester = sign_cli(here, TEST_LAB, out="tester.cose")
    tampered = here / "tampered.cose"
    tampered.write_bytes(_flip_last(good.read_bytes()))
    (here / "junk.cose").write_bytes(b"junk")
    trust = ["--trust", str(trust_dir())]
    cases: list[tuple[list[Any], int, str]] = [
        ([tampered, *trust], 1, "tampered.cose: signature does not verify"),
        ([tester, *trust], 1, "is not an OEM"),
        ([good, *trust, "--expect-sha256", "00" * 32], 1, "[datasheet.hash-mismatch]"),
        ([good, "--expect-sha256", "00" * 32], 1, "[datasheet.hash-mismatch]"),
        (["junk.cose", *trust], 1, "junk.cose: not a COSE_Sign1 data sheet"),
        (["junk.cose"], 2, "junk.cose: "),
        (["missing.cose"], 2, "missing.cose: no such file"),
        ([good, "--expect-sha256", "abc"], 2, "64 hex digits"),
        ([good, "--trust", here / "nowhere"], 2, "nowhere"),
    ]
    for args, code, message in cases:
        result = run("datasheet", "show", *args)
        assert result.exit_code == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    assert "[datasheet.signature]" in run("datasheet", "show", tampered, *trust).stderr


def test_cli_registry_datasheet(here: Path, db_url: str) -> None:
    assert run("registry", "init", "--db", db_url).exit_code == 0
    path = sign_cli(here)
    digest = datasheet_sha256(path.read_bytes()).hex()
    first = run("registry", "datasheet", path, "--db", db_url, "--trust", trust_dir(), "--json")
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout) == {"path": str(path), "sha256": digest, "already_held": False}
    assert "stored: data sheet" in first.stderr
    again = run("registry", "datasheet", path, "--db", db_url, "--trust", trust_dir())
    assert again.exit_code == 0, again.stderr
    assert "already held" in again.stderr
    tester = sign_cli(here, TEST_LAB, out="tester.cose")
    refused = run("registry", "datasheet", tester, "--db", db_url, "--trust", trust_dir())
    assert refused.exit_code == 1
    assert f"{tester}: " in refused.stderr
    assert "[datasheet.signer]" in refused.stderr
    no_trust = run("registry", "datasheet", path, "--db", db_url)
    assert no_trust.exit_code == 2
    assert "--trust" in no_trust.stderr
    registry = Registry(db_url)
    assert registry.datasheet(bytes.fromhex(digest)) == path.read_bytes()
    assert registry.datasheet(datasheet_sha256(tester.read_bytes())) is None
    registry.engine.dispose()
