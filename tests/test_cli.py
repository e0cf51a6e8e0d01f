"""End-to-end tests of the `passport` command line.

Most commands run in-process through typer's CliRunner (fast, with stdout and stderr captured
separately); a handful run the installed console script in a subprocess so that the entry
point, real pipes and exit codes are covered too. Every run is checked for a leaked Python
traceback. Exit codes: 0 ok, 1 verification failed, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from typer.testing import CliRunner, Result

from cli.app import app
from passport.cbor import iter_sequence
from passport.records import SignedRecord
from passport.trust.keys import load_private
from passport.trust.roles import ROLE_OIDS, Role, roles_of
from passport.trust.store import load_certificates, thumbprint
from passport.writer import read_image

PASSPORT = Path(sys.executable).parent / "passport"
PROFILE_SIZES = {"st25dv04k": 512, "ntag216": 888, "st25dv16k": 2048, "st25dv64k": 8192}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# A wide terminal so help tables never truncate option names; no inherited password, debug
# switch or trust bundle.
RUNNER = CliRunner(
    env={
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PASSPORT_KEY_PASSWORD": None,
        "PASSPORT_DEBUG": None,
        "PASSPORT_TRUST": None,
    }
)
# Early enough for every history the tests sign (births are issued "now").
PKI_NOT_BEFORE = "2020-01-01T00:00:00Z"
ROLES = ("oem", "integrator", "tester", "repurposer", "recycler")
OEM_CN = "ACME Cells OEM"  # the common names `passport ca init` gives its actors
TESTER_CN = "Volta Test Lab"


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command runs with relative paths inside the test's own directory."""
    monkeypatch.chdir(tmp_path)


def _assert_no_traceback(text: str, exception: BaseException | None = None) -> None:
    """A user must never see a Python traceback, whatever the input."""
    assert "Traceback" not in text, text
    if exception is not None:
        assert isinstance(exception, SystemExit), f"uncaught {exception!r}"


def run(
    *args: str | Path, input: bytes | str | None = None, env: dict[str, str] | None = None
) -> Result:
    """Invoke the CLI in-process; stdout and stderr stay separate, tracebacks fail the test."""
    result = RUNNER.invoke(app, [str(a) for a in args], input=input, env=env)
    _assert_no_traceback(result.stdout + result.stderr, result.exception)
    return result


