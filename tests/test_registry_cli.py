"""`passport registry` and `passport audit` on the command line.

Commands run in-process through typer's CliRunner (stdout and stderr apart) and, for a few, as
the installed console script. Tests that use a database take `db_url` (SQLite and
PostgreSQL); the offline audit cases share one set of artifacts made on SQLite. The trust
bundle is the test PKI's (`factories.pki().trust_dir`). Exit codes: 0 ok, 1 a check failed,
2 bad usage or unreadable input.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from factories import pki
from registry_kit import (
    BIG_TAG,
    History,
    fork,
    journal_bytes,
    lifecycle,
    new_passport,
    registry_trust,
    tampered_image,
)
from typer.testing import CliRunner, Result

from cli.app import app
from passport.image import Image

PASSPORT = Path(sys.executable).parent / "passport"
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
RUNNER = CliRunner(
    env={
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PASSPORT_DEBUG": None,
        "PASSPORT_TRUST": None,
        "PASSPORT_DB": None,
    }
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths land in the test's own directory."""
    monkeypatch.chdir(tmp_path)


def run(*args: str | Path, env: dict[str, str] | None = None, input: bytes | None = None) -> Result:
    """Invoke the CLI in-process; a leaked traceback fails the test."""
    result = RUNNER.invoke(app, [str(a) for a in args], env=env, input=input)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def ok(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = run(*args, env=env)
    assert result.exit_code == 0, result.stderr
    return result


def trust_dir() -> Path:
    registry_trust()  # issues the OEM and the test lab before the bundle is read from disk
    directory: Path = pki().trust_dir
    return directory


def init(db: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok("registry", "init", "--db", db, "--json").stdout)
    return data


def ingest(db: str, *inputs: str | Path) -> Result:
    return run("registry", "ingest", *inputs, "--db", db, "--trust", trust_dir())


def info(db: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok("registry", "info", "--db", db, "--json").stdout)
    return data


def write_tag(directory: Path, history: History, name: str) -> tuple[Path, Path]:
    """`name`.t5t (the tag now) and `name`.evicted.cbor (its journal) in `directory`."""
    directory.mkdir(exist_ok=True)
    image = directory / f"{name}.t5t"
    journal = directory / f"{name}.evicted.cbor"
    image.write_bytes(history.image.to_bytes())
    journal.write_bytes(journal_bytes(history.evicted))
    return image, journal


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


# --------------------------------------------------------------------------------------------
# init, ingest, info


def test_init_creates_an_empty_log_and_is_idempotent(db_url: str) -> None:
    result = ok("registry", "init", "--db", db_url, "--origin", "cli.test/log", "--json")
    data = json.loads(result.stdout)
    assert (data["origin"], data["tree_size"], data["root"]) == ("cli.test/log", 0, EMPTY_ROOT)
    assert data["engine"] == db_url.split(":", 1)[0]
    assert data["log_public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "checkpoint" not in data
    assert "registry ready at" in result.stderr
    again = init(db_url)
    assert (again["origin"], again["log_public_key_pem"]) == (
        "cli.test/log", data["log_public_key_pem"],
    )  # fmt: skip


def test_ingest_a_directory_of_tags_and_journals(db_url: str) -> None:
    a, b = lifecycle(1), lifecycle(2, telemetry=3)
    write_tag(Path("tags"), a, "a")
    write_tag(Path("tags"), b, "b")
    total = len(a.records) + len(b.records)
    init(db_url)
    result = ingest(db_url, "tags", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["inputs"], data["stored"], data["already_held"]) == (4, total, 0)
    assert (data["rejected"], data["unreadable"], data["tree_size"]) == ({}, [], total)
    assert f"stored {total} records (0 already held, 0 inputs rejected" in result.stderr
    again = ingest(db_url, "tags")
    assert again.exit_code == 0, again.stderr
    assert f"stored 0 records ({total} already held" in again.stderr
    assert info(db_url)["tree_size"] == total


def test_ingest_names_a_rejected_image_and_its_rule(db_url: str) -> None:
    good, bad = lifecycle(3), lifecycle(4)
    write_tag(Path("tags"), good, "good")
    Path("tags/bad.t5t").write_bytes(
        tampered_image(bad.image, len(bad.image.records) - 1).to_bytes()
    )
    init(db_url)
    result = ingest(db_url, "tags")
    assert result.exit_code == 1
    (line,) = lines(result.stderr, "REJECTED:")
    assert line.startswith(f"REJECTED: {Path('tags/bad.t5t')}: ")
    assert line.endswith("[chain.entry-signature]")
    assert info(db_url)["records"] == len(good.records)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        pytest.param("junk.t5t", b"\xe1\x40\x6f\x00" + b"\x00" * 10, id="broken-image"),
        pytest.param("junk.evicted.cbor", b"\xff\xfe not cbor", id="not-cbor"),
        pytest.param("empty.evicted.cbor", b"", id="empty-journal"),
        pytest.param("missing.t5t", None, id="missing-file"),
    ],
)
def test_an_unreadable_input_is_skipped_and_fails_the_run(
    db_url: str, name: str, content: bytes | None
) -> None:
    history = lifecycle(5)
    good, _ = write_tag(Path("."), history, "good")
    if content is not None:
        Path(name).write_bytes(content)
    init(db_url)
    result = ingest(db_url, good, name)
    assert result.exit_code == 1
    (line,) = lines(result.stderr, "SKIP:")
    assert line.startswith(f"SKIP: {name}: ")
    assert info(db_url)["records"] == len(history.image.records)  # the rest went in


