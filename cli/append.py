"""`passport append`: write a signed history entry into a cell's image."""

from __future__ import annotations

import time as _time
from pathlib import Path
from typing import Annotated

import typer

from cli._common import emit_json, err, handle_errors
from passport import units, writer
from passport.describe import describe_record
from passport.errors import InputError
from passport.trust import keys
from passport.trust.store import load_certificates, thumbprint

_V = "Values (human units)"


@handle_errors
def append(
    image: Annotated[Path, typer.Argument(help="The cell's image file; rewritten atomically.")],
    cell_key: Annotated[
        Path | None,
        typer.Option(
            help="The cell's key (its sidecar .cell.pem): signs cell entries and the "
            "checkpoint when old entries must be evicted."
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="An actor's key (P-256), to sign as tester/recycler/...")
    ] = None,
    cert: Annotated[Path | None, typer.Option(help="The actor's certificate (with --key).")] = None,
    kind: Annotated[
        str, typer.Option(help="telemetry, measurement, status, intake or remanufacture.")
    ] = "telemetry",
    at: Annotated[
        str | None, typer.Option("--time", help="ISO 8601 time with zone, or epoch s; default now.")
    ] = None,
    cycles: Annotated[
        str | None, typer.Option(help="Full equivalent cycles.", rich_help_panel=_V)
    ] = None,
    ah: Annotated[
        str | None, typer.Option(help="Ah throughput (cumulative).", rich_help_panel=_V)
    ] = None,
    wh: Annotated[
        str | None, typer.Option(help="Wh throughput (cumulative).", rich_help_panel=_V)
    ] = None,
    soh: Annotated[str | None, typer.Option(help="Capacity SoH, %.", rich_help_panel=_V)] = None,
    soh_power: Annotated[str | None, typer.Option(help="Power SoH, %.", rich_help_panel=_V)] = None,
    resistance_mohm: Annotated[
        str | None, typer.Option(help="Internal resistance, milliohm.", rich_help_panel=_V)
    ] = None,
    soh_method: Annotated[
        str | None,
        typer.Option(help="bms-estimate, capacity-test, pulse-test or eis.", rich_help_panel=_V),
    ] = None,
    soh_sigma: Annotated[
        str | None, typer.Option(help="1-sigma uncertainty of the SoH, %.", rich_help_panel=_V)
    ] = None,
    minutes_hot: Annotated[
        str | None, typer.Option(help="Minutes above max temperature.", rich_help_panel=_V)
    ] = None,
    minutes_cold: Annotated[
        str | None, typer.Option(help="Minutes below min temperature.", rich_help_panel=_V)
    ] = None,
    minutes_charging_extreme: Annotated[
        str | None, typer.Option(help="Minutes charging outside the window.", rich_help_panel=_V)
    ] = None,
    deep_discharges: Annotated[
        str | None, typer.Option(help="Deep-discharge count.", rich_help_panel=_V)
    ] = None,
    overcharges: Annotated[
        str | None, typer.Option(help="Overcharge count.", rich_help_panel=_V)
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(
            help="Negative event (repeatable): thermal-event, accident, external-short, "
            "water-ingress, overcurrent, fire-exposure.",
            rich_help_panel=_V,
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            help="original, repurposed, reused, remanufactured or waste.", rich_help_panel=_V
        ),
    ] = None,
    parent: Annotated[
        list[str] | None,
        typer.Option(
            help="Lineage: passport id of a source battery (repeatable).", rich_help_panel=_V
        ),
    ] = None,
    evicted: Annotated[
        Path | None,
        typer.Option(help="Journal for records evicted from memory (default IMAGE.evicted.cbor)."),
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option(help=f"Password of encrypted keys (or ${keys.PASSWORD_ENV}).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the new entry as JSON.")] = False,
) -> None:
    """Sign a history entry and append it to IMAGE.

    Counters are cumulative since birth (not deltas). When the memory is full, the oldest
    entries move behind a checkpoint signed with --cell-key and are written to the journal
    for the registry; nothing is dropped.

    Example: passport append cell.t5t --cell-key cell.cell.pem --cycles 412.5 --ah 3980 --soh 93.1
    """
    password = keys.read_password(password_file)
    if key is not None:
        if cert is None:
            raise InputError("--key needs --cert (the actor's certificate, named by x5t)")
        signer = keys.load_private(key, password)
        certs = load_certificates(cert)
        if not certs:
            raise InputError("no certificate in the file", source=str(cert))
        x5t = thumbprint(certs[0])
    elif cell_key is not None:
        signer, x5t = keys.load_private(cell_key, password), None
    else:
        raise InputError("give --cell-key (the cell signs) or --key and --cert (an actor signs)")
    cell = keys.load_private(cell_key, password) if cell_key is not None else None
    values = writer.parse_values(
        {
            "cycles": cycles,
            "ah": ah,
            "wh": wh,
            "soh": soh,
            "soh_power": soh_power,
            "resistance_mohm": resistance_mohm,
            "soh_sigma": soh_sigma,
            "minutes_hot": minutes_hot,
            "minutes_cold": minutes_cold,
            "minutes_charging_extreme": minutes_charging_extreme,
            "deep_discharges": deep_discharges,
            "overcharges": overcharges,
        },
        soh_method=soh_method,
        events=event or (),
        status=status,
        parents=parent or (),
    )
    when = units.parse_time(at, what="--time") if at else int(_time.time())
    result = writer.append_entry(
        image,
        kind=writer.parse_kind(kind),
        time=when,
        values=values,
        signer=signer,
        x5t=x5t,
        cell_key=cell,
        journal=evicted,
    )
    if json_out:
        emit_json(
            {
                "image": str(image),
                "entry": describe_record(result.record),
                "evicted": [r.digest.hex() for r in result.evicted],
                "journal": str(result.journal) if result.journal else None,
                "free_bytes": result.image.free_bytes,
            }
        )
    entry = result.record.body
    err.print(
        f"appended {kind} entry seq {entry.seq} ({len(result.record.raw)} B) to {image}; "  # type: ignore[union-attr]
        f"{result.image.free_bytes} B free"
    )
    if result.evicted:
        err.print(f"evicted {len(result.evicted)} records to {result.journal} behind a checkpoint")
