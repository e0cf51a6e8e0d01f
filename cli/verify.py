"""`passport verify`: signatures and hash links of one or many images."""

from __future__ import annotations

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
from passport.chain import verify_image
from passport.errors import InputError, VerificationError
from passport.trust.store import CertificateStore
from passport.writer import read_image

IMAGE_GLOB = "*.t5t"


def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given; directories contribute their *.t5t files (sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob(IMAGE_GLOB)))
        else:
            out.append(p)
    return out


@handle_errors
def verify(
    images: Annotated[list[Path], typer.Argument(help="Image files or directories of *.t5t.")],
    cert: Annotated[
        list[Path] | None,
        typer.Option(help="Certificate file or directory that x5t may name (repeatable)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON array of results.")
    ] = False,
) -> None:
    """Verify every record's signature and every hash link of each image.

    One line per file on stderr (OK: path / FAIL: path: reason). Exit 0 when all verify, 1 when
    any fails verification, 2 when any file cannot be read.

    Example: passport verify passports/ --cert oem.cert.pem
    """
    store = CertificateStore.from_paths(cert or [])
    files = expand_images(images)
    if not files:
        raise InputError("no images to verify")
    results: list[dict[str, Any]] = []
    unreadable = failed = 0
    with progress_bar("verifying", len(files)) as advance:
        for path in files:
            result: dict[str, Any] = {"path": str(path), "ok": False}
            try:
                verified = verify_image(read_image(path), store)
            except VerificationError as exc:
                failed += 1
                result["error"] = {"rule": exc.rule, "message": exc.reason}
                err.print(f"FAIL: {path}: {exc.reason} [{exc.rule}]", markup=False)
            except InputError as exc:
                unreadable += 1
                result["error"] = {"rule": "input.unreadable", "message": exc.reason}
                err.print(f"FAIL: {path}: {exc.reason}", markup=False)
            else:
                result.update(
                    ok=True,
                    battery_id=verified.birth.battery_id,
                    passport_id=str(verified.birth.passport_id),
                    records=len(verified.records),
                    signers=list(verified.signers),
                )
                err.print(f"OK: {path}", markup=False)
            results.append(result)
            advance(1)
    if json_out:
        emit_json(results)
    raise typer.Exit(EXIT_USAGE if unreadable else EXIT_FAILED if failed else EXIT_OK)
