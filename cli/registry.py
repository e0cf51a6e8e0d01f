"""`passport registry`: the registry and its transparency log."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli._common import EXIT_FAILED, EXIT_OK, emit_json, err, handle_errors, progress_bar
from cli.verify import TrustOption, load_trust
from passport._fileio import read_bytes, write_atomic
from passport.datasheet import MAX_DATASHEET_BYTES, datasheet_sha256
from passport.errors import DecodeError, InputError, VerificationError
from passport.image import Image
from passport.notes import parse_body
from passport.registry import Registry, read_sources, source_from_bytes
from passport.registry.db import DB_ENV
from passport.registry.parallel import default_workers

app = typer.Typer(
    rich_markup_mode="markdown",  # docstring line breaks are reflowed to the terminal width
    help="The registry: every record of every cell, verified, in a transparency log. "
    f"The database is --db URL (an SQLite file or a postgresql:// URL; ${DB_ENV}; "
    "default ./passport.db).",
    no_args_is_help=True,
)

Db = Annotated[str | None, typer.Option("--db", help=f"SQLAlchemy URL or SQLite file (${DB_ENV}).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


@app.command("init")
@handle_errors
def init(
    db: Db = None,
    origin: Annotated[str | None, typer.Option(help="The log's name in its checkpoints.")] = None,
    json_out: Json = False,
) -> None:
    """Create or upgrade the registry schema (Alembic) and, once, the log's Ed25519 key."""
    info = Registry.init(db, origin=origin).info()
    if json_out:
        emit_json({k: v for k, v in info.items() if k != "checkpoint"})
    err.print(
        f"registry ready at {info['url']} (log {info['origin']}, size {info['tree_size']})",
        markup=False,
    )


@app.command("ingest")
@handle_errors
def ingest(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images (`*.t5t`), journals (`*.evicted.cbor`), directories of both, "
            "or - for one of them on stdin."
        ),
    ],
    db: Db = None,
    trust: TrustOption = None,
    batch: Annotated[int, typer.Option(min=1, help="Inputs per transaction.")] = 200,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes verifying tags in parallel (default: one per core)."),
    ] = None,
    json_out: Json = False,
) -> None:
    """Verify inputs with the trust model and store what passes, in the log.

    Idempotent: a record already held is a no-op. Forks (two records for one seq) and clones
    (a second birth for a battery id with another cell key) are kept as evidence and raise
    alerts. Exit 0 when everything was stored or already held, 1 when anything was rejected.
    """
    registry = Registry(db, trust=load_trust(trust, None))
    paths = [p for p in inputs if p != "-"]
    sources, problems = read_sources(paths)
    if "-" in inputs:
        try:
            sources.append(source_from_bytes("<stdin>", sys.stdin.buffer.read()))
        except (InputError, DecodeError) as exc:
            problems.append(("<stdin>", exc.reason))
    for name, reason in problems:
        err.print(f"SKIP: {name}: {reason}", markup=False)
    if not sources and not problems:
        raise InputError("nothing to ingest")
    with progress_bar("ingesting", len(sources)) as advance:
        summary = registry.ingest(
            sources, batch=batch, progress=advance, workers=workers or default_workers()
        )
    for name, findings in summary.rejected.items():
        first = findings[0]
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        err.print(f"REJECTED: {name}: {first['message']} [{first['rule']}]{more}", markup=False)
    for alert in summary.alerts:
        err.print(f"ALERT {alert['kind']}: {alert['message']}", markup=False)
    result = {
        "inputs": len(sources), "unreadable": [{"path": p, "reason": r} for p, r in problems],
        "stored": summary.stored, "already_held": summary.duplicates,
        "rejected": summary.rejected, "alerts": summary.alerts, "tree_size": summary.tree_size,
        "seconds": round(summary.seconds, 3),
    }  # fmt: skip
    if json_out:
        emit_json(result)
    rate = summary.stored / summary.seconds if summary.seconds else 0.0
    err.print(
        f"stored {summary.stored} records ({summary.duplicates} already held, "
        f"{len(summary.rejected)} inputs rejected, {len(summary.alerts)} alerts) in "
        f"{summary.seconds:.2f} s ({rate:.0f}/s); log size {summary.tree_size}",
        markup=False,
    )
    raise typer.Exit(EXIT_FAILED if summary.rejected or problems else EXIT_OK)


@app.command("info")
@handle_errors
def info(
    db: Db = None,
    log_key_out: Annotated[
        Path | None, typer.Option(help="Write the log's public key (PEM).")
    ] = None,
    json_out: Json = False,
) -> None:
    """Tree size, root, the log's public key, and counts of cells, records and alerts."""
    data = Registry(db).info()
    if log_key_out is not None:
        write_atomic(log_key_out, data["log_public_key_pem"].encode())
    if json_out:
        emit_json(data)
        return
    for key in (
        "url",
        "origin",
        "tree_size",
        "root",
        "cells",
        "flagged_cells",
        "records",
        "alerts",
    ):
        sys.stdout.write(f"{key}: {data[key]}\n")