def test_info_prints_the_log_and_writes_its_key(db_url: str) -> None:
    history = lifecycle(6)
    write_tag(Path("tags"), history, "t")
    init(db_url)
    assert ingest(db_url, "tags").exit_code == 0
    result = ok("registry", "info", "--db", db_url, "--json", "--log-key-out", "log.pem")
    data = json.loads(result.stdout)
    assert data["tree_size"] == data["records"] == len(history.records)
    assert len(bytes.fromhex(data["root"])) == 32
    assert data["root"] != EMPTY_ROOT
    assert Path("log.pem").read_text() == data["log_public_key_pem"]
    plain = ok("registry", "info", "--db", db_url).stdout
    assert f"tree_size: {len(history.records)}\n" in plain
    assert f"root: {data['root']}\n" in plain


def test_the_database_comes_from_passport_db(db_url: str) -> None:
    env = {"PASSPORT_DB": db_url}
    ok("registry", "init", "--origin", "env.test/log", env=env)
    from_env = json.loads(ok("registry", "info", "--json", env=env).stdout)
    assert from_env["origin"] == "env.test/log"
    assert info(db_url)["log_public_key_pem"] == from_env["log_public_key_pem"]


@pytest.mark.parametrize("command", ["init", "info", "alerts", "checkpoint"])
def test_an_unsupported_database_url_is_a_usage_error(command: str) -> None:
    result = run("registry", command, "--db", "mysql://x")
    assert result.exit_code == 2
    assert "unsupported database URL 'mysql://x'" in result.stderr


def test_a_registry_never_initialised_says_to_run_init(db_url: str) -> None:
    """Exit 2 with a hint, for every command that reads the registry (not an internal error)."""
    Path("tag.t5t").write_bytes(Image.create(new_passport(7).birth).to_bytes())
    commands = {
        "info": ["info"],
        "checkpoint": ["checkpoint"],
        "alerts": ["alerts"],
        "consistency": ["consistency", "0", "0"],
        "prove": ["prove", "--record", "00" * 32, "--out", "r.cose"],
        "check": ["check", "tag.t5t"],
        "ingest": ["ingest", "tag.t5t", "--trust", str(trust_dir())],
    }
    wrong: dict[str, str] = {}
    for name, args in commands.items():
        result = run("registry", *args, "--db", db_url)
        if result.exit_code != 2 or "passport registry init" not in result.stderr:
            wrong[name] = f"exit {result.exit_code}: {' '.join(result.stderr.split())[:90]}"
    assert wrong == {}


# --------------------------------------------------------------------------------------------
# Receipts and checkpoints, made by the registry and audited offline


