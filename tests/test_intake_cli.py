"""`passport intake` and `passport audit grades` on the command line: exit codes (0 done,
1 a passport failed verification or a replay differs, 2 bad usage), the JSON summary and the
replay of a results file."""

from __future__ import annotations

import csv
import io
import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import intake_kit
import numpy as np
import pytest
from intake_kit import CELLS, Kit, noisy_row, results_by_name
from registry_kit import tampered_image
from typer.testing import CliRunner, Result

from cli.app import app
from passport.grading import GradingPolicy
from passport.writer import read_image

RUNNER = CliRunner(
    env={
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PASSPORT_KEY": None,
        "PASSPORT_CERT": None,
        "PASSPORT_DB": None,
        "PASSPORT_TRUST": None,
        "PASSPORT_DEBUG": None,
        "PASSPORT_KEY_PASSWORD": None,
    }
)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return intake_kit.build(tmp_path_factory.mktemp("intake-cli-kit"))


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """Invoke the CLI in-process; a traceback or an internal error fails the test."""
    result = RUNNER.invoke(app, [str(a) for a in args], env=env)
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def intake_args(kit: Kit, tmp: Path, images: Path | None = None, **over: Any) -> list[str]:
    """`passport intake` arguments for the kit's batch; `over` replaces options (None drops
    one)."""
    options: dict[str, Any] = {
        "--trust": kit.trust_dir,
        "--db": tmp / "registry.db",
        "--model": kit.model_path,
        "--tests": kit.tests_csv,
        "--key": kit.recycler_key,
        "--out": tmp / "out",
        "--workers": 1,
    }
    options.update({"--" + k.replace("_", "-"): v for k, v in over.items()})
    args = ["intake"]
    for name, value in options.items():
        if value is not None:
            args += [name, str(value)]
    return [*args, str(images or kit.images)]


# --------------------------------------------------------------------------------------------
# passport intake