@app.command("prove")
@handle_errors
def prove(
    record: Annotated[str, typer.Option(help="SHA-256 (hex) of the record.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the receipt.")],
    db: Db = None,
    record_out: Annotated[
        Path | None, typer.Option(help="Also write the record's exact bytes (for the audit).")
    ] = None,
) -> None:
    """Write the RFC 9942 COSE receipt proving a record is in the log."""
    digest = _digest(record)
    registry = Registry(db)
    write_atomic(out, registry.prove(digest))
    if record_out is not None:
        write_atomic(record_out, registry.record(digest))
    err.print(f"wrote the receipt of {record} to {out}", markup=False)


@app.command("checkpoint")
@handle_errors
def checkpoint(
    db: Db = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write it here too.")] = None,
) -> None:
    """Print the newest signed checkpoint (C2SP signed note), signing one if the log grew."""
    note = Registry(db).checkpoint()
    if out is not None:
        write_atomic(out, note.encode())
    sys.stdout.write(note)


@app.command("consistency")
@handle_errors
def consistency(
    old: Annotated[str, typer.Argument(help="Old tree size, or a checkpoint file.")],
    new: Annotated[str, typer.Argument(help="New tree size, or a checkpoint file.")],
    db: Db = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the proof here.")] = None,
) -> None:
    """Emit the consistency proof between two tree sizes (JSON: sizes and base64 hashes)."""
    size1, size2 = _size(old), _size(new)
    proof = Registry(db).consistency(size1, size2)
    text = json.dumps(
        {"old_size": size1, "new_size": size2,
         "proof": [base64.b64encode(h).decode() for h in proof]}, indent=2,
    ) + "\n"  # fmt: skip
    if out is not None:
        write_atomic(out, text.encode())
    sys.stdout.write(text)


@app.command("check")
@handle_errors
def check(
    images: Annotated[list[Path], typer.Argument(help="Tag images to compare with the registry.")],
    db: Db = None,
    json_out: Json = False,
) -> None:
    """Compare tags with the registry: unknown passport, rolled-back or forked tag, flagged cell.

    Exit 0 when every tag matches the registry's history, 1 otherwise.
    """
    registry = Registry(db)
    results: list[dict[str, Any]] = []
    bad = 0
    for path in images:
        image = Image.from_bytes(read_bytes(path, limit=1 << 20))
        result = registry.check_image(image)
        bad += bool(result.findings)
        results.append({"path": str(path), "known": result.known,
                        "findings": [f.to_dict() for f in result.findings]})  # fmt: skip
        if result.findings:
            for finding in result.findings:
                err.print(f"FAIL: {path}: {finding.message} [{finding.rule}]", markup=False)
        else:
            err.print(f"OK: {path}", markup=False)
    if json_out:
        emit_json(results)
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


@app.command("alerts")
@handle_errors
def alerts(db: Db = None, json_out: Json = False) -> None:
    """List fork, clone and checkpoint-mismatch alerts."""
    rows = Registry(db).alerts()
    if json_out:
        emit_json(rows)
        return
    for row in rows:
        sys.stdout.write(f"{row['id']} {row['kind']} cell {row['cell_id']}: {row['message']}\n")


@app.command("datasheet")
@handle_errors
def datasheet(
    sheet: Annotated[Path, typer.Argument(help="Signed data sheet (`passport datasheet sign`).")],
    db: Db = None,
    trust: TrustOption = None,
    json_out: Json = False,
) -> None:
    """Verify an OEM data sheet and store it, keyed by the SHA-256 birth records carry.

    The signer must be an OEM of the trust bundle. Idempotent: storing the same sheet again is
    a no-op. Exit 0 when stored or already held, 1 when the sheet fails verification.

    Example: passport registry datasheet acme-lfp-35.cose --trust trust/ --db passport.db
    """
    raw = read_bytes(sheet, limit=MAX_DATASHEET_BYTES)
    registry = Registry(db, trust=load_trust(trust, None))
    held = registry.datasheet(datasheet_sha256(raw)) is not None
    digest = registry.add_datasheet(raw, source=str(sheet)).hex()
    if json_out:
        emit_json({"path": str(sheet), "sha256": digest, "already_held": held})
    state = "already held" if held else "stored"
    err.print(f"{state}: data sheet {digest} from {sheet}", markup=False)


def _digest(text: str) -> bytes:
    try:
        digest = bytes.fromhex(text.strip())
    except ValueError:
        digest = b""
    if len(digest) != 32:
        raise InputError("--record takes the record's SHA-256 as 64 hex digits")
    return digest


def _size(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return parse_body(
            read_bytes(value, limit=1 << 20).decode().partition("\n\n")[0] + "\n"
        ).size
    except (UnicodeDecodeError, VerificationError) as exc:
        raise InputError(f"not a tree size or a checkpoint: {exc}", source=value) from None
