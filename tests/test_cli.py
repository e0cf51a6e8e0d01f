"""End-to-end tests of the `passport` command line.

Most commands run in-process through typer's CliRunner (fast, with stdout and stderr captured
separately); a handful run the installed console script in a subprocess so that the entry
point, real pipes and exit codes are covered too. Every run is checked for a leaked Python
traceback. Exit codes: 0 ok, 1 verification failed, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from typer.testing import CliRunner, Result

from cli.app import app
from passport.cbor import iter_sequence
from passport.records import SignedRecord
from passport.trust.keys import load_private
from passport.trust.store import load_certificates, thumbprint
from passport.writer import read_image

PASSPORT = Path(sys.executable).parent / "passport"
PROFILE_SIZES = {"st25dv04k": 512, "ntag216": 888, "st25dv16k": 2048, "st25dv64k": 8192}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# A wide terminal so help tables never truncate option names; no inherited password or debug.
RUNNER = CliRunner(
    env={
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PASSPORT_KEY_PASSWORD": None,
        "PASSPORT_DEBUG": None,
    }
)


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
    drop = ("PASSPORT_KEY_PASSWORD", "PASSPORT_DEBUG")
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


@pytest.fixture
def oem() -> tuple[Path, Path]:
    """The OEM's signing key and self-signed certificate."""
    return gen_p256("oem", "ACME OEM")


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


# --------------------------------------------------------------------------------------------
# --help