def run_script(*args: str | Path, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script for real (entry point, pipes, process exit code)."""
    drop = ("PASSPORT_KEY_PASSWORD", "PASSPORT_DEBUG", "PASSPORT_TRUST")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["COLUMNS"] = "200"
    proc = subprocess.run(
        [str(PASSPORT), *map(str, args)],
        input=input,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    _assert_no_traceback(out + err)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def plain(text: str) -> str:
    """Output without ANSI styling (CI may force colours on)."""
    return ANSI.sub("", text)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` with its bytes, to prove a failed command changed nothing."""
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def gen_p256(name: str, cn: str) -> tuple[Path, Path]:
    """A P-256 key with a self-signed certificate, made by the CLI: (key, cert)."""
    result = run("keys", "generate", "--type", "p256", "--out", f"{name}.pem", "--self-signed", cn)
    assert result.exit_code == 0, result.stderr
    return Path(f"{name}.pem"), Path(f"{name}.cert.pem")


def example_table() -> tuple[list[str], list[list[str]]]:
    """(header, rows) of `issue --example-csv`, to derive good and bad CSVs from."""
    result = run("issue", "--example-csv")
    assert result.exit_code == 0, result.stderr
    table = list(csv.reader(io.StringIO(result.stdout)))
    return table[0], table[1:]


def to_csv(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def issue(
    oem: tuple[Path, Path], *extra: str, csv_path: str = "cells.csv", out: str = "passports"
) -> Result:
    key, cert = oem
    return run("issue", csv_path, "--key", key, "--cert", cert, "--out", out, *extra)


def flip_last_signature_byte(image: Path) -> None:
    """A counterfeiter's edit: one bit inside the last entry's 64-byte signature."""
    data = bytearray(image.read_bytes())
    last = read_image(image).entries[-1].raw
    offset = bytes(data).index(last) + len(last) - 10
    data[offset] ^= 0x01
    image.write_bytes(bytes(data))


def show_json(image: Path) -> dict[str, Any]:
    result = run("show", image, "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_pki(directory: Path) -> Path:
    result = run("ca", "init", directory, "--not-before", PKI_NOT_BEFORE)
    assert result.exit_code == 0, result.stderr
    return directory


@pytest.fixture(scope="module")
def shared_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI (`passport ca init`) for the module: tests must not change it (see `pki`)."""
    return make_pki(tmp_path_factory.mktemp("shared") / "pki")


@pytest.fixture
def pki(shared_pki: Path, tmp_path: Path) -> Path:
    """A private copy of the module's PKI, for tests that issue or revoke."""
    return Path(shutil.copytree(shared_pki, tmp_path / "pki"))


@pytest.fixture
def trust(shared_pki: Path) -> Path:
    """The trust bundle of the module's PKI (--trust)."""
    return shared_pki / "trust"


def actor_files(pki_dir: Path, name: str) -> tuple[Path, Path]:
    """(key, certificate) of an actor of a PKI."""
    return pki_dir / "keys" / f"{name}.key.pem", pki_dir / "keys" / f"{name}.cert.pem"


def trust_copy(bundle: Path, *, without: str | None = None) -> Path:
    """A copy of a trust bundle in the test's directory, optionally without one actor's
    certificate."""
    copy = Path(shutil.copytree(bundle, Path.cwd() / "trust-copy"))
    if without is not None:
        (copy / "certs" / f"{without}.pem").unlink()
    return copy


@pytest.fixture
def oem(shared_pki: Path) -> tuple[Path, Path]:
    """The OEM's signing key and certificate, issued by the module's PKI."""
    return actor_files(shared_pki, "oem")


@pytest.fixture
def tester(shared_pki: Path) -> tuple[Path, Path]:
    return actor_files(shared_pki, "tester")


@pytest.fixture
def cells_csv() -> Path:
    """The example CSV (three cells) written to cells.csv."""
    header, rows = example_table()
    path = Path("cells.csv")
    path.write_text(to_csv(header, rows))
    return path


@pytest.fixture
def batch(oem: tuple[Path, Path], cells_csv: Path) -> list[Path]:
    """Three freshly issued images (st25dv16k) in passports/, sorted."""
    result = issue(oem)
    assert result.exit_code == 0, result.stderr
    images = sorted(Path("passports").glob("*.t5t"))
    assert len(images) == 3
    return images


def cell_key(image: Path) -> Path:
    return image.with_name(image.name.removesuffix(".t5t") + ".cell.pem")


def append_ok(image: Path, *args: str) -> dict[str, Any]:
    """Append a cell-signed entry and return the command's --json report."""
    result = run("append", image, "--cell-key", cell_key(image), "--json", *args)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def measure(image: Path, actor: tuple[Path, Path], *args: str) -> dict[str, Any]:
    """Append an actor-signed measurement (the kind a tester may write); the --json report."""
    result = run(
        "append", image, "--key", actor[0], "--cert", actor[1], "--kind", "measurement",
        "--soh", "97.5", "--soh-method", "capacity-test", "--json", *args,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def verify_json(*args: str | Path) -> tuple[Result, list[dict[str, Any]]]:
    """`verify ... --json`: the result and its parsed reports."""
    result = run("verify", *args, "--json")
    return result, json.loads(result.stdout)


def failed_rules(report: dict[str, Any]) -> list[str]:
    return [f["rule"] for f in report["failures"]]


# --------------------------------------------------------------------------------------------
# --help


def test_top_level_help_lists_every_command() -> None:
    """The entry screen must show every command and the exit-code contract."""
    result = run("--help")
    assert result.exit_code == 0
    text = plain(result.stdout)
    for command in (
        "keys", "ca", "issue", "append", "show", "verify", "challenge", "respond", "demo",
        "intake", "soh", "registry", "audit",
    ):  # fmt: skip
        assert command in text
    assert "Exit codes" in text


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (["keys"], ["generate"]),
        (
            ["keys", "generate"],
            ["--out", "--type", "--force", "--password-file", "--self-signed", "--json"],
        ),
        (
            ["issue"],
            ["--key", "--cert", "--out", "--profile", "--force", "--password-file", "--json"],
        ),
        (["issue"], ["--example-csv"]),
        (
            ["append"],
            ["--cell-key", "--key", "--cert", "--kind", "--time", "--cycles", "--soh", "--event"],
        ),
        (["append"], ["--status", "--parent", "--evicted", "--password-file", "--json"]),
        (["show"], ["--json"]),
        (["verify"], ["--trust", "--policy", "--challenge", "--response", "--json"]),
        (["demo"], ["--out", "--cells", "--years", "--json"]),
        (
            ["intake"],
            ["--trust", "--model", "--tests", "--out", "--key", "--cert", "--db", "--policy"],
        ),
        (["intake"], ["--restart", "--workers", "--password-file", "--json"]),
        (["audit", "grades"], ["--policy", "--json"]),
        (["soh"], ["fit", "estimate", "evaluate", "calibrate", "show"]),
        (["soh", "show"], ["--json", "pooled prior"]),
        (["soh", "calibrate"], ["--model", "--out", "--replace", "--force", "--json"]),
        (["soh", "evaluate"], ["--model", "--per-cell", "--json", "cov90"]),
        (["ca"], ["init", "issue", "revoke", "list"]),
        (["ca", "init"], ["--not-before", "--days", "--force", "--json"]),
        (["ca", "issue"], ["--role", "--cn", "--days", "--not-before", "--force", "--json"]),
        (["ca", "revoke"], ["--reason", "--at", "--json", "key_compromise", "superseded"]),
        (["ca", "list"], ["--json"]),
        (["challenge"], ["--out"]),
        (["respond"], ["--cell-key", "--out", "--password-file"]),
    ],
)
def test_subcommand_help(command: list[str], options: list[str]) -> None:
    """Each subcommand documents its key options."""
    result = run(*command, "--help")
    assert result.exit_code == 0, result.stderr
    text = plain(result.stdout)
    for option in options:
        assert option in text, f"{option} missing from {' '.join(command)} --help"


def test_verify_help_has_no_cert_option() -> None:
    """--cert is gone from verify: a certificate alone no longer makes a signature trusted."""
    assert "--cert" not in plain(run("verify", "--help").stdout)
    result = run("verify", "x.t5t", "--cert", "oem.cert.pem")
    assert result.exit_code == 2
    assert "--cert" in plain(result.stderr)


# --------------------------------------------------------------------------------------------
# keys generate


@pytest.mark.parametrize("key_type", ["ed25519", "p256"])
def test_keys_generate(key_type: str) -> None:
    """A private key file (0600) and its public key next to it; no certificate unless asked."""
    result = run("keys", "generate", "--type", key_type, "--out", "k.pem")
    assert result.exit_code == 0, result.stderr
    assert mode_of(Path("k.pem")) == 0o600
    assert b"PRIVATE KEY" in Path("k.pem").read_bytes()
    assert b"PUBLIC KEY" in Path("k.pub.pem").read_bytes()
    assert not Path("k.cert.pem").exists()
    assert "k.pem" in result.stderr
    assert result.stdout == ""
    expected = ed25519.Ed25519PrivateKey if key_type == "ed25519" else ec.EllipticCurvePrivateKey
    assert isinstance(load_private("k.pem"), expected)


def test_keys_generate_self_signed_p256() -> None:
    """--self-signed writes a loadable certificate with the given common name."""
    result = run("keys", "generate", "-t", "p256", "-o", "oem.pem", "--self-signed", "ACME OEM")
    assert result.exit_code == 0, result.stderr
    certs = load_certificates("oem.cert.pem")
    assert len(certs) == 1
    assert certs[0].subject.rfc4514_string() == "CN=ACME OEM"
    assert sorted(p.name for p in Path().iterdir()) == ["oem.cert.pem", "oem.pem", "oem.pub.pem"]


def test_keys_generate_self_signed_ed25519_fails_and_writes_nothing(tmp_path: Path) -> None:
    """Certificates are P-256 only: the refusal must come before any file is written."""
    result = run("keys", "generate", "--type", "ed25519", "--out", "c.pem", "--self-signed", "X")
    assert result.exit_code == 2
    assert "p256" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_keys_generate_unknown_type_is_usage_error(tmp_path: Path) -> None:
    """An unknown --type is bad usage (2), not an internal error (3)."""
    result = run("keys", "generate", "--type", "rsa", "--out", "r.pem")
    assert "ed25519" in result.stderr
    assert "internal error" not in result.stderr
    assert result.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_keys_generate_refuses_overwrite_then_force(tmp_path: Path) -> None:
    """Without --force existing keys are untouched; with it they are replaced."""
    gen_p256("oem", "First")
    before = snapshot(tmp_path)
    result = run("keys", "generate", "-t", "p256", "-o", "oem.pem", "--self-signed", "Second")
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert "oem.pem" in result.stderr
    assert snapshot(tmp_path) == before

    result = run(
        "keys", "generate", "-t", "p256", "-o", "oem.pem", "--self-signed", "Second", "--force"
    )
    assert result.exit_code == 0, result.stderr
    after = snapshot(tmp_path)
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before)
    assert load_certificates("oem.cert.pem")[0].subject.rfc4514_string() == "CN=Second"
    assert mode_of(Path("oem.pem")) == 0o600


def test_keys_generate_json_prints_paths() -> None:
    """--json puts exactly one JSON document on stdout; the human lines stay on stderr."""
    result = run("keys", "generate", "-t", "p256", "-o", "a.pem", "--self-signed", "A", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == {
        "type": "p256",
        "private_key": "a.pem",
        "public_key": "a.pub.pem",
        "certificate": "a.cert.pem",
        "encrypted": False,
    }
    assert "wrote" in result.stderr


def test_password_file_encrypts_key(cells_csv: Path) -> None:
    """An encrypted OEM key loads only with its password, and says so clearly without it."""
    Path("pw.txt").write_text("correct horse\n")
    result = run(
        "keys", "generate", "-t", "p256", "-o", "oem.pem", "--self-signed", "OEM",
        "--password-file", "pw.txt", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["encrypted"] is True
    assert b"ENCRYPTED" in Path("oem.pem").read_bytes()
    assert mode_of(Path("oem.pem")) == 0o600
    oem = (Path("oem.pem"), Path("oem.cert.pem"))

    result = issue(oem)
    assert result.exit_code == 2
    assert "password" in result.stderr
    assert "oem.pem" in result.stderr
    assert not Path("passports").exists()

    Path("wrong.txt").write_text("battery staple\n")
    result = issue(oem, "--password-file", "wrong.txt")
    assert result.exit_code == 2
    assert "password" in result.stderr
    assert not Path("passports").exists()

    result = issue(oem, "--password-file", "pw.txt")
    assert result.exit_code == 0, result.stderr
    assert len(list(Path("passports").glob("*.t5t"))) == 3


def test_password_from_environment(cells_csv: Path) -> None:
    """PASSPORT_KEY_PASSWORD encrypts on generate and decrypts on issue."""
    env = {"PASSPORT_KEY_PASSWORD": "s3cret"}
    result = run("keys", "generate", "-t", "p256", "-o", "oem.pem", "--self-signed", "OEM", env=env)
    assert result.exit_code == 0, result.stderr
    assert b"ENCRYPTED" in Path("oem.pem").read_bytes()
    oem = (Path("oem.pem"), Path("oem.cert.pem"))

    result = issue(oem)
    assert result.exit_code == 2
    assert "password" in result.stderr

    result = run(
        "issue", "cells.csv", "--key", "oem.pem", "--cert", "oem.cert.pem", "-o", "passports",
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr


# --------------------------------------------------------------------------------------------
# issue


def test_example_csv_is_accepted_by_issue(oem: tuple[Path, Path]) -> None:
    """The documented example is data on stdout and issues as it is."""
    result = run("issue", "--example-csv")
    assert result.exit_code == 0
    assert result.stderr == ""
    Path("example.csv").write_text(result.stdout)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) >= 1
    result = issue(oem, csv_path="example.csv")
    assert result.exit_code == 0, result.stderr
    assert len(list(Path("passports").glob("*.t5t"))) == len(rows)


@pytest.mark.parametrize("profile", ["ntag216", "st25dv64k"])
def test_issue_writes_images_and_cell_keys(
    oem: tuple[Path, Path], cells_csv: Path, profile: str
) -> None:
    """N images of exactly the tag's memory size, N private cell keys (0600), a JSON summary."""
    result = issue(oem, "--profile", profile, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["issued"] == 3
    assert summary["profile"] == profile
    assert 0 < summary["birth_bytes"]["min"] <= summary["birth_bytes"]["max"]
    assert "issued 3 passports" in result.stderr

    images = sorted(Path("passports").glob("*.t5t"))
    keys = sorted(Path("passports").glob("*.cell.pem"))
    assert len(images) == len(keys) == 3
    for image in images:
        assert image.stat().st_size == PROFILE_SIZES[profile]
        assert cell_key(image) in keys
        data = show_json(image)
        assert data["profile"] == profile
        assert [r["kind"] for r in data["records"]] == ["birth"]
    for key in keys:
        assert mode_of(key) == 0o600


def test_issue_reads_csv_from_stdin(oem: tuple[Path, Path], cells_csv: Path) -> None:
    """'-' reads the CSV from standard input."""
    result = run(
        "issue", "-", "--key", oem[0], "--cert", oem[1], "-o", "passports", "--json",
        input=cells_csv.read_bytes(),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["issued"] == 3
    assert len(list(Path("passports").glob("*.t5t"))) == 3


def _set(header: list[str], row: list[str], column: str, value: str) -> None:
    row[header.index(column)] = value


def _drop_site(h: list[str], rows: list[list[str]]) -> bytes:
    i = h.index("site")
    return to_csv(h[:i] + h[i + 1 :], [r[:i] + r[i + 1 :] for r in rows]).encode()


def _unknown_column(h: list[str], rows: list[list[str]]) -> bytes:
    return to_csv([*h, "colour"], [[*r, "red"] for r in rows]).encode()


def _with(column: str, value: str) -> Callable[[list[str], list[list[str]]], bytes]:
    """A CSV whose second cell (line 3) has `value` in `column`; the first is valid."""

    def make(h: list[str], rows: list[list[str]]) -> bytes:
        _set(h, rows[1], column, value)
        return to_csv(h, rows).encode()

    return make


def _duplicate(h: list[str], rows: list[list[str]]) -> bytes:
    return to_csv(h, [rows[0], list(rows[0])]).encode()


def _min_above_max(h: list[str], rows: list[list[str]]) -> bytes:
    _set(h, rows[1], "min_voltage_v", "4.3")
    _set(h, rows[1], "max_voltage_v", "4.2")
    return to_csv(h, rows).encode()


def _not_utf8(h: list[str], rows: list[list[str]]) -> bytes:
    return to_csv(h, rows).encode().replace(b"DE-BER1", b"DE-B\xe9R1", 1)


def _header_only(h: list[str], rows: list[list[str]]) -> bytes:
    return to_csv(h, []).encode()


def _empty_file(h: list[str], rows: list[list[str]]) -> bytes:
    return b""


def _extra_field(h: list[str], rows: list[list[str]]) -> bytes:
    return to_csv(h, [rows[0], [*rows[1], "surplus"]]).encode()


BAD_CSVS: list[Any] = [
    pytest.param(_drop_site, ["missing columns", "site"], id="missing-column"),
    pytest.param(_unknown_column, ["unknown columns", "colour"], id="unknown-column"),
    pytest.param(
        _with("rated_capacity_ah", "five"), ["line 3", "rated_capacity_ah", "five"], id="nan"
    ),
    pytest.param(
        _with("rated_capacity_ah", "5.0001"),
        ["line 3", "rated_capacity_ah", "5.0001", "more precise"],
        id="too-precise",
    ),
    pytest.param(
        _with("manufacture_date", "2026-02-30"), ["line 3", "manufacture_date"], id="bad-date"
    ),
    pytest.param(_with("chemistry", "unobtainium"), ["line 3", "chemistry"], id="chemistry"),
    pytest.param(
        _with("battery_id", "https://id.gs1.org/01/09506000134353/21/A0002"),
        ["line 3", "check digit"],
        id="gs1-check-digit",
    ),
    pytest.param(_duplicate, ["line 3", "repeats line 2"], id="duplicate-battery-id"),
    pytest.param(_min_above_max, ["line 3", "min_voltage_v"], id="min-voltage-above-max"),
    pytest.param(_not_utf8, ["UTF-8"], id="not-utf8"),
    pytest.param(_header_only, ["no cells"], id="header-only"),
    pytest.param(_empty_file, ["missing columns"], id="empty-file"),
    pytest.param(_extra_field, ["line 3", "more fields"], id="extra-field"),
]


@pytest.mark.parametrize(("make", "fragments"), BAD_CSVS)
def test_issue_bad_csv_writes_nothing(
    oem: tuple[Path, Path],
    make: Callable[[list[str], list[list[str]]], bytes],
    fragments: list[str],
) -> None:
    """A bad CSV is bad input (2), the message points at the file and the row or column, and
    not a single file is written (the whole CSV is checked first)."""
    header, rows = example_table()
    Path("bad.csv").write_bytes(make(header, rows))
    result = issue(oem, csv_path="bad.csv")
    assert result.exit_code == 2, result.stderr
    assert "bad.csv" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert result.stdout == ""
    assert not Path("passports").exists() or not any(Path("passports").iterdir())


def test_issue_row_too_big_for_tag_writes_nothing(oem: tuple[Path, Path]) -> None:
    """A later row whose birth record does not fit the tag must not leave half a batch behind
    (the command promises the whole CSV is checked before anything is written)."""
    header, rows = example_table()
    _set(header, rows[1], "model", "M" * 64)
    _set(header, rows[1], "site", "S" * 64)
    _set(header, rows[1], "manufacturer", "A" * 120)
    Path("big.csv").write_text(to_csv(header, rows))
    result = issue(oem, "--profile", "st25dv04k", csv_path="big.csv")
    assert result.exit_code == 2, result.stderr
    assert "line 3" in result.stderr
    out = Path("passports")
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert written == [], f"partial batch left behind: {written}"
    assert "big.csv" in result.stderr


@pytest.mark.parametrize("missing", ["--key", "--cert"])
def test_issue_requires_key_and_cert(oem: tuple[Path, Path], cells_csv: Path, missing: str) -> None:
    """Signing needs both the OEM key and its certificate."""
    given = {"--key": str(oem[0]), "--cert": str(oem[1])}
    del given[missing]
    args = [a for pair in given.items() for a in pair]
    result = run("issue", "cells.csv", *args, "-o", "passports")
    assert result.exit_code == 2
    assert "--key and --cert" in result.stderr
    assert not Path("passports").exists()


def test_issue_without_csv_is_usage_error(oem: tuple[Path, Path]) -> None:
    result = run("issue", "--key", oem[0], "--cert", oem[1])
    assert result.exit_code == 2
    assert "--example-csv" in result.stderr


def test_issue_missing_csv_file(oem: tuple[Path, Path]) -> None:
    result = issue(oem, csv_path="nope.csv")
    assert result.exit_code == 2
    assert "nope.csv" in result.stderr
    assert "no such file" in result.stderr


def test_issue_refuses_to_overwrite_without_force(
    batch: list[Path], oem: tuple[Path, Path]
) -> None:
    """Existing images and cell keys survive a second run unless --force is given."""
    before = snapshot(Path("passports"))
    result = issue(oem)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert snapshot(Path("passports")) == before

    result = issue(oem, "--force")
    assert result.exit_code == 0, result.stderr
    after = snapshot(Path("passports"))
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before)


def test_issue_unknown_profile(oem: tuple[Path, Path], cells_csv: Path) -> None:
    result = issue(oem, "--profile", "ntag999")
    assert result.exit_code == 2
    assert "ntag999" in result.stderr
    assert "ntag216" in result.stderr  # lists the choices
    assert not Path("passports").exists()


# --------------------------------------------------------------------------------------------
# append


def test_append_values_round_trip_through_show(batch: list[Path]) -> None:
    """Values given in human units come back from `show --json` exactly as given."""
    image = batch[0]
    parent = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    report = append_ok(
        image,
        "--time", "2027-01-02T03:04:05Z", "--cycles", "12.5", "--soh", "98.7", "--ah", "3980.4",
        "--wh", "14000", "--resistance-mohm", "15.25", "--soh-method", "capacity-test",
        "--soh-sigma", "0.5", "--minutes-hot", "7", "--deep-discharges", "2",
        "--event", "accident", "--event", "thermal-event", "--status", "repurposed",
        "--parent", parent,
    )  # fmt: skip
    assert report["entry"]["seq"] == 1
    assert report["evicted"] == []
    entry = show_json(image)["records"][-1]
    assert entry["kind"] == "telemetry"
    assert entry["signer"] == "cell"
    assert entry["time"] == "2027-01-02T03:04:05Z"
    assert entry["full_equivalent_cycles"] == 12.5
    assert entry["soh_capacity_pct"] == 98.7
    assert entry["throughput_ah"] == 3980.4
    assert entry["throughput_wh"] == 14000
    assert entry["resistance_mohm"] == 15.25
    assert entry["soh_method"] == "capacity-test"
    assert entry["soh_sigma_pct"] == 0.5
    assert entry["minutes_above_max_temperature"] == 7
    assert entry["deep_discharge_events"] == 2
    assert sorted(entry["negative_events"]) == ["accident", "thermal-event"]
    assert entry["status"] == "repurposed"
    assert entry["parents"] == [parent]
    assert entry == report["entry"]


def test_append_with_wrong_cell_key_leaves_image_untouched(batch: list[Path]) -> None:
    """Another cell's key must be refused before anything is written."""
    before = batch[0].read_bytes()
    result = run("append", batch[0], "--cell-key", cell_key(batch[1]), "--cycles", "1")
    assert result.exit_code == 2
    assert "cell key" in result.stderr
    assert batch[0].read_bytes() == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--cycles", "12.55"),
        ("--soh", "98.765"),
        ("--ah", "1.23"),
        ("--wh", "1.5"),
        ("--resistance-mohm", "0.0001"),
        ("--deep-discharges", "1.5"),
    ],
)
def test_append_refuses_excess_precision(batch: list[Path], option: str, value: str) -> None:
    """A signed record must say what was measured: no silent rounding."""
    before = batch[0].read_bytes()
    result = run("append", batch[0], "--cell-key", cell_key(batch[0]), option, value)
    assert result.exit_code == 2
    assert option in result.stderr
    assert "more precise" in result.stderr
    assert batch[0].read_bytes() == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--kind", "maintenance"),
        ("--kind", "birth"),
        ("--event", "meltdown"),
        ("--status", "scrapped"),
        ("--soh-method", "guesswork"),
        ("--time", "yesterday"),
        ("--time", "2027-01-02T03:04:05"),
        ("--parent", "not-a-uuid"),
        ("--cycles", "lots"),
    ],
)
def test_append_rejects_unknown_codes(batch: list[Path], option: str, value: str) -> None:
    """Unknown names and unparsable values are usage errors naming the option."""
    before = batch[0].read_bytes()
    result = run("append", batch[0], "--cell-key", cell_key(batch[0]), option, value)
    assert result.exit_code == 2
    assert option in result.stderr
    assert repr(value) in result.stderr or value in result.stderr
    assert batch[0].read_bytes() == before