def test_prove_then_audit_a_receipt(db_url: str) -> None:
    history = lifecycle(8)
    write_tag(Path("tags"), history, "t")
    init(db_url)
    assert ingest(db_url, "tags").exit_code == 0
    ok("registry", "info", "--db", db_url, "--log-key-out", "log.pem")
    record = history.image.entries[-1]
    ok("registry", "prove", "--db", db_url, "--record", record.digest.hex(), "--out", "r.cose",
       "--record-out", "rec.cose")  # fmt: skip
    assert Path("rec.cose").read_bytes() == record.raw
    audit = ok("audit", "receipt", "rec.cose", "r.cose", "--log-key", "log.pem", "--json")
    data = json.loads(audit.stdout)
    assert data["valid"] is True
    assert data["tree_size"] == len(history.records)
    assert 0 <= data["leaf_index"] < data["tree_size"]
    assert audit.stderr.startswith("OK: rec.cose is leaf")
    Path("other.cose").write_bytes(history.image.entries[-2].raw)
    bad = run("audit", "receipt", "other.cose", "r.cose", "--log-key", "log.pem")
    assert bad.exit_code == 1
    assert "[log.receipt-invalid]" in bad.stderr


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param("00" * 32, "is not in the log", id="unknown-record"),
        pytest.param("abc", "64 hex digits", id="not-a-digest"),
    ],
)
def test_prove_refuses_what_it_cannot_prove(db_url: str, record: str, message: str) -> None:
    init(db_url)
    result = run("registry", "prove", "--db", db_url, "--record", record, "--out", "r.cose")
    assert result.exit_code == 2
    assert message in result.stderr
    assert not Path("r.cose").exists()


def test_checkpoints_and_a_consistency_proof_audit_offline(db_url: str) -> None:
    first, second = lifecycle(9), lifecycle(10)
    write_tag(Path("one"), first, "a")
    write_tag(Path("two"), second, "b")
    init(db_url)
    assert ingest(db_url, "one/a.t5t").exit_code == 0
    old = ok("registry", "checkpoint", "--db", db_url, "-o", "old.txt").stdout
    assert Path("old.txt").read_text() == old
    assert ingest(db_url, "one", "two").exit_code == 0
    ok("registry", "checkpoint", "--db", db_url, "-o", "new.txt")
    proof = ok("registry", "consistency", "old.txt", "new.txt", "--db", db_url, "-o", "p.json")
    doc = json.loads(proof.stdout)
    assert (doc["old_size"], doc["new_size"]) == (
        len(first.image.records), len(first.records) + len(second.records),
    )  # fmt: skip
    assert doc == json.loads(Path("p.json").read_text())
    ok("registry", "info", "--db", db_url, "--log-key-out", "log.pem")
    audit = ok("audit", "consistency", "old.txt", "new.txt", "p.json", "--log-key", "log.pem")
    assert f"at size {doc['new_size']} extends its tree at size {doc['old_size']}" in audit.stderr
    swapped = run("registry", "consistency", "new.txt", "old.txt", "--db", db_url)
    assert swapped.exit_code == 2
    assert "sizes must satisfy 0 <= old <= new" in swapped.stderr


@dataclass(frozen=True)
class Artifacts:
    """What an auditor holds: two checkpoints, a proof, a receipt, a record and the log key."""

    directory: Path

    def __getitem__(self, name: str) -> Path:
        return self.directory / name


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """Made once on SQLite by the CLI itself: the audit commands below never open a database."""
    directory = tmp_path_factory.mktemp("audit")
    db = f"sqlite:///{directory / 'registry.db'}"
    first, second = lifecycle(11), lifecycle(12)
    write_tag(directory / "one", first, "a")
    write_tag(directory / "two", second, "b")
    out = Artifacts(directory)

    def cli(*args: str | Path) -> None:
        result = RUNNER.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.stderr

    cli("registry", "init", "--db", db)
    cli("registry", "ingest", out["one/a.t5t"], "--db", db, "--trust", trust_dir())
    cli("registry", "checkpoint", "--db", db, "-o", out["old.txt"])
    cli("registry", "ingest", out["one"], out["two"], "--db", db, "--trust", trust_dir())
    cli("registry", "checkpoint", "--db", db, "-o", out["new.txt"])
    cli("registry", "consistency", out["old.txt"], out["new.txt"], "--db", db, "-o", out["p.json"])
    cli("registry", "info", "--db", db, "--log-key-out", out["log.pem"])
    digest = first.image.entries[-1].digest.hex()
    cli("registry", "prove", "--db", db, "--record", digest, "-o", out["r.cose"],
        "--record-out", out["rec.cose"])  # fmt: skip
    return out


