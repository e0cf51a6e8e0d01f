"""`passport verify`: the full trust model over one or many images."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    emit_json,
    err,
    handle_errors,
    progress_bar,
)
from cli.challenge import read_challenge
from passport import clone
from passport._fileio import read_bytes
from passport.chain import Finding, Report, check_image_bytes
from passport.errors import InputError, VerificationError
from passport.image import Image
from passport.notes import load_log_key
from passport.receipts import ReceiptBook
from passport.trust.bundle import TrustBundle
from passport.trust.policy import Policy

IMAGE_GLOB = "*.t5t"
TRUST_ENV = "PASSPORT_TRUST"
# the --trust and --policy options of every command that verifies against a bundle
TrustOption = Annotated[
    Path | None,
    typer.Option(help=f"Trust bundle directory (`passport ca init` makes one; or ${TRUST_ENV})."),
]
PolicyOption = Annotated[
    Path | None, typer.Option(help="A policy file instead of the bundle's policy.toml.")
]


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; directories contribute their *.t5t files (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob(IMAGE_GLOB)))
        else:
            out.append(p)
    return out


def load_trust(trust: Path | None, policy: Path | None) -> TrustBundle:
    if trust is None:
        env = os.environ.get(TRUST_ENV)
        if not env:
            raise InputError(
                f"give the trust bundle with --trust DIR (or ${TRUST_ENV}); "
                "`passport ca init` makes one"
            )
        trust = Path(env)
    return TrustBundle.load(trust, policy=Policy.load(policy) if policy else None)


def _print_report(path: Path, report: Report) -> None:
    if report.valid:
        err.print(f"OK: {path}", markup=False)
        return
    first = report.findings[0]
    err.print(f"FAIL: {path}: {_line(first)}", markup=False)
    for finding in report.findings[1:]:
        err.print(f"  also: {_line(finding)}", markup=False)


def _line(finding: Finding) -> str:
    where = f"record {finding.index}: " if finding.index is not None else ""
    return f"{where}{finding.message} [{finding.rule}]"


@handle_errors
def verify(
    images: Annotated[list[Path], typer.Argument(help="Image files or directories of `*.t5t`.")],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    challenge: Annotated[
        str | None, typer.Option(help="Anti-clone: the challenge (hex or file) the cell answered.")
    ] = None,
    response: Annotated[
        Path | None, typer.Option(help="Anti-clone: the cell's response (from `passport respond`).")
    ] = None,
    receipt: Annotated[
        list[Path] | None,
        typer.Option(
            help="A registry receipt proving when a record was logged (repeatable; "
            "with --log-key): lets records of since-revoked or expired signers pass."
        ),
    ] = None,
    log_key: Annotated[
        Path | None, typer.Option(help="The registry log's public key, to check --receipt.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of reports.")
    ] = False,
) -> None:
    """Verify signatures, signers, write permissions and history rules of each image.

    Every failed rule is reported with its id and the record it concerns. One line per file on
    stderr (OK: path / FAIL: path: ...). Exit 0 when all are valid, 1 when any is not, 2 when a
    file cannot be read or the usage is wrong. With --challenge and --response (one image),
    the cell's answer must come from the key its birth record certifies: a copied tag fails.

    Example: passport verify --trust pki/trust images/
    """
    bundle = load_trust(trust, policy)
    files = expand_images(images)
    if not files:
        raise InputError("no images to verify")
    if (challenge is None) != (response is None):
        raise InputError("--challenge and --response go together")
    if challenge is not None and len(files) != 1:
        raise InputError("a challenge-response checks one image at a time")
    receipts = None
    if receipt:
        if log_key is None:
            raise InputError("--receipt needs --log-key (the registry log's public key)")
        key = load_log_key(read_bytes(log_key, limit=1 << 16), str(log_key))
        receipts = ReceiptBook(key, [read_bytes(r, limit=1 << 20) for r in receipt])
    nonce = read_challenge(challenge) if challenge is not None else None
    answer = read_bytes(response) if response is not None else None
    results: list[dict[str, Any]] = []
    unreadable = invalid = 0
    with progress_bar("verifying", len(files)) as advance:
        for path in files:
            try:
                data = read_bytes(path, limit=1 << 20)
            except InputError as exc:
                unreadable += 1
                results.append({"path": str(path), "valid": False, "readable": False,
                                "failures": [{"rule": "input.unreadable", "record": None,
                                              "message": exc.reason}]})  # fmt: skip
                err.print(f"FAIL: {path}: {exc.reason}", markup=False)
                advance(1)
                continue
            report = check_image_bytes(data, bundle, receipts=receipts)
            if nonce is not None and answer is not None and report.birth is not None:
                report = _with_clone_check(report, data, nonce, answer)
            invalid += not report.valid
            _print_report(path, report)
            results.append({"path": str(path), **report.to_dict()})
            advance(1)
    if json_out:
        emit_json(results)
    raise typer.Exit(EXIT_USAGE if unreadable else EXIT_FAILED if invalid else EXIT_OK)


def _with_clone_check(report: Report, data: bytes, nonce: bytes, answer: bytes) -> Report:
    try:
        clone.check_response(Image.from_bytes(data), nonce, answer)
    except VerificationError as exc:
        finding = Finding(exc.rule, None, exc.reason)
        return Report(
            (*report.findings, finding), report.records, report.birth, report.policy_sha256
        )
    return report