def test_clean_batch_exits_0_with_a_json_summary(kit: Kit, tmp_path: Path) -> None:
    result = run(*intake_args(kit, tmp_path), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["cells"] == len(CELLS)
    assert sum(summary["by_grade"].values()) == len(CELLS)
    assert summary["by_grade"]["QUARANTINE"] == 1  # the cell with a thermal event
    assert summary["unverified"] == 0
    assert summary["written"] == len(CELLS)
    assert summary["policy"] == GradingPolicy.default().ref()
    assert Path(summary["outputs"]["results_json"]) == tmp_path / "out" / "results.json"
    assert f"intake: {len(CELLS)} cells" in result.stderr
    assert "remanufacture" in result.stderr
    assert len(list((tmp_path / "out" / "images").glob("*.t5t"))) == len(CELLS)


def test_human_summary_without_json(kit: Kit, tmp_path: Path) -> None:
    result = run(*intake_args(kit, tmp_path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "policy battery-passport/default v1" in result.stderr
    assert "results_json:" in result.stderr


def test_a_noisy_test_asks_for_another_and_the_summary_says_so(kit: Kit, tmp_path: Path) -> None:
    """One cell tested through a poor contact (10 mV of noise on its voltages): exit 0 (a
    test to repeat is not a failed verification), the summary counts it on stdout and stderr."""
    rows = list(csv.reader(io.StringIO(kit.tests_csv.read_text(encoding="utf-8"))))
    at = rows[0].index("cell_id")
    rng = np.random.default_rng(8)
    rows = [noisy_row(rows[0], r, 0.010, rng) if r[at] == kit.stems[2] else r for r in rows]
    tests = tmp_path / "tests.csv"
    with open(tests, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    result = run(*intake_args(kit, tmp_path, tests=tests), "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["unlike_reference"] == 1
    assert summary["by_grade"]["TEST-REQUIRED"] == 1
    said = " ".join(result.stderr.split())
    assert "tests unlike the SoH model's reference cells (noisy voltages?): 1" in said
    clean = run(*intake_args(kit, tmp_path / "clean"), "--json")
    assert json.loads(clean.stdout)["unlike_reference"] == 0
    assert "unlike the SoH model" not in clean.stderr


def test_one_failed_verification_exits_1(kit: Kit, tmp_path: Path) -> None:
    batch = kit.copy_batch(tmp_path / "batch")
    victim = batch / f"{kit.stems[0]}.t5t"
    victim.write_bytes(tampered_image(read_image(victim), -1).to_bytes())
    result = run(*intake_args(kit, tmp_path, batch), "--json")
    assert result.exit_code == 1, result.stderr
    summary = json.loads(result.stdout)
    assert summary["unverified"] == 1
    assert summary["by_grade"]["UNVERIFIED"] == 1
    assert summary["cells"] == len(CELLS)
    assert summary["written"] == len(CELLS) - 1
    doc = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert results_by_name(doc["cells"])[victim.name]["grade"] == "UNVERIFIED"


def test_key_and_certificate_from_the_environment(kit: Kit, tmp_path: Path) -> None:
    key = tmp_path / "elsewhere.pem"
    shutil.copy(kit.recycler_key, key)
    env = {"PASSPORT_KEY": str(key), "PASSPORT_CERT": str(kit.recycler_cert)}
    result = run(*intake_args(kit, tmp_path, key=None), env=env)
    assert result.exit_code == 0, result.stderr


def test_key_defaults_to_the_recycler_of_the_ca_directory(kit: Kit, tmp_path: Path) -> None:
    """The command line of the issue, without --key: a `passport ca init` directory holds
    the trust bundle and the actors' keys side by side."""
    result = run(*intake_args(kit, tmp_path, key=None))
    assert result.exit_code == 0, result.stderr
    assert "signing intake entries as" in result.stderr
    assert str(kit.trust_dir.parent / "keys" / "recycler.key.pem") in result.stderr


def test_no_key_and_none_beside_the_trust_bundle_is_a_usage_error(kit: Kit, tmp_path: Path) -> None:
    alone = tmp_path / "bundle" / "trust"
    shutil.copytree(kit.trust_dir, alone)
    result = run(*intake_args(kit, tmp_path, key=None, trust=alone))
    assert result.exit_code == 2
    assert "give --key" in result.stderr
    assert not (tmp_path / "out").exists()


def _usage_cases(kit: Kit, tmp: Path) -> dict[str, tuple[list[str], str]]:
    lone_key = tmp / "lone.key.pem"
    shutil.copy(kit.recycler_key, lone_key)
    bad_policy = tmp / "policy.toml"
    bad_policy.write_text('id = "x"\nversion = 2\n', encoding="utf-8")
    keys = kit.recycler_key.parent
    return {
        "missing-tests-file": (intake_args(kit, tmp, tests=tmp / "nope.csv"), "nope.csv"),
        "missing-model": (intake_args(kit, tmp, model=tmp / "nope.json"), "nope.json"),
        "tester-key": (
            intake_args(kit, tmp, key=keys / "tester.key.pem"),
            "not a recycler's certificate",
        ),
        "oem-key": (
            intake_args(kit, tmp, key=keys / "oem.key.pem"),
            "not a recycler's certificate",
        ),
        "trust-dir-missing": (intake_args(kit, tmp, trust=tmp / "no-trust"), "no-trust"),
        "key-without-certificate": (intake_args(kit, tmp, key=lone_key), "give --cert"),
        "certificate-of-another-key": (
            intake_args(kit, tmp, cert=keys / "tester.cert.pem"),
            "not the key's",
        ),
        "key-file-missing": (intake_args(kit, tmp, key=tmp / "none.key.pem"), "none.key.pem"),
        "invalid-policy": (intake_args(kit, tmp, policy=bad_policy), "version must be 1"),
        "policy-missing": (intake_args(kit, tmp, policy=tmp / "none.toml"), "none.toml"),
        "two-inputs-one-name": (
            [*intake_args(kit, tmp), str(kit.copy_batch(tmp / "again"))],
            "two inputs are named",
        ),
    }


USAGE = (
    "missing-tests-file", "missing-model", "tester-key", "oem-key", "trust-dir-missing",
    "key-without-certificate", "certificate-of-another-key", "key-file-missing",
    "invalid-policy", "policy-missing", "two-inputs-one-name",
)  # fmt: skip


@pytest.mark.parametrize("case", USAGE)
def test_usage_errors_exit_2(kit: Kit, tmp_path: Path, case: str) -> None:
    args, message = _usage_cases(kit, tmp_path)[case]
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""
    assert not (tmp_path / "out" / "results.json").exists()


def test_no_images_is_a_usage_error(kit: Kit, tmp_path: Path) -> None:
    args = intake_args(kit, tmp_path)[:-1]
    result = run(*args)
    assert result.exit_code == 2
    assert "IMAGE" in result.stderr
    assert not (tmp_path / "out").exists()


def test_resume_with_other_arguments_exits_2_unless_restart(kit: Kit, tmp_path: Path) -> None:
    assert run(*intake_args(kit, tmp_path)).exit_code == 0
    again = run(*intake_args(kit, tmp_path), "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["resumed"] == len(CELLS)
    assert json.loads(again.stdout)["written"] == 0
    tests = tmp_path / "tests.csv"
    tests.write_text(kit.tests_csv.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    other = run(*intake_args(kit, tmp_path, tests=tests))
    assert other.exit_code == 2
    assert "tests_sha256" in other.stderr
    assert "--restart" in other.stderr
    restarted = run(*intake_args(kit, tmp_path, tests=tests), "--restart", "--json")
    assert restarted.exit_code == 0, restarted.stderr
    assert json.loads(restarted.stdout)["resumed"] == 0


# --------------------------------------------------------------------------------------------
# passport audit grades


@pytest.fixture(scope="module")
def results(kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit")
    assert run(*intake_args(kit, tmp)).exit_code == 0
    return tmp / "out" / "results.json"


def test_audit_grades_of_an_untouched_run_exits_0(results: Path) -> None:
    result = run("audit", "grades", results, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"cells": len(CELLS), "replayed": len(CELLS), "skipped": 0,
                      "mismatches": []}  # fmt: skip
    assert f"{len(CELLS)} decisions replayed, 0 differ" in result.stderr


def test_audit_grades_after_tampering_exits_1(results: Path, tmp_path: Path) -> None:
    doc = json.loads(results.read_text(encoding="utf-8"))
    cell = doc["cells"][0]
    assert cell["grade"] == "A"
    cell["grade"] = "B"
    edited = tmp_path / "results.json"
    edited.write_text(json.dumps(doc), encoding="utf-8")
    result = run("audit", "grades", edited, "--json")
    assert result.exit_code == 1
    mismatches = json.loads(result.stdout)["mismatches"]
    assert [(m["cell_id"], m["recorded"], m["replayed"]) for m in mismatches] == [
        (cell["cell_id"], "B", "A")
    ]
    assert f"MISMATCH {cell['cell_id']}" in result.stderr
    plain = run("audit", "grades", edited)
    assert plain.exit_code == 1
    assert "1 differ" in plain.stderr


def test_audit_grades_replays_with_the_policy_the_run_saved(kit: Kit, tmp_path: Path) -> None:
    """A run under its own policy leaves the policy's bytes beside its results, and the replay
    takes them without --policy (the shipped default changes between releases); without that
    file, or with an edited one, the replay refuses (exit 2) for want of the named policy."""
    text = resources.files("passport.grading").joinpath("default.toml").read_text("utf-8")
    strict = tmp_path / "strict.toml"
    strict.write_text(text.replace("min_soh = 0.90", "min_soh = 0.99"), encoding="utf-8")
    assert run(*intake_args(kit, tmp_path, policy=strict)).exit_code == 0
    out = tmp_path / "out"
    assert (out / "policy.toml").read_bytes() == strict.read_bytes()
    result = run("audit", "grades", out / "results.json")
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert f"policy: {out / 'policy.toml'}" in said
    assert f"{len(CELLS)} decisions replayed, 0 differ" in said
    (out / "policy.toml").write_text(text, encoding="utf-8")  # not the policy it names
    edited = run("audit", "grades", out / "results.json")
    assert edited.exit_code == 2
    assert "--policy" in " ".join(edited.stderr.split())
    (out / "policy.toml").unlink()  # the shipped default is not it either
    gone = run("audit", "grades", out / "results.json")
    assert gone.exit_code == 2
    assert "policy: the shipped default" in gone.stderr
    assert run("audit", "grades", out / "results.json", "--policy", strict).exit_code == 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("other-policy", "--policy", id="other-policy"),
        pytest.param("not-results", "not an intake results file", id="not-results"),
        pytest.param("missing", "no such file", id="missing"),
        pytest.param("bad-evidence", "soh must be a number", id="bad-evidence"),
    ],
)
def test_audit_grades_usage_errors_exit_2(
    results: Path, tmp_path: Path, case: str, message: str
) -> None:
    args: list[str | Path] = ["audit", "grades"]
    if case == "other-policy":
        policy = tmp_path / "strict.toml"
        text = resources.files("passport.grading").joinpath("default.toml").read_text("utf-8")
        policy.write_text(text.replace("min_soh = 0.90", "min_soh = 0.95"), encoding="utf-8")
        args += [results, "--policy", policy]
    elif case == "not-results":
        path = tmp_path / "x.json"
        path.write_text('{"format": "something-else"}')
        args += [path]
    elif case == "missing":
        args += [tmp_path / "nope.json"]
    else:
        doc = json.loads(results.read_text(encoding="utf-8"))
        doc["cells"][3]["evidence"]["soh"] = "high"
        path = tmp_path / "results.json"
        path.write_text(json.dumps(doc))
        args += [path]
    result = run(*args)
    assert result.exit_code == 2, result.stderr
    assert message in " ".join(result.stderr.split())