def test_append_needs_a_signer(batch: list[Path], oem: tuple[Path, Path]) -> None:
    before = batch[0].read_bytes()
    result = run("append", batch[0], "--cycles", "1")
    assert result.exit_code == 2
    assert "--cell-key" in result.stderr
    result = run("append", batch[0], "--key", oem[0], "--cycles", "1")
    assert result.exit_code == 2
    assert "--cert" in result.stderr
    assert batch[0].read_bytes() == before


def test_append_to_missing_image(batch: list[Path], tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    result = run("append", "ghost.t5t", "--cell-key", cell_key(batch[0]), "--cycles", "1")
    assert result.exit_code == 2
    assert "ghost.t5t" in result.stderr
    assert "no such file" in result.stderr
    assert snapshot(tmp_path) == before


def test_actor_entry_needs_its_certificate_to_verify(
    batch: list[Path], tester: tuple[Path, Path], trust: Path
) -> None:
    """A tester signs with its own certificate (x5t); verifiers then need that certificate in
    their trust bundle."""
    x5t = thumbprint(load_certificates(tester[1])[0])[1].hex()
    image = batch[0]
    report = measure(image, tester)
    assert report["entry"]["signer"] == f"x5t:{x5t}"
    entry = show_json(image)["records"][-1]
    assert entry["kind"] == "measurement"
    assert entry["signer"] == f"x5t:{x5t}"
    assert entry["soh_capacity_pct"] == 97.5

    result, (verdict,) = verify_json(image, "--trust", trust_copy(trust, without="tester"))
    assert result.exit_code == 1
    assert f"FAIL: {image}: record 1: " in result.stderr
    assert "[trust.cert-unknown]" in result.stderr
    assert verdict["valid"] is False
    assert failed_rules(verdict) == ["trust.cert-unknown"]
    assert verdict["failures"][0]["record"] == 1

    result, (verdict,) = verify_json(image, "--trust", trust)
    assert result.exit_code == 0, result.stderr
    assert verdict["valid"] is True
    assert [r["signer"] for r in verdict["records"]] == [
        f"oem: {OEM_CN}",
        f"tester: {TESTER_CN}",
    ]


def test_tester_may_not_write_telemetry(
    batch: list[Path], tester: tuple[Path, Path], trust: Path
) -> None:
    """The write policy: a tester's genuine signature on telemetry is refused by verify (the
    append itself is not a verifier and writes it)."""
    result = run("append", batch[0], "--key", tester[0], "--cert", tester[1], "--cycles", "3")
    assert result.exit_code == 0, result.stderr
    result, (verdict,) = verify_json(batch[0], "--trust", trust)
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["policy.write-denied"]
    assert result.stderr.rstrip().endswith("[policy.write-denied]")


def test_self_signed_oem_certificate_does_not_verify(cells_csv: Path, trust: Path) -> None:
    """`keys generate --self-signed` still makes a certificate to sign with, but even when it
    sits among the bundle's certificates it does not chain to an anchor."""
    key, cert = gen_p256("self", OEM_CN)
    assert issue((key, cert)).exit_code == 0
    image = sorted(Path("passports").glob("*.t5t"))[0]
    bundle = trust_copy(trust)
    shutil.copy(cert, bundle / "certs" / "self.pem")
    result, (verdict,) = verify_json(image, "--trust", bundle)
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["trust.chain-invalid"]
    assert f"FAIL: {image}: record 0: " in result.stderr
    assert "[trust.chain-invalid]" in result.stderr

    result, (verdict,) = verify_json(image, "--trust", trust)
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["trust.cert-unknown"]


def test_eviction_journals_exactly_the_evicted_records(
    oem: tuple[Path, Path], cells_csv: Path, trust: Path
) -> None:
    """Filling an 888-byte tag moves old entries behind a checkpoint and into the journal;
    nothing is lost and the image still verifies."""
    assert issue(oem, "--profile", "ntag216").exit_code == 0
    image = sorted(Path("passports").glob("*.t5t"))[0]
    journal = Path(f"{image}.evicted.cbor")
    evicted: list[str] = []
    appends = 9
    start = int(time.time())  # after the birth; the last entry stays within the clock skew
    for n in range(1, appends + 1):
        report = append_ok(image, "--time", iso(start + n), "--cycles", str(n * 10))
        evicted += report["evicted"]
        if report["evicted"]:
            assert report["journal"] == str(journal)
    assert evicted, "nine entries should not fit an ntag216"
    assert image.stat().st_size == 888

    records = [SignedRecord.from_bytes(raw) for raw in iter_sequence(journal.read_bytes())]
    assert [r.digest.hex() for r in records] == evicted
    kinds = {r.kind.name.lower() for r in records}
    assert "telemetry" in kinds
    assert kinds <= {"telemetry", "checkpoint"}

    shown = show_json(image)
    assert [r["kind"] for r in shown["records"]][:2] == ["birth", "checkpoint"]
    on_tag = [r["seq"] for r in shown["records"] if r["kind"] == "telemetry"]
    journalled = [r.body.seq for r in records if r.kind.name == "TELEMETRY"]  # type: ignore[union-attr]
    assert journalled + on_tag == list(range(1, appends + 1))

    result = run("verify", image, "--trust", trust)
    assert result.exit_code == 0, result.stderr
    assert f"OK: {image}" in result.stderr

    text = run("show", image)
    assert text.exit_code == 0
    assert "checkpoint" in text.stdout


# --------------------------------------------------------------------------------------------
# show


def test_show_text(batch: list[Path]) -> None:
    """Tables on stdout with the battery id and every record kind."""
    append_ok(batch[0], "--cycles", "3")
    result = run("show", batch[0])
    assert result.exit_code == 0, result.stderr
    text = plain(result.stdout)
    assert "https://id.gs1.org/01/09506000134352/21/A0001" in text
    assert "birth" in text
    assert "telemetry" in text
    assert str(batch[0]) in text


def test_show_json(batch: list[Path]) -> None:
    data = show_json(batch[0])
    assert data["profile"] == "st25dv16k"
    assert data["memory_bytes"] == 2048
    assert 0 < data["used_bytes"] < 2048
    assert data["used_bytes"] + data["free_bytes"] == 2048
    assert data["path"] == str(batch[0])
    (birth,) = data["records"]
    assert birth["kind"] == "birth"
    assert birth["battery_id"] == "https://id.gs1.org/01/09506000134352/21/A0001"
    assert birth["rated_capacity_ah"] == 5


def _random_bytes(image: Path) -> None:
    image.write_bytes(random.Random(1).randbytes(2048))


def _truncated(image: Path) -> None:
    image.write_bytes(image.read_bytes()[:100])


def _cut_tail(image: Path) -> None:
    image.write_bytes(image.read_bytes()[:-8])


def _empty(image: Path) -> None:
    image.write_bytes(b"")


def _text_file(image: Path) -> None:
    image.write_text("battery_id,model\nX,Y\n")


def _garbled_record(image: Path) -> None:
    data = bytearray(image.read_bytes())
    data[60] ^= 0xFF
    image.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        pytest.param(_random_bytes, "", id="random"),
        pytest.param(_truncated, "image.truncated", id="truncated"),
        pytest.param(_cut_tail, "888", id="cut-tail"),
        pytest.param(_empty, "too short", id="empty"),
        pytest.param(_text_file, "image.cc", id="text"),
        pytest.param(_garbled_record, "", id="garbled-record"),
    ],
)
def test_show_unreadable_image(
    oem: tuple[Path, Path], cells_csv: Path, damage: Callable[[Path], None], fragment: str
) -> None:
    """An image that does not decode is unreadable input for `show`: one precise line, exit 2."""
    assert issue(oem, "--profile", "ntag216").exit_code == 0
    image = sorted(Path("passports").glob("*.t5t"))[0]
    damage(image)
    result = run("show", image)
    assert result.exit_code == 2, result.stdout
    assert result.stderr.startswith("error:")
    assert f"{image}:" in result.stderr
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


