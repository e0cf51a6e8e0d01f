"""`passport label`: the QR code label that leads to a verified passport (EU 2023/1542 Art. 77)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import emit_json, err, handle_errors
from cli.verify import PolicyOption, TrustOption, load_trust
from passport import label as labels
from passport._fileio import write_atomic
from passport.chain import check_image
from passport.errors import InputError, VerificationError
from passport.records import Birth
from passport.writer import read_image

FORMATS: dict[str, labels.LabelFormat] = {".svg": "svg", ".png": "png"}
UNVERIFIED = "UNVERIFIED"


@handle_errors
def label(
    image: Annotated[Path, typer.Argument(help="The passport image (.t5t) to make a label for.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The label file: .svg or .png (from the name).")
    ],
    trust: TrustOption = None,
    policy: PolicyOption = None,
    resolver: Annotated[
        str | None,
        typer.Option(
            help="https:// base URL that resolves ISO/IEC 15459 ids (the label carries "
            "`<resolver>/<id>`); a GS1 Digital Link id is its own URI."
        ),
    ] = None,
    scale: Annotated[
        int, typer.Option(min=1, max=100, help="Pixels (SVG user units) per QR module.")
    ] = 8,
    force: Annotated[bool, typer.Option(help="Overwrite an existing label file.")] = False,
    allow_unverified: Annotated[
        bool,
        typer.Option(
            "--allow-unverified",
            help="Make a label even when the passport does not verify (marked UNVERIFIED).",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print {uri, text, out, format, verified} as JSON.")
    ] = False,
) -> None:
    """Render the QR code label of a passport: the passport URI as a QR code (ISO/IEC 18004,
    error correction M, quiet zone of 4 modules) with the human-readable battery id under it.

    The passport must verify against the trust bundle: one that does not gets no label (exit 1,
    with the first finding) unless --allow-unverified, which warns and prints UNVERIFIED on the
    label. The format follows the --out extension (.svg or .png). Prints the URI on stdout.
    Exit 0 ok, 1 the passport does not verify, 2 bad usage or unreadable input.

    Example: passport label images/A0001.t5t --out A0001.svg --trust pki/trust
    """
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(f"--out {out}: the label format comes from the extension: .svg or .png")
    if out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", source=str(out))
    bundle = load_trust(trust, policy)
    passport = read_image(image)
    report = check_image(passport, bundle)
    if not report.valid and not allow_unverified:
        try:
            report.raise_first()
        except VerificationError as exc:
            raise exc.at(str(image)) from None
    birth = passport.birth.body
    if not isinstance(birth, Birth):  # pragma: no cover - Image guarantees a birth record
        raise InputError("the image does not start with a birth record", source=str(image))
    uri = labels.passport_uri(birth.battery_id, str(birth.passport_id), resolver)
    text = labels.human_readable(birth.battery_id)
    if not report.valid:
        first = report.findings[0]
        where = f"record {first.index}: " if first.index is not None else ""
        finding = _escape(f"{where}{first.message} [{first.rule}]")
        err.print(
            f"[bold red]WARNING: {_escape(str(image))} does NOT verify[/] ({finding}); "
            f"the label is marked {UNVERIFIED}: do not attach it to a battery put on the market",
        )
        text = f"{UNVERIFIED}\n{text}"
    data = labels.render_label(uri, text, fmt, scale=scale)
    write_atomic(out, data, overwrite=force)
    if json_out:
        emit_json(
            {"uri": uri, "text": text, "out": str(out), "format": fmt, "verified": report.valid}
        )
    else:
        typer.echo(uri)


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
