"""`passport show`: an image decoded, in human units (no signature checks)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli._common import emit_json, handle_errors
from passport.describe import describe_image
from passport.errors import DecodeError, InputError
from passport.writer import read_image


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_flat(v) for v in value)
    return str(value)


@handle_errors
def show(
    image: Annotated[Path, typer.Argument(help="Image file to decode.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Decode IMAGE and print its records in human units.

    This checks the format strictly but does not verify signatures: use `passport verify`.
    """
    try:
        decoded = read_image(image)
    except DecodeError as exc:
        # For `show` an image that does not decode is unreadable input (exit 2).
        raise InputError(f"{exc.reason} [{exc.rule}]", source=exc.source) from None
    data = describe_image(decoded)
    data["path"] = str(image)
    if json_out:
        emit_json(data)
        return
    out = Console(file=sys.stdout, highlight=False)
    out.print(
        f"[bold]{image}[/]: {data['profile']}, {data['used_bytes']} of {data['memory_bytes']} "
        f"bytes used, {len(data['records'])} records"
    )
    for record in data["records"]:
        table = Table(
            title=f"{record['kind']} ({record['bytes']} B)", show_header=False, title_justify="left"
        )
        table.add_column("field", style="cyan")
        table.add_column("value", overflow="fold")
        for k, v in record.items():
            if k not in ("kind", "bytes"):
                table.add_row(k, _flat(v))
        out.print(table)
