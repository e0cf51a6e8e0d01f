"""`passport challenge` and `passport respond`: anti-clone challenge-response."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli._common import err, handle_errors
from passport import clone
from passport._fileio import read_bytes, write_atomic
from passport.trust import keys


@handle_errors
def challenge(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write it to this file.")
    ] = None,
) -> None:
    """Print a fresh random challenge (hex) for a cell to sign.

    Example: passport challenge > nonce.txt; passport respond --cell-key cell.pem nonce.txt
    -o answer.cose; passport verify --trust pki/trust cell.t5t --challenge nonce.txt
    --response answer.cose
    """
    text = clone.make_challenge().hex()
    if out is not None:
        write_atomic(out, (text + "\n").encode())
    sys.stdout.write(text + "\n")


def read_challenge(value: str) -> bytes:
    """A challenge given as hex on the command line or as a file holding the hex."""
    path = Path(value)
    text = read_bytes(path, limit=4096).decode("ascii", "replace") if path.is_file() else value
    return clone.parse_challenge(text)


@handle_errors
def respond(
    challenge_value: Annotated[str, typer.Argument(metavar="CHALLENGE", help="Hex, or a file.")],
    cell_key: Annotated[
        Path, typer.Option(help="The (virtual) cell's key: its sidecar .cell.pem.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the response.")],
    password_file: Annotated[
        Path | None, typer.Option(help="Password of an encrypted key.")
    ] = None,
) -> None:
    """Answer a challenge as the cell does: sign it with the cell's own key.

    A real cell does this in its secure element; here the sidecar key stands in for it.
    """
    key = keys.load_private(cell_key, keys.read_password(password_file))
    write_atomic(out, clone.respond(key, read_challenge(challenge_value)))
    err.print(f"wrote the response to {out}", markup=False)