def test_top_level_help_lists_every_command() -> None:
    """The entry screen must show every command and the exit-code contract."""
    result = run("--help")
    assert result.exit_code == 0
    text = plain(result.stdout)
    for command in ("keys", "issue", "append", "show", "verify", "demo"):
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
        (["verify"], ["--cert", "--json"]),
        (["demo"], ["--out", "--cells", "--years", "--json"]),
    ],
)
def test_subcommand_help(command: list[str], options: list[str]) -> None:
    """Each subcommand documents its key options."""
    result = run(*command, "--help")
    assert result.exit_code == 0, result.stderr
    text = plain(result.stdout)
    for option in options:
        assert option in text, f"{option} missing from {' '.join(command)} --help"


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
    batch: list[Path], oem: tuple[Path, Path]
) -> None:
    """A tester signs with its own certificate (x5t); verifiers then need that certificate."""
    tester_key, tester_cert = gen_p256("tester", "Test Lab")
    x5t = thumbprint(load_certificates(tester_cert)[0])[1].hex()
    image = batch[0]
    result = run(
        "append", image, "--key", tester_key, "--cert", tester_cert, "--kind", "measurement",
        "--soh", "97.5", "--soh-method", "capacity-test", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["entry"]["signer"] == f"x5t:{x5t}"
    entry = show_json(image)["records"][-1]
    assert entry["kind"] == "measurement"
    assert entry["signer"] == f"x5t:{x5t}"
    assert entry["soh_capacity_pct"] == 97.5

    result = run("verify", image, "--cert", oem[1], "--json")
    assert result.exit_code == 1
    assert f"FAIL: {image}" in result.stderr
    assert "[trust.cert-unknown]" in result.stderr
    (verdict,) = json.loads(result.stdout)
    assert verdict["ok"] is False
    assert verdict["error"]["rule"] == "trust.cert-unknown"

    result = run("verify", image, "--cert", oem[1], "--cert", tester_cert, "--json")
    assert result.exit_code == 0, result.stderr
    (verdict,) = json.loads(result.stdout)
    assert verdict["ok"] is True
    assert verdict["signers"] == ["CN=ACME OEM", "CN=Test Lab"]


def test_eviction_journals_exactly_the_evicted_records(
    oem: tuple[Path, Path], cells_csv: Path
) -> None:
    """Filling an 888-byte tag moves old entries behind a checkpoint and into the journal;
    nothing is lost and the image still verifies."""
    assert issue(oem, "--profile", "ntag216").exit_code == 0
    image = sorted(Path("passports").glob("*.t5t"))[0]
    journal = Path(f"{image}.evicted.cbor")
    evicted: list[str] = []
    appends = 9
    for day in range(1, appends + 1):
        report = append_ok(
            image, "--time", f"2027-01-{day:02d}T00:00:00Z", "--cycles", str(day * 10)
        )
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

    result = run("verify", image, "--cert", oem[1])
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


def test_verify_directory_of_good_images(aged: list[Path], oem: tuple[Path, Path]) -> None:
    result = run("verify", "passports", "--cert", oem[1])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [f"OK: {image}" for image in aged]


def test_verify_cert_directory(aged: list[Path], oem: tuple[Path, Path]) -> None:
    """--cert may be a directory (key files in it are skipped, not misread)."""
    result = run("verify", "passports", "--cert", ".")
    assert result.exit_code == 0, result.stderr


def test_verify_tampered_image(aged: list[Path], oem: tuple[Path, Path]) -> None:
    """One flipped bit fails that file with a rule; the others still verify."""
    victim = aged[1]
    flip_last_signature_byte(victim)
    result = run("verify", "passports", "--cert", oem[1])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"OK: {aged[0]}"
    assert lines[1].startswith(f"FAIL: {victim}: ")
    assert lines[1].endswith("[chain.entry-signature]")
    assert lines[2] == f"OK: {aged[2]}"

    result = run("verify", *aged, "--cert", oem[1], "--json")
    assert result.exit_code == 1
    verdicts = json.loads(result.stdout)
    assert [v["path"] for v in verdicts] == [str(p) for p in aged]
    assert [v["ok"] for v in verdicts] == [True, False, True]
    assert verdicts[1]["error"]["rule"] == "chain.entry-signature"
    assert verdicts[1]["error"]["message"]
    assert verdicts[0]["battery_id"].endswith("/21/A0001")
    assert verdicts[0]["records"] == 2
    assert verdicts[0]["signers"] == ["CN=ACME OEM", "cell"]


def test_verify_without_certificate_fails_trust(aged: list[Path]) -> None:
    """The birth record names the OEM certificate: without it nothing can be trusted."""
    result = run("verify", aged[0], "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["error"]["rule"] == "trust.cert-unknown"


def test_verify_missing_file_is_exit_2(aged: list[Path], oem: tuple[Path, Path]) -> None:
    """An unreadable file wins over a pass (exit 2), and the readable ones are still checked."""
    result = run("verify", aged[0], "missing.t5t", "--cert", oem[1], "--json")
    assert result.exit_code == 2
    assert f"OK: {aged[0]}" in result.stderr
    assert "FAIL: missing.t5t: no such file" in result.stderr
    verdicts = json.loads(result.stdout)
    assert [v["ok"] for v in verdicts] == [True, False]
    assert verdicts[1]["error"]["rule"] == "input.unreadable"


def test_verify_non_image_file_fails_verification(aged: list[Path], oem: tuple[Path, Path]) -> None:
    """A file that reads but is not a tag image fails decoding: a FAIL line and exit 1
    (decoding is a verification rule, `image.cc`), unlike `show`, which exits 2."""
    Path("notes.txt").write_text("not a passport\n")
    result = run("verify", "notes.txt", aged[0], "--cert", oem[1], "--json")
    assert result.exit_code == 1
    assert "FAIL: notes.txt:" in result.stderr
    assert "[image.cc]" in result.stderr
    assert f"OK: {aged[0]}" in result.stderr
    verdicts = json.loads(result.stdout)
    assert verdicts[0]["error"]["rule"] == "image.cc"


def test_verify_needs_images(tmp_path: Path) -> None:
    result = run("verify")
    assert result.exit_code == 2
    Path("empty").mkdir()
    result = run("verify", "empty")
    assert result.exit_code == 2
    assert "no images" in result.stderr


# --------------------------------------------------------------------------------------------
# The installed console script, for real


def test_script_help() -> None:
    proc = run_script("--help")
    assert proc.returncode == 0
    assert "verify" in plain(proc.stdout)


def test_script_issue_append_verify(tmp_path: Path) -> None:
    """The whole job through real pipes: keys, issue from stdin, append, verify, tamper."""
    proc = run_script("keys", "generate", "-t", "p256", "-o", "oem.pem", "--self-signed", "OEM")
    assert proc.returncode == 0, proc.stderr
    example = run_script("issue", "--example-csv")
    assert example.returncode == 0
    proc = run_script(
        "issue", "-", "--key", "oem.pem", "--cert", "oem.cert.pem", "-o", "out", "--json",
        "--profile", "ntag216", input=example.stdout.encode(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["issued"] == 3
    image = sorted((tmp_path / "out").glob("*.t5t"))[0]
    proc = run_script("append", image, "--cell-key", cell_key(image), "--cycles", "1.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    proc = run_script("verify", "out", "--cert", "oem.cert.pem")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("OK: ") == 3
    flip_last_signature_byte(image)
    proc = run_script("verify", "out", "--cert", "oem.cert.pem", "--json")
    assert proc.returncode == 1
    assert [v["ok"] for v in json.loads(proc.stdout)] == [False, True, True]
    assert f"FAIL: out/{image.name}" in proc.stderr


def test_script_bad_input_exit_codes(tmp_path: Path) -> None:
    """Process exit codes of failures, as a shell script would see them."""
    Path("junk.t5t").write_bytes(b"\x00" * 64)
    assert run_script("show", "junk.t5t").returncode == 2
    assert run_script("verify", "junk.t5t").returncode == 1
    assert run_script("verify").returncode == 2
    assert run_script("issue", "nope.csv", "--key", "k", "--cert", "c").returncode == 2


def test_script_demo(tmp_path: Path) -> None:
    """The demo tampers with one tag and must catch exactly that one."""
    proc = run_script("demo", "--out", "d", "--cells", "6", "--years", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["as_expected"] is True
    assert report["cells"] == 6
    assert report["verified_ok"] == 5
    assert list(report["failed"]) == [report["tampered"]]
    assert "demo as expected" in proc.stderr