def flip_proof_hash(doc: dict[str, Any]) -> None:
    digest = bytearray(base64.b64decode(doc["proof"][0]))
    digest[0] ^= 0x01
    doc["proof"][0] = base64.b64encode(bytes(digest)).decode()


def edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def other_root(note: str) -> str:
    origin, size, root, rest = note.split("\n", 3)
    changed = bytearray(base64.b64decode(root))
    changed[0] ^= 0x01
    return "\n".join((origin, size, base64.b64encode(bytes(changed)).decode(), rest))


def stranger_key(directory: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (directory / "log.pem").write_bytes(pem)


AUDIT_FAILURES = [
    pytest.param(
        lambda d: None, ("new.txt", "old.txt", "p.json"), 2, "the proof is for sizes",
        id="checkpoints-swapped",
    ),
    pytest.param(
        lambda d: edit_json(d / "p.json", flip_proof_hash), ("old.txt", "new.txt", "p.json"), 1,
        "[log.consistency-invalid]", id="tampered-proof",
    ),
    pytest.param(
        lambda d: edit_json(d / "p.json", lambda doc: doc["proof"].pop()),
        ("old.txt", "new.txt", "p.json"), 1, "[log.consistency-invalid]", id="short-proof",
    ),
    pytest.param(
        lambda d: (d / "new.txt").write_text(other_root((d / "new.txt").read_text())),
        ("old.txt", "new.txt", "p.json"), 1, "[log.checkpoint-invalid]", id="tampered-checkpoint",
    ),
    pytest.param(
        stranger_key, ("old.txt", "new.txt", "p.json"), 1, "[log.checkpoint-invalid]",
        id="another-log-key",
    ),
    pytest.param(
        lambda d: (d / "p.json").write_text("[]"), ("old.txt", "new.txt", "p.json"), 2,
        "not a consistency proof", id="not-a-proof",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spoil", "files", "code", "message"), AUDIT_FAILURES)
def test_audit_consistency_refuses(
    artifacts: Artifacts,
    tmp_path: Path,
    spoil: Callable[[Path], object],
    files: tuple[str, str, str],
    code: int,
    message: str,
) -> None:
    for name in ("old.txt", "new.txt", "p.json", "log.pem"):
        (tmp_path / name).write_bytes(artifacts[name].read_bytes())
    ok("audit", "consistency", "old.txt", "new.txt", "p.json", "--log-key", "log.pem")
    spoil(tmp_path)
    result = run("audit", "consistency", *files, "--log-key", "log.pem")
    assert result.exit_code == code
    assert message in result.stderr
    assert not lines(result.stderr, "OK:")


def flip_last_byte(path: Path) -> None:
    """Change the file for sure (writing 0x00 over a byte that is 0x00 changes nothing)."""
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))


@pytest.mark.parametrize(
    ("spoil", "code", "message"),
    [
        pytest.param(lambda d: None, 0, "OK: rec.cose is leaf", id="untouched"),
        pytest.param(
            lambda d: flip_last_byte(d / "rec.cose"),
            1, "[log.receipt-invalid]", id="record-changed",
        ),
        pytest.param(
            lambda d: flip_last_byte(d / "r.cose"),
            1, "[log.receipt-invalid]", id="receipt-signature-changed",
        ),
        pytest.param(stranger_key, 1, "[log.receipt-invalid]", id="another-log-key"),
        pytest.param(
            lambda d: (d / "log.pem").write_text("not a key"), 2, "not a PEM public key",
            id="not-a-key",
        ),
    ],
)  # fmt: skip
def test_audit_receipt(
    artifacts: Artifacts, tmp_path: Path, spoil: Callable[[Path], object], code: int, message: str
) -> None:
    for name in ("rec.cose", "r.cose", "log.pem"):
        (tmp_path / name).write_bytes(artifacts[name].read_bytes())
    spoil(tmp_path)
    result = run("audit", "receipt", "rec.cose", "r.cose", "--log-key", "log.pem")
    assert result.exit_code == code
    assert message in result.stderr


# --------------------------------------------------------------------------------------------
# Tags against the registry; alerts


def test_check_finds_a_rolled_back_tag(db_url: str) -> None:
    history = lifecycle(13)
    Path("old.t5t").write_bytes(history.snapshots[3].to_bytes())  # a copy kept from back then
    write_tag(Path("tags"), history, "now")
    init(db_url)
    assert ingest(db_url, "tags").exit_code == 0
    current = ok("registry", "check", "tags/now.t5t", "--db", db_url)
    assert current.stderr.strip() == f"OK: {Path('tags/now.t5t')}"
    result = run("registry", "check", "old.t5t", "tags/now.t5t", "--db", db_url, "--json")
    assert result.exit_code == 1
    (fail,) = lines(result.stderr, "FAIL:")
    assert fail.startswith("FAIL: old.t5t: ")
    assert fail.endswith("[registry.rollback]")
    reports = json.loads(result.stdout)
    assert [[f["rule"] for f in r["findings"]] for r in reports] == [["registry.rollback"], []]
    unknown = Path("unknown.t5t")
    unknown.write_bytes(Image.create(new_passport(14).birth).to_bytes())
    other = run("registry", "check", unknown, "--db", db_url)
    assert other.exit_code == 1
    assert "[registry.unknown]" in other.stderr


def fork_tags(directory: Path, seed: int) -> None:
    """honest.t5t and rival.t5t: one passport, two validly signed histories from seq 3 on."""
    pp = new_passport(seed)
    base = fork(Image.create(pp.birth, BIG_TAG), pp.cell, 2, offset=1)
    directory.mkdir()
    (directory / "honest.t5t").write_bytes(fork(base, pp.cell, 1, offset=3).to_bytes())
    (directory / "rival.t5t").write_bytes(fork(base, pp.cell, 1, offset=30).to_bytes())


def test_alerts_after_a_fork(db_url: str) -> None:
    fork_tags(Path("tags"), 15)
    init(db_url)
    assert ingest(db_url, "tags").exit_code == 0  # a fork is evidence, not a rejection
    data = json.loads(ok("registry", "alerts", "--db", db_url, "--json").stdout)
    assert [a["kind"] for a in data] == ["fork"]
    assert data[0]["cell_id"] is not None
    assert set(data[0]) >= {"id", "message", "detail", "created_at"}
    listing = ok("registry", "alerts", "--db", db_url).stdout
    assert listing.startswith(f"{data[0]['id']} fork cell {data[0]['cell_id']}: ")
    assert info(db_url)["flagged_cells"] == 1
    check = run("registry", "check", "tags/honest.t5t", "--db", db_url)
    assert check.exit_code == 1
    assert "[registry.flagged]" in check.stderr


def test_ingest_prints_the_alerts_it_raised(db_url: str) -> None:
    """The ALERT lines and the JSON `alerts` of `registry ingest` show a fork it recorded."""
    fork_tags(Path("tags"), 16)
    init(db_url)
    result = ingest(db_url, "tags", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(lines(result.stderr, "ALERT fork: ")) == 1
    assert [a["kind"] for a in json.loads(result.stdout)["alerts"]] == ["fork"]


# --------------------------------------------------------------------------------------------
# The installed console script


def script(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSPORT_")}
    proc = subprocess.run(
        [str(PASSPORT), *map(str, args)], input=input, capture_output=True, env=env,
        timeout=60, check=False,
    )  # fmt: skip
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "Traceback" not in out + err, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_console_script_ingests_from_stdin(db_url: str) -> None:
    history = lifecycle(17)
    assert script("registry", "init", "--db", db_url).returncode == 0
    trust = trust_dir()
    tag = script("registry", "ingest", "-", "--db", db_url, "--trust", trust, "--json",
                 input=history.image.to_bytes())  # fmt: skip
    assert tag.returncode == 0, tag.stderr
    assert json.loads(tag.stdout)["stored"] == len(history.image.records)
    journal = script("registry", "ingest", "-", "--db", db_url, "--trust", trust,
                     input=journal_bytes(history.evicted))  # fmt: skip
    assert journal.returncode == 0, journal.stderr
    junk = script("registry", "ingest", "-", "--db", db_url, "--trust", trust, input=b"\xff")
    assert junk.returncode == 1
    assert lines(junk.stderr, "SKIP: <stdin>: ")
    bad = script("registry", "info", "--db", "mysql://x")
    assert bad.returncode == 2
    assert info(db_url)["tree_size"] == len(history.records)