@pytest.mark.parametrize("target", ["missing.t5t", "."])
def test_show_missing_or_directory(target: str) -> None:
    result = run("show", target, "--json")
    assert result.exit_code == 2
    assert f"{target}:" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------------------------
# verify


@pytest.fixture
def aged(batch: list[Path]) -> list[Path]:
    """The batch with one cell-signed entry on every image."""
    for n, image in enumerate(batch):
        append_ok(image, "--cycles", str(n + 1), "--soh", "99.5")
    return batch


def test_verify_directory_of_good_images(aged: list[Path], trust: Path) -> None:
    result = run("verify", "passports", "--trust", trust)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [f"OK: {image}" for image in aged]


def test_verify_trust_from_environment(aged: list[Path], trust: Path) -> None:
    """$PASSPORT_TRUST stands in for --trust; --trust wins over it."""
    result = run("verify", "passports", env={"PASSPORT_TRUST": str(trust)})
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("OK: ") == 3
    result = run("verify", "passports", "--trust", trust, env={"PASSPORT_TRUST": "nowhere"})
    assert result.exit_code == 0, result.stderr


def test_verify_without_trust_is_usage_error(aged: list[Path]) -> None:
    """No --trust and no $PASSPORT_TRUST: nothing can be trusted, so it is bad usage (2) and
    says how to make a bundle."""
    result = run("verify", aged[0], "--json")
    assert result.exit_code == 2
    assert "--trust" in result.stderr
    assert "ca init" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("bundle", ["missing-dir", "empty-dir", "a-file"])
