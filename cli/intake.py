"""`passport intake`: the recycler's daily job, and `passport audit grades` to replay it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli._common import EXIT_FAILED, emit_json, err, handle_errors
from cli.verify import load_trust
from passport.errors import InputError
from passport.grading import GradingPolicy
from passport.intake import IntakeJob, IntakeSigner, IntakeSummary, replay, run_intake
from passport.intake.outputs import POLICY_FILE
from passport.intake.run import file_sha256
from passport.registry import Registry
from passport.registry.db import DB_ENV
from passport.soh import load_model
from passport.trust import keys

KEY_ENV = "PASSPORT_KEY"
CERT_ENV = "PASSPORT_CERT"
_MEANING = {
    "A": "remanufacture", "B": "EV reuse", "C": "stationary storage", "D": "recycle",
    "TEST-REQUIRED": "test again", "QUARANTINE": "quarantine", "UNVERIFIED": "failed verification",
    "ERROR": "unreadable",
}  # fmt: skip


@contextmanager
def _stages(enabled: bool) -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """One progress line per stage on a terminal; nothing in pipes."""
    if not enabled or not err.is_terminal:
        yield lambda _stage, _total: lambda _n: None
        return
    with Progress(
        TextColumn("{task.description:<26}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=True,
    ) as progress:  # fmt: skip

        def stage(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(description, total=max(total, 1))
            return lambda n: progress.advance(task, n)

        yield stage


@handle_errors
def intake(
    images: Annotated[
        list[Path],
        typer.Argument(metavar="IMAGE...|DIR", help="Tag images, or directories of `*.t5t`."),
    ],
    trust: Annotated[Path, typer.Option(help="The trust bundle directory.")],
    model: Annotated[Path, typer.Option(help="SoH model file (passport soh fit).")],
    tests: Annotated[
        Path,
        typer.Option(
            metavar="TESTS.csv",
            help="The intake line's pulse tests (passport soh estimate input: features or "
            "traces, CSV or Parquet; matched to passports by cell_id = image name, battery id "
            "or passport id; a cell's several rows or runs are combined).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    key: Annotated[
        Path | None,
        typer.Option(
            envvar=KEY_ENV,
            help=f"The recycler's private key (${KEY_ENV}; default: keys/recycler.key.pem of "
            "the `passport ca init` directory that holds --trust, if there is one).",
        ),
    ] = None,
    cert: Annotated[
        Path | None,
        typer.Option(
            envvar=CERT_ENV,
            help=f"Its certificate (${CERT_ENV}; default: NAME.cert.pem beside NAME.key.pem).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help=f"Registry: SQLAlchemy URL or SQLite file (${DB_ENV})."),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="Grading policy (TOML); default: the shipped one."),
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Start over in OUTDIR instead of finishing an earlier run.")
    ] = False,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes verifying tags while registering.")
    ] = min(2, os.cpu_count() or 1),
    password_file: Annotated[
        Path | None, typer.Option(help=f"Password of an encrypted key (or ${keys.PASSWORD_ENV}).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Take in a batch of retired cells: verify, register, measure, grade, sign.

    For every image: verify the passport offline (trust bundle), ingest it into the registry
    (fork and clone alerts), re-estimate its state of health from its pulse test, check the
    SoH its passport claims, grade it under the policy (A remanufacture, B EV reuse, C
    stationary, D recycle, or QUARANTINE / TEST-REQUIRED / UNVERIFIED, with the rule ids and
    reasons), and write a signed intake entry into a copy of the image under OUTDIR/images/.
    Input files are never modified. A cell whose pulse test is unlike every reference cell of
    the SoH model (noisy voltages, a poor contact) is TEST-REQUIRED, and its entry leaves that
    SoH out.

    Writes OUTDIR/results.csv, OUTDIR/results.json (with each cell's evidence: replay it with
    `passport audit grades`), OUTDIR/policy.toml (the policy it graded under) and
    OUTDIR/report.html. Interrupted, re-run it with the same
    arguments: it finishes the remaining cells and never writes a second intake entry.

    Exit 0 when the batch completed, 1 when any passport failed verification, 2 on bad usage.

    Example: passport intake --trust demo-out/trust --db demo-out/passport.db
    --model demo-out/model --tests demo-out/tests.csv --key demo-out/keys/recycler.key.pem
    --out again demo-out/images
    """
    if not images:
        raise InputError("give at least one image or directory")
    for path in (tests, model):
        if not path.is_file():
            raise InputError("no such file", source=str(path))
    bundle = load_trust(trust, None)
    grading = GradingPolicy.load(policy)
    if key is None:
        key = trust.parent / "keys" / "recycler.key.pem"
        if not key.is_file():
            raise InputError(
                f"give --key (the recycler's private key, or ${KEY_ENV}): the intake signs an "
                f"entry into each passport (no {key} beside the trust bundle)"
            )
    signer = IntakeSigner.load(key, cert, bundle, keys.read_password(password_file))
    err.print(f"signing intake entries as {signer.subject} ({key})", markup=False)
    soh_model = load_model(model)
    registry = Registry.init(db)
    registry.trust = bundle
    arguments = {
        "trust": str(trust.resolve()),
        "db": registry.engine.url.render_as_string(hide_password=True),
        "model_sha256": file_sha256(model),
        "tests_sha256": file_sha256(tests),
        "policy_sha256": grading.sha256,
        "signer": signer.subject,
        "inputs": [str(p.resolve()) for p in images],
    }
    job = IntakeJob(
        trust=bundle, registry=registry, model=soh_model, tests=tests, out_dir=out,
        inputs=images, signer=signer, policy=grading, arguments=arguments, restart=restart,
        workers=workers,
    )  # fmt: skip
    with _stages(not json_out) as stage:
        summary = run_intake(job, stage)
    if json_out:
        emit_json(summary.to_dict())
    _print_summary(summary)
    if summary.exit_code:
        raise typer.Exit(EXIT_FAILED)


