"""`passport audit`: check the registry's receipts and checkpoints offline, without its database."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Annotated

import typer

from cli._common import emit_json, err, handle_errors
from passport import merkle
from passport._fileio import read_bytes
from passport.errors import InputError, VerificationError
from passport.notes import load_log_key, open_checkpoint, parse_body
from passport.receipts import verify_receipt

app = typer.Typer(
    rich_markup_mode="markdown",  # docstring line breaks are reflowed to the terminal width
    help="Offline audit of the registry: receipts and consistency between checkpoints, with "
    "nothing but the log's public key (passport registry info --log-key-out FILE).",
    no_args_is_help=True,
)

LogKey = Annotated[Path, typer.Option("--log-key", help="The log's Ed25519 public key (PEM).")]


@app.command("receipt")
@handle_errors
def receipt(
    record: Annotated[Path, typer.Argument(help="The record's exact bytes (a .cose file).")],
    receipt_file: Annotated[Path, typer.Argument(metavar="RECEIPT", help="Its COSE receipt.")],
    log_key: LogKey,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check that a receipt proves the record was in the log (and since when). Exit 1 if not."""
    key = load_log_key(read_bytes(log_key, limit=1 << 16), str(log_key))
    info = verify_receipt(read_bytes(receipt_file, limit=1 << 20), read_bytes(record), key)
    if json_out:
        emit_json({"valid": True, "origin": info.origin, "tree_size": info.tree_size,
                   "leaf_index": info.leaf_index, "root": info.root.hex(),
                   "logged_at": info.logged_at.isoformat()})  # fmt: skip
    err.print(
        f"OK: {record} is leaf {info.leaf_index} of {info.origin} (tree size {info.tree_size}), "
        f"logged by {info.logged_at.isoformat()}",
        markup=False,
    )


@app.command("consistency")
@handle_errors
def consistency(
    old: Annotated[Path, typer.Argument(help="The older checkpoint (signed note).")],
    new: Annotated[Path, typer.Argument(help="The newer checkpoint.")],
    proof: Annotated[Path, typer.Argument(help="`passport registry consistency` output.")],
    log_key: LogKey,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check that the newer checkpoint's tree extends the older one's (append-only log)."""
    key = load_log_key(read_bytes(log_key, limit=1 << 16), str(log_key))
    checkpoints = []
    for path in (old, new):
        text = read_bytes(path, limit=1 << 20).decode("utf-8", "replace")
        origin = parse_body(text.partition("\n\n")[0] + "\n").origin
        checkpoints.append(open_checkpoint(text, origin, key))
    first, second = checkpoints
    if first.origin != second.origin:
        raise InputError(f"the checkpoints are of two logs ({first.origin}, {second.origin})")
    try:
        doc = json.loads(read_bytes(proof, limit=1 << 20))
        hashes = [base64.b64decode(h, validate=True) for h in doc["proof"]]
        sizes = (int(doc["old_size"]), int(doc["new_size"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InputError(f"not a consistency proof ({exc})", source=str(proof)) from None
    if sizes != (first.size, second.size):
        raise InputError(
            f"the proof is for sizes {sizes}, the checkpoints are {first.size} and {second.size}"
        )
    if first.size == 0 and hashes:  # anything extends the empty tree: the proof is empty
        raise VerificationError(
            "a consistency proof from the empty tree must be empty", rule="log.consistency-invalid"
        )
    if first.size:
        merkle.verify_consistency(first.size, second.size, first.root, second.root, hashes)
    if json_out:
        emit_json({"valid": True, "origin": first.origin, "old_size": first.size,
                   "new_size": second.size})  # fmt: skip
    err.print(
        f"OK: {first.origin} at size {second.size} extends its tree at size {first.size}",
        markup=False,
    )