def test_verify_unusable_trust_bundle(aged: list[Path], bundle: str) -> None:
    Path("empty-dir").mkdir()
    Path("a-file").write_text("not a bundle\n")
    result = run("verify", aged[0], "--trust", bundle)
    assert result.exit_code == 2
    assert bundle in result.stderr
    assert "OK:" not in result.stderr


def test_verify_trust_dir_tolerates_keys_among_certificates(aged: list[Path], trust: Path) -> None:
    """Key files next to the bundle's certificates are skipped, not misread."""
    bundle = trust_copy(trust)
    shutil.copy(cell_key(aged[0]), bundle / "certs" / "stray.pem")
    shutil.copy(cell_key(aged[0]), bundle / "roots" / "stray.pem")
    result = run("verify", "passports", "--trust", bundle)
    assert result.exit_code == 0, result.stderr


def test_verify_without_the_oem_certificate_fails_trust(aged: list[Path], trust: Path) -> None:
    """The birth record names the OEM certificate: without it nothing can be trusted."""
    result, (verdict,) = verify_json(aged[0], "--trust", trust_copy(trust, without="oem"))
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["trust.cert-unknown"]
    assert verdict["failures"][0]["record"] == 0


def test_verify_json_shape(aged: list[Path], trust: Path) -> None:
    """One report per file: path, verdict, every failure, ids, one line per record, and the
    SHA-256 of the policy applied (the bundle's policy.toml)."""
    result, reports = verify_json(aged[0], "--trust", trust)
    assert result.exit_code == 0, result.stderr
    (report,) = reports
    assert set(report) == {
        "path", "valid", "failures", "battery_id", "passport_id", "records", "policy_sha256",
    }  # fmt: skip
    assert report["path"] == str(aged[0])
    assert report["valid"] is True
    assert report["failures"] == []
    assert report["battery_id"] == "https://id.gs1.org/01/09506000134352/21/A0001"
    shown = show_json(aged[0])
    assert report["passport_id"] == shown["records"][0]["passport_id"]
    policy = (trust / "policy.toml").read_bytes()
    assert report["policy_sha256"] == hashlib.sha256(policy).hexdigest()
    birth, entry = report["records"]
    assert set(birth) == {"record", "kind", "seq", "time", "signer", "sha256"}
    assert (birth["record"], birth["kind"], birth["seq"]) == (0, "birth", None)
    assert (entry["record"], entry["kind"], entry["seq"]) == (1, "telemetry", 1)
    assert (birth["signer"], entry["signer"]) == (f"oem: {OEM_CN}", "cell")
    assert [r["sha256"] for r in report["records"]] == [
        r.digest.hex() for r in read_image(aged[0]).records
    ]
    assert birth["time"] <= entry["time"] <= time.time()


