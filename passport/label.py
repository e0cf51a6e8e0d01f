"""The printed label that leads to a battery's passport: a QR code and the id under it.

Why: the EU Battery Regulation 2023/1542 (Art. 77(3)) wants the battery passport reachable
through a QR code printed or engraved on the battery, linked to its unique identifier. The tag
memory holds the signed passport; the label is how a phone or a recycler's scanner finds it
without an NFC reader.

What the code carries (`passport_uri`): a GS1 Digital Link battery id is already an https URI
that a GS1 resolver answers, so it is the payload as it stands. An ISO/IEC 15459 id is only a
string; it becomes a URI under a resolver the operator names (`<resolver>/<percent-encoded id>`).

What is printed (`human_readable`, `render_label`): the QR symbol (ISO/IEC 18004, error
correction level M, never raised, quiet zone of 4 modules) and, under it, the id a person can
read and type: for a GS1 Digital Link the GS1 element string with its Application Identifiers
in parentheses, e.g. "(01) 09506000134352 (21) D00001"; for ISO/IEC 15459 the id itself.
Output is a self-contained SVG (for print shops and vector workflows) or a PNG.
"""

from __future__ import annotations

import io
import re
import unicodedata
import uuid
from collections.abc import Iterable
from typing import Literal
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

import segno
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from passport.errors import InputError
from passport.ids import check_battery_id

__all__ = [
    "ERROR_LEVEL",
    "QUIET_ZONE",
    "LabelFormat",
    "human_readable",
    "passport_uri",
    "qr_matrix",
    "render_label",
]

LabelFormat = Literal["svg", "png"]

#: ISO/IEC 18004 error correction level: M restores ~15 % of the codewords (a scratched label).
ERROR_LEVEL = "M"
#: ISO/IEC 18004 quiet zone around a QR Code symbol, in modules.
QUIET_ZONE = 4

# Legacy GS1 Digital Link 1.0 short names for the qualifiers that follow a GTIN.
_SHORT_NAMES = {"cpv": "22", "lot": "10", "ser": "21"}
_GTIN = re.compile(r"^\d{14}$")
_AI = re.compile(r"^\d{2,4}$")


def passport_uri(battery_id: str, passport_id: str | uuid.UUID, resolver: str | None = None) -> str:
    """The URI a label's QR code carries for the passport of `battery_id`.

    A GS1 Digital Link id (checked, GTIN check digit included) is the URI itself; `resolver`
    is checked but not used for it (the id already names its resolver). An ISO/IEC 15459 id needs
    `resolver`, an https:// base URL: the URI is `<resolver>/<percent-encoded id>`.
    `passport_id` must be the passport's UUID (it is checked, not encoded: the regulation
    links the code to the battery's unique identifier). Raises `InputError` saying why not.
    """
    battery_id = check_battery_id(battery_id)
    _check_passport_id(passport_id)
    base = None if resolver is None else _check_resolver(resolver)
    if battery_id.startswith("https://"):
        return battery_id
    if base is None:
        raise InputError(
            f"battery id {battery_id!r} is an ISO/IEC 15459 id, not a URI: give the resolver "
            "that answers for it (--resolver https://...)"
        )
    return f"{base}/{quote(battery_id, safe='')}"


def human_readable(battery_id: str) -> str:
    """The text printed under the QR code: for a GS1 Digital Link, the GS1 element string
    with AIs in parentheses, every key-qualifier pair of the path in order (e.g.
    "(01) 09506000134352 (21) D00001"); for an ISO/IEC 15459 id, the id itself."""
    battery_id = check_battery_id(battery_id)
    if not battery_id.startswith("https://"):
        return battery_id
    return " ".join(f"({ai}) {value}" for ai, value in _gs1_pairs(battery_id))


def qr_matrix(uri: str) -> tuple[tuple[bool, ...], ...]:
    """The QR Code symbol for `uri` (error correction M, quiet zone included), one row per
    tuple, True for a dark module."""
    qr = _encode(uri)
    return tuple(tuple(bool(m) for m in row) for row in qr.matrix_iter(border=QUIET_ZONE))


def render_label(uri: str, text: str, fmt: LabelFormat, *, scale: int = 8) -> bytes:
    """The label: the QR code of `uri` (each module `scale` pixels; quiet zone of 4 modules)
    with `text` (one line per line of it) printed under it, as SVG or PNG bytes."""
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 100:
        raise InputError(f"scale {scale!r}: a module is 1 to 100 pixels")
    lines = _text_lines(text)
    matrix = qr_matrix(uri)
    if fmt == "svg":
        return _svg(matrix, lines, scale)
    if fmt == "png":
        return _png(matrix, lines, scale)
    raise InputError(f"label format {fmt!r}: choose svg or png")


# ------------------------------------------------------------------------------------ helpers


def _check_passport_id(passport_id: str | uuid.UUID) -> None:
    if isinstance(passport_id, uuid.UUID):
        return
    try:
        uuid.UUID(passport_id)
    except (ValueError, TypeError, AttributeError):
        raise InputError(f"passport id {passport_id!r} is not a UUID") from None