def _print_summary(s: IntakeSummary) -> None:
    table = Table(title=f"intake: {s.cells} cells", title_justify="left")
    table.add_column("grade")
    table.add_column("meaning")
    table.add_column("cells", justify="right")
    for grade in _MEANING:
        if grade in s.by_grade:
            table.add_row(grade, _MEANING[grade], str(s.by_grade[grade]))
    err.print(table)
    err.print(
        f"alerts: {s.alerts}; failed verification: {s.unverified}; unreadable: {s.errors}; "
        f"intake entries written now: {s.written}"
        + (f"; finished earlier: {s.resumed}" if s.resumed else "")
        + (f"; without an entry: {s.not_written}" if s.not_written else "")
        + (f"; test rows matching no cell: {s.tests_unmatched}" if s.tests_unmatched else "")
        + (
            f"; tests unlike the SoH model's reference cells (noisy voltages?): "
            f"{s.unlike_reference}"
            if s.unlike_reference
            else ""
        ),
        markup=False,
    )
    err.print(f"policy {s.policy['id']} v{s.policy['version']} ({s.policy['sha256'][:16]}...)",
              markup=False)  # fmt: skip
    for name, path in s.outputs.items():
        err.print(f"  {name}: {path}", markup=False)


@handle_errors
def grades(
    results: Annotated[Path, typer.Argument(metavar="RESULTS.json", help="An intake's results.")],
    policy: Annotated[
        Path | None,
        typer.Option(
            help="The policy it names (default: the policy.toml the run saved beside "
            "RESULTS.json, else the shipped one)."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Replay every grading decision from its recorded evidence; exit 1 if any differs.

    The policy must be the one whose SHA-256 the results name: by default the copy the run
    saved beside them (OUTDIR/policy.toml), since the shipped default changes between
    releases."""
    if policy is None and (results.parent / POLICY_FILE).is_file():
        policy = results.parent / POLICY_FILE
    grading = GradingPolicy.load(policy)
    err.print(f"policy: {policy or 'the shipped default'} ({grading.sha256[:16]}...)",
              markup=False)  # fmt: skip
    report = replay(results, grading)
    if json_out:
        emit_json({"cells": report.cells, "replayed": report.replayed,
                   "skipped": report.skipped, "mismatches": report.mismatches})  # fmt: skip
    for m in report.mismatches:
        err.print(f"MISMATCH {m['cell_id']}: recorded {m['recorded']} {m['recorded_rules']}, "
                  f"replayed {m['replayed']} {m['replayed_rules']}", markup=False)  # fmt: skip
    err.print(f"{report.replayed} decisions replayed, {len(report.mismatches)} differ"
              + (f", {report.skipped} unreadable cells skipped" if report.skipped else ""),
              markup=False)  # fmt: skip
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