def test_verify_policy_option(aged: list[Path], trust: Path) -> None:
    """--policy replaces the bundle's policy: one that lets the cell write nothing refuses
    every cell entry (each reported, the first on the FAIL line, the rest as `also:`), and the
    report names that policy's hash."""
    append_ok(aged[0], "--cycles", "5")
    text = (trust / "policy.toml").read_text()
    strict = text.replace('cell = ["telemetry"]', "cell = []")
    assert strict != text
    Path("strict.toml").write_text(strict)
    result, (verdict,) = verify_json(aged[0], "--trust", trust, "--policy", "strict.toml")
    assert result.exit_code == 1
    assert [(f["rule"], f["record"]) for f in verdict["failures"]] == [
        ("policy.write-denied", 1),
        ("policy.write-denied", 2),
    ]
    assert verdict["policy_sha256"] == hashlib.sha256(strict.encode()).hexdigest()
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"FAIL: {aged[0]}: record 1: ")
    assert lines[0].endswith("[policy.write-denied]")
    assert lines[1].startswith("  also: record 2: ")
    assert lines[1].endswith("[policy.write-denied]")
    assert len(lines) == 2

    Path("broken.toml").write_text("version = 99\n")
    result = run("verify", aged[0], "--trust", trust, "--policy", "broken.toml")
    assert result.exit_code == 2
    assert "broken.toml" in result.stderr


def test_verify_tampered_image(aged: list[Path], trust: Path) -> None:
    """One flipped bit fails that file with a rule; the others still verify."""
    victim = aged[1]
    flip_last_signature_byte(victim)
    result = run("verify", "passports", "--trust", trust)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"OK: {aged[0]}"
    assert lines[1].startswith(f"FAIL: {victim}: record 1: ")
    assert lines[1].endswith("[chain.entry-signature]")
    assert lines[2] == f"OK: {aged[2]}"
    assert len(lines) == 3

    result, verdicts = verify_json(*aged, "--trust", trust)
    assert result.exit_code == 1
    assert [v["path"] for v in verdicts] == [str(p) for p in aged]
    assert [v["valid"] for v in verdicts] == [True, False, True]
    assert failed_rules(verdicts[1]) == ["chain.entry-signature"]
    assert verdicts[1]["failures"][0]["record"] == 1
    assert verdicts[1]["failures"][0]["message"]
    assert verdicts[0]["battery_id"].endswith("/21/A0001")
    assert len(verdicts[0]["records"]) == 2
    assert [r["signer"] for r in verdicts[0]["records"]] == [f"oem: {OEM_CN}", "cell"]
    assert [r["signer"] for r in verdicts[1]["records"]] == [f"oem: {OEM_CN}", "?"]


def test_verify_missing_file_is_exit_2(aged: list[Path], trust: Path) -> None:
    """An unreadable file wins over a pass (exit 2), and the readable ones are still checked."""
    result, verdicts = verify_json(aged[0], "missing.t5t", "--trust", trust)
    assert result.exit_code == 2
    assert f"OK: {aged[0]}" in result.stderr
    assert "FAIL: missing.t5t: no such file" in result.stderr
    assert [v["valid"] for v in verdicts] == [True, False]
    assert failed_rules(verdicts[1]) == ["input.unreadable"]


def test_verify_non_image_file_fails_verification(aged: list[Path], trust: Path) -> None:
    """A file that reads but is not a tag image fails decoding: a FAIL line and exit 1
    (decoding is a verification rule, `image.cc`), unlike `show`, which exits 2."""
    Path("notes.txt").write_text("not a passport\n")
    result, verdicts = verify_json("notes.txt", aged[0], "--trust", trust)
    assert result.exit_code == 1
    assert "FAIL: notes.txt:" in result.stderr
    assert "[image.cc]" in result.stderr
    assert f"OK: {aged[0]}" in result.stderr
    assert failed_rules(verdicts[0]) == ["image.cc"]
    assert verdicts[0]["failures"][0]["record"] is None
    assert verdicts[0]["records"] == []


def test_verify_needs_images(trust: Path) -> None:
    result = run("verify", "--trust", trust)
    assert result.exit_code == 2
    Path("empty").mkdir()
    result = run("verify", "empty", "--trust", trust)
    assert result.exit_code == 2
    assert "no images" in result.stderr


# --------------------------------------------------------------------------------------------
# ca