def _check_resolver(resolver: str) -> str:
    base = resolver.strip().rstrip("/")
    why = None
    try:
        parts = urlsplit(base)
    except ValueError:
        parts = None
    if parts is None or not parts.netloc or parts.scheme == "":
        why = "is not a URL"
    elif parts.scheme != "https":
        why = "must be an https:// URL (a scanner follows it over the open internet)"
    elif parts.query or parts.fragment or any(c.isspace() for c in base) or "@" in parts.netloc:
        why = "must be a plain https://host/path base (no query, fragment, credentials)"
    elif parts.hostname is None or not re.fullmatch(r"[A-Za-z0-9.-]+", parts.hostname):
        why = "has no valid host name"
    if why:
        raise InputError(f"resolver {resolver!r} {why}")
    return base


def _gs1_pairs(uri: str) -> list[tuple[str, str]]:
    """(AI, value) pairs of a GS1 Digital Link URI path, from the primary key (01) on."""
    path = urlsplit(uri).path
    segments = path.split("/")[1:]
    for start in range(len(segments) - 1):
        rest = segments[start:]
        if rest[0] == "01" and _GTIN.match(rest[1]) and len(rest) % 2 == 0:
            break
    else:  # check_battery_id accepted it, so this cannot happen
        raise InputError(f"battery id {uri!r} has no /01/<GTIN-14> path")
    pairs: list[tuple[str, str]] = []
    for i in range(0, len(rest), 2):
        key, value = rest[i], unquote(rest[i + 1])
        ai = _SHORT_NAMES.get(key.lower(), key)
        if not _AI.match(ai):
            raise InputError(f"battery id {uri!r}: {key!r} is not a GS1 Application Identifier")
        pairs.append((ai, value))
    return pairs


def _encode(uri: str) -> segno.QRCode:
    if not uri:
        raise InputError("nothing to encode: the URI is empty")
    try:
        # boost_error=False: the level stays M as documented, whatever room the version has.
        return segno.make(uri, error=ERROR_LEVEL.lower(), micro=False, boost_error=False)
    except segno.DataOverflowError:
        raise InputError(f"{len(uri)} characters do not fit a QR Code at level M") from None


def _text_lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()] or [""]
    for line in lines:
        bad = [c for c in line if unicodedata.category(c) in ("Cc", "Cs")]
        if bad:
            raise InputError(f"label text {line!r} holds control characters")
    return [line for line in lines if line] or [""]


def _runs(row: Iterable[bool]) -> list[tuple[int, int]]:
    """(start, length) of each run of dark modules in a row."""
    runs: list[tuple[int, int]] = []
    start = None
    for x, dark in enumerate((*row, False)):
        if dark and start is None:
            start = x
        elif not dark and start is not None:
            runs.append((start, x - start))
            start = None
    return runs


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _svg(matrix: tuple[tuple[bool, ...], ...], lines: list[str], scale: int) -> bytes:
    side = len(matrix) * scale
    # Monospace glyphs are about 0.6 em wide (0.66 leaves room for wider fonts): shrink the
    # type so the widest line fits.
    widest = max(len(line) for line in lines) or 1
    font = min(2.0 * scale, (side - 2 * scale) / (0.66 * widest))
    line_height = 1.25 * font
    height = side + len(lines) * line_height + scale
    path = "".join(f"M{x} {y}h{n}v1h-{n}z" for y, row in enumerate(matrix) for x, n in _runs(row))
    # textLength pins each line's width: fonts differ between renderers, the label must not
    texts = "".join(
        f'<text x="{_num(side / 2)}" y="{_num(side + (i + 0.8) * line_height)}" '
        f'textLength="{_num(min(0.6 * font * len(line), side - 2 * scale))}" '
        f'lengthAdjust="spacingAndGlyphs">{escape(line)}</text>'
        for i, line in enumerate(lines)
    )
    doc = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" '
        f'width="{side}" height="{_num(height)}" viewBox="0 0 {side} {_num(height)}">'
        f"<title>{escape(' '.join(lines))}</title>"
        '<rect width="100%" height="100%" fill="#fff"/>'
        f'<path transform="scale({scale})" fill="#000" shape-rendering="crispEdges" d="{path}"/>'
        f'<g font-family="monospace" font-size="{_num(font)}" text-anchor="middle" '
        f'fill="#000">{texts}</g>'
        "</svg>\n"
    )
    return doc.encode()


def _png(matrix: tuple[tuple[bool, ...], ...], lines: list[str], scale: int) -> bytes:
    side = len(matrix) * scale
    qr = PILImage.new("L", (len(matrix), len(matrix)), 255)
    qr.putdata([0 if dark else 255 for row in matrix for dark in row])
    qr = qr.resize((side, side), PILImage.Resampling.NEAREST)

    size = 2.0 * scale
    font = ImageFont.load_default(size)
    widest = max(_text_width(font, line) for line in lines)
    if widest > side - 2 * scale:  # shrink to fit, but keep it legible
        size = max(10.0, size * (side - 2 * scale) / widest)
        font = ImageFont.load_default(size)
        widest = max(_text_width(font, line) for line in lines)
    width = max(side, int(widest) + 2 * scale)
    line_height = int(size * 1.3) + 1
    height = side + len(lines) * line_height + scale

    canvas = PILImage.new("L", (width, height), 255)
    canvas.paste(qr, ((width - side) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        # Centred by measuring, not by anchor: the bitmap fallback font has no anchors.
        x = (width - _text_width(font, line)) / 2
        draw.text((x, side + i * line_height), line, fill=0, font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _text_width(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, line: str) -> float:
    left, _, right, _ = font.getbbox(line)
    return float(right - left)