def test_ca_init_writes_a_pki(tmp_path: Path) -> None:
    """CA keys, one key (0600) and certificate per role, and the trust bundle; --json lists
    what was issued; the human lines go to stderr."""
    result = run("ca", "init", "pki", "--not-before", PKI_NOT_BEFORE, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["trust"] == str(Path("pki") / "trust")
    assert [a["role"] for a in data["actors"]] == list(ROLES)
    for actor in data["actors"]:
        assert set(actor) == {"name", "role", "serial", "key", "certificate"}
        key, cert = Path(actor["key"]), Path(actor["certificate"])
        assert (key, cert) == actor_files(Path("pki"), actor["name"])
        assert mode_of(key) == 0o600
        assert isinstance(load_private(key), ec.EllipticCurvePrivateKey)
        (certificate,) = load_certificates(cert)
        assert format(certificate.serial_number, "x") == actor["serial"]
        assert roles_of(certificate) == {Role(actor["role"])}
        assert (Path("pki/trust/certs") / f"{actor['name']}.pem").read_bytes() == cert.read_bytes()
        assert certificate.not_valid_before_utc == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        assert str(key) in result.stderr
    for ca_key in Path("pki/ca").glob("*.key.pem"):
        assert mode_of(ca_key) == 0o600
    assert sorted(p.name for p in Path("pki/ca").glob("*.key.pem")) == [
        "oem-ca.key.pem", "root.key.pem", "services-ca.key.pem",
    ]  # fmt: skip
    bundle = Path("pki/trust")
    assert [p.name for p in (bundle / "roots").iterdir()] == ["root.pem"]
    assert sorted(p.name for p in (bundle / "intermediates").iterdir()) == [
        "oem-ca.pem", "services-ca.pem",
    ]  # fmt: skip
    assert len(list((bundle / "crls").iterdir())) == 3
    assert b"[write]" in (bundle / "policy.toml").read_bytes()
    assert not list(bundle.rglob("*.key.pem")), "private keys inside the trust bundle"


def test_ca_init_refuses_an_existing_ca_without_force(shared_pki: Path, tmp_path: Path) -> None:
    pki_dir = Path(shutil.copytree(shared_pki, tmp_path / "pki"))
    before = snapshot(pki_dir)
    result = run("ca", "init", pki_dir)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert snapshot(pki_dir) == before

    result = run("ca", "init", pki_dir, "--force")
    assert result.exit_code == 0, result.stderr
    after = snapshot(pki_dir)
    assert after["keys/oem.key.pem"] != before["keys/oem.key.pem"]
    assert after["trust/roots/root.pem"] != before["trust/roots/root.pem"]


def test_ca_issue_adds_an_actor_that_verifies(pki: Path, batch: list[Path]) -> None:
    """A new tester issued into the bundle signs a measurement that verifies under its name."""
    result = run("ca", "issue", pki, "lab2", "--role", "tester", "--cn", "Second Lab", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    key, cert = actor_files(pki, "lab2")
    assert data == {
        "name": "lab2",
        "role": "tester",
        "serial": format(load_certificates(cert)[0].serial_number, "x"),
        "key": str(key),
        "certificate": str(cert),
    }
    assert mode_of(key) == 0o600
    assert (pki / "trust" / "certs" / "lab2.pem").exists()
    assert load_certificates(cert)[0].extensions.get_extension_for_oid(
        x509.ExtensionOID.EXTENDED_KEY_USAGE
    ).value == x509.ExtendedKeyUsage([ROLE_OIDS[Role.TESTER]])

    measure(batch[0], (key, cert))
    result, (verdict,) = verify_json(batch[0], "--trust", pki / "trust")
    assert result.exit_code == 0, result.stderr
    assert verdict["records"][-1]["signer"] == "tester: Second Lab"

    result, (verdict,) = verify_json(batch[0], "--trust", trust_copy(pki / "trust", without="lab2"))
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["trust.cert-unknown"]


def test_ca_issue_refusals(pki: Path) -> None:
    before = snapshot(pki)
    for args, fragment in (
        (["lab2", "--role", "auditor"], "auditor"),
        (["tester", "--role", "tester"], "--force"),
        (["bad/name", "--role", "tester"], "bad/name"),
    ):
        result = run("ca", "issue", pki, *args)
        assert result.exit_code == 2, args
        assert fragment in result.stderr, args
        assert snapshot(pki) == before
    result = run("ca", "issue", Path("no-ca"), "lab2", "--role", "tester")
    assert result.exit_code == 2
    assert "ca init" in result.stderr


@pytest.fixture
def revocable(pki: Path, batch: list[Path]) -> tuple[Path, Path, Path, int]:
    """(pki, image with a tester measurement claiming T + 10, image with one claiming T + 30)
    and T (after the births); the tester is revoked at T + 20 by the tests. The births are
    issued "now", so the measurements claim seconds ahead, within the policy's clock skew."""
    tester_files = actor_files(pki, "tester")
    now = int(time.time())
    measure(batch[0], tester_files, "--time", str(now + 10))
    measure(batch[1], tester_files, "--time", str(now + 30))
    bundle = pki / "trust"
    result = run("verify", batch[0], batch[1], "--trust", bundle)
    assert result.exit_code == 0, result.stderr  # before any revocation both are fine
    return pki, batch[0], batch[1], now


def _revoke(pki_dir: Path, reason: str, at: int) -> dict[str, Any]:
    result = run("ca", "revoke", pki_dir, "tester", "--reason", reason, "--at", iso(at), "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_ca_revoke_superseded(revocable: tuple[Path, Path, Path, int]) -> None:
    """After a revocation for a trusted reason, records claiming an earlier time still pass;
    records claiming a later time fail."""
    pki_dir, before, after, now = revocable
    revoked = _revoke(pki_dir, "superseded", now + 20)
    assert revoked["name"] == "tester"
    assert revoked["reason"] == "superseded"
    assert dt.datetime.fromisoformat(revoked["at"]).timestamp() == now + 20
    bundle = pki_dir / "trust"
    result, verdicts = verify_json(before, after, "--trust", bundle)
    assert result.exit_code == 1
    assert verdicts[0]["valid"] is True
    assert failed_rules(verdicts[1]) == ["trust.signer-revoked"]
    assert verdicts[1]["failures"][0]["record"] == 1
    assert f"FAIL: {after}: record 1: " in result.stderr
    assert f"OK: {before}" in result.stderr


def test_ca_revoke_key_compromise(revocable: tuple[Path, Path, Path, int]) -> None:
    """After a key compromise even records claiming an earlier time fail: without a registry
    receipt nothing proves they were written before the revocation."""
    pki_dir, before, after, now = revocable
    _revoke(pki_dir, "key_compromise", now + 20)
    result, verdicts = verify_json(before, after, "--trust", pki_dir / "trust")
    assert result.exit_code == 1
    assert failed_rules(verdicts[0]) == ["trust.revoked-unproven"]
    assert failed_rules(verdicts[1]) == ["trust.signer-revoked"]


def test_ca_revoke_default_reason_is_key_compromise(
    revocable: tuple[Path, Path, Path, int],
) -> None:
    pki_dir, before, _, now = revocable
    result = run("ca", "revoke", pki_dir, "tester", "--at", iso(now + 20))
    assert result.exit_code == 0, result.stderr
    assert "key_compromise" in result.stderr
    result, (verdict,) = verify_json(before, "--trust", pki_dir / "trust")
    assert failed_rules(verdict) == ["trust.revoked-unproven"]


def test_ca_revoke_refusals(pki: Path) -> None:
    before = snapshot(pki)
    result = run("ca", "revoke", pki, "nobody")
    assert result.exit_code == 2
    assert "nobody" in result.stderr
    result = run("ca", "revoke", pki, "tester", "--reason", "boredom")
    assert result.exit_code == 2
    assert "boredom" in result.stderr
    assert "superseded" in result.stderr
    assert snapshot(pki) == before


def test_ca_list(pki: Path) -> None:
    """Every issued actor with its role and serial; a revocation shows with its time and
    reason. A certificate can be revoked by serial as well as by name."""
    result = run("ca", "list", pki, "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["name"], r["role"]) for r in rows] == [(role, role) for role in ROLES]
    for row in rows:
        cert = load_certificates(actor_files(pki, row["name"])[1])[0]
        assert row["serial"] == format(cert.serial_number, "x")
        assert row["revoked"] is None
        assert row["reason"] is None
    recycler = next(r for r in rows if r["name"] == "recycler")

    result = run("ca", "revoke", pki, f"0x{recycler['serial']}", "--reason", "superseded")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(run("ca", "list", pki, "--json").stdout)
    revoked = [r for r in rows if r["revoked"]]
    assert [(r["name"], r["reason"]) for r in revoked] == [("recycler", "superseded")]

    text = run("ca", "list", pki)
    assert text.exit_code == 0
    lines = text.stderr.strip().splitlines()
    assert len(lines) == len(ROLES)
    assert [line.split()[0] for line in lines] == list(ROLES)
    assert "revoked" in lines[ROLES.index("recycler")]
    assert "superseded" in lines[ROLES.index("recycler")]
    assert lines[0].endswith("valid")


# --------------------------------------------------------------------------------------------
# challenge and respond (anti-clone)


def test_challenge_is_fresh_hex() -> None:
    first, second = run("challenge"), run("challenge", "--out", "nonce.txt")
    assert first.exit_code == second.exit_code == 0
    for result in (first, second):
        assert re.fullmatch(r"[0-9a-f]{64}\n", result.stdout), result.stdout
    assert first.stdout != second.stdout
    assert Path("nonce.txt").read_text() == second.stdout


def _respond(challenge: str, key: Path, out: str = "answer.cose") -> Path:
    result = run("respond", challenge, "--cell-key", key, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert Path(out).exists()
    return Path(out)


def test_genuine_cell_answers_the_challenge(aged: list[Path], trust: Path) -> None:
    """The cell key the birth record certifies answers: the tag is on its own cell. The
    challenge may be given as hex or as the file `challenge --out` wrote."""
    nonce = run("challenge", "--out", "nonce.txt").stdout.strip()
    answer = _respond(nonce, cell_key(aged[0]))
    for given in (nonce, "nonce.txt"):
        result, (verdict,) = verify_json(
            aged[0], "--trust", trust, "--challenge", given, "--response", answer
        )
        assert result.exit_code == 0, result.stderr
        assert verdict["valid"] is True
    assert _respond("nonce.txt", cell_key(aged[0]), "again.cose").exists()


def test_copied_tag_fails_the_challenge(aged: list[Path], trust: Path) -> None:
    """A genuine image copied onto another cell: that cell's key cannot answer for it."""
    nonce = run("challenge").stdout.strip()
    answer = _respond(nonce, cell_key(aged[1]))
    result, (verdict,) = verify_json(
        aged[0], "--trust", trust, "--challenge", nonce, "--response", answer
    )
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["clone.response-invalid"]
    assert verdict["failures"][0]["record"] is None
    assert f"FAIL: {aged[0]}: " in result.stderr
    assert "[clone.response-invalid]" in result.stderr


def test_replayed_response_fails_the_challenge(aged: list[Path], trust: Path) -> None:
    """The right cell's answer to another (older) challenge is refused."""
    old, fresh = run("challenge").stdout.strip(), run("challenge").stdout.strip()
    answer = _respond(old, cell_key(aged[0]))
    result, (verdict,) = verify_json(
        aged[0], "--trust", trust, "--challenge", fresh, "--response", answer
    )
    assert result.exit_code == 1
    assert failed_rules(verdict) == ["clone.challenge-mismatch"]


def test_challenge_usage_errors(aged: list[Path], trust: Path) -> None:
    nonce = run("challenge").stdout.strip()
    answer = _respond(nonce, cell_key(aged[0]))
    for args in (
        ["--challenge", nonce],  # without --response
        ["--response", str(answer)],  # without --challenge
        ["--challenge", nonce, "--response", str(answer), str(aged[1])],  # two images
        ["--challenge", "abcd", "--response", str(answer)],  # not 32 bytes
        ["--challenge", "zz" * 32, "--response", str(answer)],  # not hex
        ["--challenge", nonce, "--response", "missing.cose"],
    ):
        result = run("verify", aged[0], "--trust", trust, *args)
        assert result.exit_code == 2, args
        assert "OK:" not in result.stderr, args
    result = run("respond", "abcd", "--cell-key", cell_key(aged[0]), "--out", "x.cose")
    assert result.exit_code == 2
    assert not Path("x.cose").exists()


# --------------------------------------------------------------------------------------------
# The installed console script, for real


def test_script_help() -> None:
    proc = run_script("--help")
    assert proc.returncode == 0
    assert "verify" in plain(proc.stdout)


def test_script_issue_append_verify(tmp_path: Path) -> None:
    """The whole job through real pipes: a PKI, issue from stdin, append, verify, tamper."""
    proc = run_script("ca", "init", "pki", "--not-before", PKI_NOT_BEFORE)
    assert proc.returncode == 0, proc.stderr
    example = run_script("issue", "--example-csv")
    assert example.returncode == 0
    proc = run_script(
        "issue", "-", "--key", "pki/keys/oem.key.pem", "--cert", "pki/keys/oem.cert.pem",
        "-o", "out", "--json", "--profile", "ntag216", input=example.stdout.encode(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["issued"] == 3
    image = sorted((tmp_path / "out").glob("*.t5t"))[0]
    proc = run_script("append", image, "--cell-key", cell_key(image), "--cycles", "1.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    proc = run_script("verify", "out", "--trust", "pki/trust")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("OK: ") == 3
    flip_last_signature_byte(image)
    proc = run_script("verify", "out", "--trust", "pki/trust", "--json")
    assert proc.returncode == 1
    assert [v["valid"] for v in json.loads(proc.stdout)] == [False, True, True]
    assert f"FAIL: out/{image.name}" in proc.stderr


def test_script_bad_input_exit_codes(shared_pki: Path) -> None:
    """Process exit codes of failures, as a shell script would see them."""
    Path("junk.t5t").write_bytes(b"\x00" * 64)
    assert run_script("show", "junk.t5t").returncode == 2
    assert run_script("verify", "junk.t5t", "--trust", shared_pki / "trust").returncode == 1
    assert run_script("verify", "junk.t5t").returncode == 2  # no trust bundle
    assert run_script("verify").returncode == 2
    assert run_script("issue", "nope.csv", "--key", "k", "--cert", "c").returncode == 2


def test_script_demo(tmp_path: Path) -> None:
    """The main job: every planted case (tampered, cloned, forked, overstated, abused, untested,
    outliers) ends where the policy says, and what it leaves can be re-run by hand."""
    proc = run_script("demo", "--out", "d", "--cells", "100", "--years", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["as_expected"] is True
    assert report["cells"] == 100
    assert sorted(report["designs"].values()) == [25, 25, 25, 25]
    assert set(report["outcomes"]) == {*report["scenarios"], "datasheets", "eu-passport"}
    eu = Path(report["outcomes"]["eu-passport"]["got"]["folder"])
    assert len(list(eu.glob("*.json"))) == 6
    assert len(list(eu.glob("*.label.svg"))) == 1
    assert all(o["ok"] for o in report["outcomes"].values())
    assert report["entries_by_signer"]["cell"] == 100 * 2 * 4  # quarterly, two years
    assert 0 < report["entries_by_signer"]["tester"] < 100 * 2  # yearly, not for bad BMSs
    intake = report["intake"]
    assert intake["cells"] == 100
    assert sum(intake["by_grade"].values()) == 100
    assert intake["by_grade"]["UNVERIFIED"] == 3
    # the two tests through a poor contact; no cleanly tested cell is unlike the reference ones
    assert intake["unlike_reference"] == len(report["scenarios"]["poor-contact"]) == 2
    assert "demo as expected" in proc.stderr
    assert "report.html" in proc.stderr
    for name in ("trust/roots", "keys/recycler.key.pem", "reference.csv", "model", "tests.csv",
                 "passport.db", "intake/report.html", "intake/results.json",
                 "datasheets/ACME-LFP-35.cose"):  # fmt: skip
        assert Path("d", name).exists(), name
    with open("d/intake/results.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 100
    # the line pulses LFP cells at two widths: one SoH per cell from both rows
    tested = json.loads(Path("d/intake/results.json").read_text())["cells"]
    rows_of = {r["design"]: {c["test_rows"] for c in tested if c["design"] == r["design"]
                             and c["soh"] is not None} for r in tested}  # fmt: skip
    assert rows_of == {"ACME-LFP-35": {2}, "ACME-LFP-68": {2}, "ACME-NMC-21": {1},
                       "ACME-NMC-2.1": {1}}  # fmt: skip

    # offline verification from the command line fails exactly the three tampered tags
    tampered = {n for k in ("tampered-soh", "tampered-cycles", "truncated")
                for n in report["scenarios"][k]}  # fmt: skip
    result, verdicts = verify_json("--trust", "d/trust", "d/images")
    assert result.exit_code == 1
    assert {Path(v["path"]).name for v in verdicts if not v["valid"]} == tampered
    signers = {r["signer"].split(":")[0] for v in verdicts for r in v["records"]}
    assert {"oem", "cell", "tester"} <= signers
    # every copy with the recycler's intake entry verifies
    result, verdicts = verify_json("--trust", "d/trust", "d/intake/images")
    assert result.exit_code == 0
    assert len(verdicts) == 100 - 3 - 2  # not the tampered ones, nor the two copies of a tag
    assert all(v["records"][-1]["signer"].startswith("recycler") for v in verdicts)
    # an auditor replays every grade
    audit = run_script("audit", "grades", "d/intake/results.json")
    assert audit.returncode == 0, audit.stderr
    # and the intake re-run by hand on what the demo left grades the same, writing nothing new
    again = run_script(
        "intake", "--trust", "d/trust", "--db", "d/passport.db", "--model", "d/model",
        "--tests", "d/tests.csv", "--key", "d/keys/recycler.key.pem", "--out", "d/again",
        "d/images", "--json",
    )  # fmt: skip
    assert again.returncode == 1, again.stderr  # three passports fail verification
    summary = json.loads(again.stdout)
    assert summary["by_grade"] == intake["by_grade"]
    assert summary["written"] == 0
