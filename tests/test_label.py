"""The QR code label (`passport.label`, `passport label`): the URI it carries, the text under it,
and that a real decoder reads back exactly that URI from the rendered PNG and SVG."""

from __future__ import annotations

import io
import json
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import segno
import zxingcpp
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image as PILImage
from typer.testing import CliRunner, Result

from cli.app import app
from passport.errors import InputError
from passport.image import Image
from passport.label import human_readable, passport_uri, qr_matrix, render_label
from tests.factories import actor, birth_body, cell_key, passport, pki, sign_birth

PID = "6f1c2a44-0d3e-4b59-9a7e-2f5b8c1d0e42"
GS1 = "https://id.gs1.org/01/09506000134352/21/D00001"
SVG_NS = "{http://www.w3.org/2000/svg}"
RUNNER = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1", "PASSPORT_TRUST": None,
                        "PASSPORT_DEBUG": None})  # fmt: skip


# --------------------------------------------------------------------------------------------
# Helpers


def decode(image: PILImage.Image) -> list[zxingcpp.Barcode]:
    """Every QR code a real decoder finds, its text exactly as encoded (no HRI rewriting)."""
    found = zxingcpp.read_barcodes(image, text_mode=zxingcpp.TextMode.Plain)
    assert all(b.format == zxingcpp.BarcodeFormat.QRCode for b in found)
    return found


def svg_modules(svg: bytes) -> tuple[set[tuple[int, int]], int, list[str]]:
    """(dark modules of the path, scale, lines of <text>) of a label SVG, parsed as XML."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    paths = root.findall(f".//{SVG_NS}path")
    assert len(paths) == 1
    scale_match = re.fullmatch(r"scale\((\d+)\)", paths[0].get("transform", ""))
    assert scale_match
    dark: set[tuple[int, int]] = set()
    d = paths[0].get("d", "")
    rects = re.findall(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z", d)
    assert "".join(f"M{x} {y}h{w}v1h-{w2}z" for x, y, w, w2 in rects) == d  # nothing else
    for x, y, w, w2 in rects:
        assert w == w2
        dark.update((int(x) + i, int(y)) for i in range(int(w)))
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")]
    return dark, int(scale_match.group(1)), texts


def raster(dark: set[tuple[int, int]], modules: int, scale: int) -> PILImage.Image:
    """The modules painted black on white, `scale` pixels each."""
    pixels = np.full((modules, modules), 255, dtype=np.uint8)
    for x, y in dark:
        pixels[y, x] = 0
    return PILImage.fromarray(pixels).resize(
        (modules * scale, modules * scale), PILImage.Resampling.NEAREST
    )


def segno_dark(uri: str) -> tuple[set[tuple[int, int]], int]:
    """The reference symbol: segno's own matrix (level M, quiet zone 4) for `uri`."""
    qr = segno.make(uri, error="m", micro=False, boost_error=False)
    rows = list(qr.matrix_iter(border=4))
    return {(x, y) for y, row in enumerate(rows) for x, v in enumerate(row) if v}, len(rows)


def run(*args: str | Path) -> Result:
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


# --------------------------------------------------------------------------------------------
# passport_uri


@pytest.mark.parametrize(
    ("battery_id", "resolver", "expected"),
    [
        pytest.param(GS1, None, GS1, id="gs1-dl-is-its-own-uri"),
        pytest.param(GS1, "https://dpp.example.com", GS1, id="gs1-dl-ignores-resolver"),
        pytest.param(
            "https://id.gs1.org/01/09506000134352/10/LOT7/21/D00001", None,
            "https://id.gs1.org/01/09506000134352/10/LOT7/21/D00001", id="gs1-dl-with-lot",
        ),
        pytest.param(
            "ACME.CELL-0001", "https://dpp.example.com/b",
            "https://dpp.example.com/b/ACME.CELL-0001", id="iso15459-under-resolver",
        ),
        pytest.param(
            "ACME.CELL-0001", "https://dpp.example.com/b/",
            "https://dpp.example.com/b/ACME.CELL-0001", id="iso15459-resolver-trailing-slash",
        ),
        pytest.param(
            "ACME.CELL-0001", "https://dpp.example.com:8443",
            "https://dpp.example.com:8443/ACME.CELL-0001", id="iso15459-resolver-with-port",
        ),
    ],
)  # fmt: skip
def test_passport_uri(battery_id: str, resolver: str | None, expected: str) -> None:
    assert passport_uri(battery_id, PID, resolver) == expected


def test_passport_uri_takes_a_uuid_object() -> None:
    assert passport_uri(GS1, uuid.UUID(PID)) == GS1


@pytest.mark.parametrize(
    ("battery_id", "passport_id", "resolver", "message"),
    [
        pytest.param(
            "https://id.gs1.org/01/09506000134353/21/D00001", PID, None, "wrong check digit",
            id="gs1-wrong-check-digit",
        ),
        pytest.param("https://id.gs1.org/21/D00001", PID, None, "GS1 Digital Link",
                     id="gs1-no-gtin"),
        pytest.param("ACME.CELL-0001", PID, None, "resolver", id="iso15459-without-resolver"),
        pytest.param("ACME.CELL-0001", PID, "http://dpp.example.com", "https://",
                     id="resolver-http"),
        pytest.param(GS1, PID, "http://dpp.example.com", "https://", id="resolver-http-gs1"),
        pytest.param("ACME.CELL-0001", PID, "dpp.example.com", "not a URL",
                     id="resolver-not-a-url"),
        pytest.param("ACME.CELL-0001", PID, "https://", "not a URL", id="resolver-no-host"),
        pytest.param("ACME.CELL-0001", PID, "https://dpp.example.com/?q=1", "query",
                     id="resolver-with-query"),
        pytest.param("ACME.CELL-0001", PID, "https://user@dpp.example.com", "credentials",
                     id="resolver-with-credentials"),
        pytest.param("acme cell", PID, "https://dpp.example.com", "neither", id="bad-id"),
        pytest.param(GS1, "not-a-uuid", None, "not a UUID", id="bad-passport-id"),
    ],
)  # fmt: skip
def test_passport_uri_refuses(
    battery_id: str, passport_id: str, resolver: str | None, message: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        passport_uri(battery_id, passport_id, resolver)


# --------------------------------------------------------------------------------------------
# human_readable


@pytest.mark.parametrize(
    ("battery_id", "expected"),
    [
        pytest.param(GS1, "(01) 09506000134352 (21) D00001", id="gtin-serial"),
        pytest.param(
            "https://id.gs1.org/01/09506000134352/10/LOT7/21/D00001",
            "(01) 09506000134352 (10) LOT7 (21) D00001", id="gtin-lot-serial",
        ),
        pytest.param(
            "https://id.gs1.org/01/09506000134352", "(01) 09506000134352", id="gtin-only",
        ),
        pytest.param(
            "https://example.com/dpp/cells/01/09506000134352/22/2A/21/X-1",
            "(01) 09506000134352 (22) 2A (21) X-1", id="path-prefix-and-cpv",
        ),
        pytest.param(
            "https://id.gs1.org/01/09506000134352/10/L%2F7/21/D00001",
            "(01) 09506000134352 (10) L/7 (21) D00001", id="percent-decoded",
        ),
        pytest.param(
            "https://id.gs1.org/01/09506000134352/ser/D00001",
            "(01) 09506000134352 (21) D00001", id="legacy-short-name",
        ),
        pytest.param("ACME.CELL-0001", "ACME.CELL-0001", id="iso15459-as-is"),
    ],
)  # fmt: skip
def test_human_readable(battery_id: str, expected: str) -> None:
    assert human_readable(battery_id) == expected


def test_human_readable_refuses_an_unknown_key() -> None:
    with pytest.raises(InputError, match="not a GS1 Application Identifier"):
        human_readable("https://id.gs1.org/01/09506000134352/xyz/1")


# --------------------------------------------------------------------------------------------
# render_label


URIS = [
    pytest.param(GS1, id="gs1-dl"),
    pytest.param("https://id.gs1.org/01/09506000134352/10/L%2F7/21/D00001", id="percent"),
    pytest.param("https://dpp.example.com/b/ACME.CELL-0001", id="iso15459"),
    pytest.param("https://dpp.example.com/" + "A" * 300, id="long"),
]


@pytest.mark.parametrize("uri", URIS)
@pytest.mark.parametrize("scale", [pytest.param(3, id="scale3"), pytest.param(8, id="scale8")])
def test_png_decodes_to_the_exact_uri(uri: str, scale: int) -> None:
    png = render_label(uri, "(01) 09506000134352 (21) D00001", "png", scale=scale)
    image = PILImage.open(io.BytesIO(png))
    assert image.format == "PNG"
    found = decode(image)
    assert [b.text for b in found] == [uri]
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    assert found[0].bytes == uri.encode()
    assert found[0].ec_level == "M"


def test_png_has_the_quiet_zone_and_text_under_the_code() -> None:
    scale = 4
    png = render_label(GS1, "(01) 09506000134352 (21) D00001", "png", scale=scale)
    pixels = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"))
    dark, modules = segno_dark(GS1)
    side = modules * scale
    assert pixels.shape[0] > side  # room for the text
    left = (pixels.shape[1] - side) // 2
    code = pixels[:side, left : left + side]
    painted = {(x, y) for y in range(modules) for x in range(modules)
               if code[y * scale + scale // 2, x * scale + scale // 2] < 128}  # fmt: skip
    assert painted == dark
    quiet = 4 * scale
    assert (code[:quiet] == 255).all()
    assert (code[-quiet:] == 255).all()
    assert (code[:, :quiet] == 255).all()
    assert (code[:, -quiet:] == 255).all()
    assert (pixels[side:] < 128).any()  # the text is drawn below the code


@pytest.mark.parametrize("uri", URIS)
def test_svg_holds_exactly_the_symbol_and_the_text(uri: str) -> None:
    svg = render_label(uri, "(01) 09506000134352 (21) D00001", "svg", scale=5)
    dark, scale, texts = svg_modules(svg)
    expected, modules = segno_dark(uri)
    assert scale == 5
    assert dark == expected
    assert texts == ["(01) 09506000134352 (21) D00001"]
    # and what it draws is readable: rasterise the path and decode it
    found = decode(raster(dark, modules, scale))
    assert [b.text for b in found] == [uri]
    assert found[0].ec_level == "M"
    # quiet zone: no module within 4 of the edge
    assert all(4 <= x < modules - 4 and 4 <= y < modules - 4 for x, y in dark)


def test_svg_is_self_contained_and_escapes_the_text() -> None:
    svg = render_label(GS1, 'A<B & "C"\nUNVERIFIED', "svg")
    assert b"<B &" not in svg
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert not [el for el in root.iter() if el.tag in (f"{SVG_NS}image", f"{SVG_NS}use")]
    assert b"href" not in svg
    _, _, texts = svg_modules(svg)
    assert texts == ['A<B & "C"', "UNVERIFIED"]
    width, height = float(root.get("width", "0")), float(root.get("height", "0"))
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert height > width  # the text sits under the square code


def test_qr_matrix_matches_segno_at_level_m() -> None:
    dark, modules = segno_dark(GS1)
    matrix = qr_matrix(GS1)
    assert len(matrix) == modules
    assert {(x, y) for y, row in enumerate(matrix) for x, v in enumerate(row) if v} == dark


@pytest.mark.parametrize(
    ("uri", "text", "fmt", "scale", "message"),
    [
        pytest.param(GS1, "x", "pdf", 8, "svg or png", id="unknown-format"),
        pytest.param(GS1, "x", "svg", 0, "scale", id="scale-zero"),
        pytest.param(GS1, "x", "png", 101, "scale", id="scale-huge"),
        pytest.param("", "x", "svg", 8, "empty", id="empty-uri"),
        pytest.param("https://x.example/" + "a" * 3000, "x", "svg", 8, "do not fit",
                     id="too-long"),
        pytest.param(GS1, "bell\x07", "svg", 8, "control", id="control-char"),
    ],
)  # fmt: skip
def test_render_label_refuses(uri: str, text: str, fmt: str, scale: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        render_label(uri, text, fmt, scale=scale)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def trust_dir() -> Path:
    actor("ACME OEM")  # its certificate lands in the test PKI's trust directory
    return pki().trust_dir


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "cell.t5t"
    path.write_bytes(Image.create(passport().birth).to_bytes())
    return path


@pytest.fixture
def forged(tmp_path: Path) -> Path:
    """A birth record signed with a key other than the one its certificate certifies."""
    birth = sign_birth(birth_body(cell_key(2)), key=ec.generate_private_key(ec.SECP256R1()))
    path = tmp_path / "forged.t5t"
    path.write_bytes(Image.create(birth).to_bytes())
    return path


@pytest.mark.parametrize("ext", ["svg", "png", "SVG"])
def test_cli_happy_path(tmp_path: Path, good: Path, trust_dir: Path, ext: str) -> None:
    out = tmp_path / f"label.{ext}"
    result = run("label", good, "--out", out, "--trust", trust_dir)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "https://id.gs1.org/01/09506000134352/21/A0001\n"
    data = out.read_bytes()
    if ext.lower() == "png":
        assert [b.text for b in decode(PILImage.open(io.BytesIO(data)))] == [
            "https://id.gs1.org/01/09506000134352/21/A0001"
        ]
    else:
        dark, _, texts = svg_modules(data)
        assert dark == segno_dark("https://id.gs1.org/01/09506000134352/21/A0001")[0]
        assert texts == ["(01) 09506000134352 (21) A0001"]


def test_cli_json_and_trust_from_env(tmp_path: Path, good: Path, trust_dir: Path) -> None:
    out = tmp_path / "label.svg"
    result = RUNNER.invoke(
        app, ["label", str(good), "--out", str(out), "--json"],
        env={"PASSPORT_TRUST": str(trust_dir)},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "uri": "https://id.gs1.org/01/09506000134352/21/A0001",
        "text": "(01) 09506000134352 (21) A0001",
        "out": str(out),
        "format": "svg",
        "verified": True,
    }
    assert out.exists()


def test_cli_iso15459_needs_a_resolver(tmp_path: Path, trust_dir: Path) -> None:
    image = tmp_path / "iso.t5t"
    image.write_bytes(Image.create(passport(3, battery_id="ACME.CELL-0003").birth).to_bytes())
    out = tmp_path / "iso.png"
    refused = run("label", image, "--out", out, "--trust", trust_dir)
    assert refused.exit_code == 2
    assert "--resolver" in refused.stderr
    assert not out.exists()
    result = run("label", image, "--out", out, "--trust", trust_dir,
                 "--resolver", "https://dpp.example.com/b")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "https://dpp.example.com/b/ACME.CELL-0003\n"
    assert [b.text for b in decode(PILImage.open(out))] == [
        "https://dpp.example.com/b/ACME.CELL-0003"
    ]


def test_cli_unverified_gets_no_label(tmp_path: Path, forged: Path, trust_dir: Path) -> None:
    out = tmp_path / "label.svg"
    result = run("label", forged, "--out", out, "--trust", trust_dir)
    assert result.exit_code == 1
    assert "chain.birth-signature" in result.stderr
    assert str(forged) in result.stderr
    assert result.stdout == ""
    assert not out.exists()
    assert list(tmp_path.glob(".label.svg.*")) == []


def test_cli_image_that_does_not_decode_is_a_failed_check(tmp_path: Path, trust_dir: Path) -> None:
    garbage = tmp_path / "garbage.t5t"
    garbage.write_bytes(b"\x00" * 64)
    out = tmp_path / "label.svg"
    result = run("label", garbage, "--out", out, "--trust", trust_dir)
    assert result.exit_code == 1  # like `verify`: bytes that do not decode fail a check
    assert str(garbage) in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("ext", ["svg", "png"])
def test_cli_allow_unverified(tmp_path: Path, forged: Path, trust_dir: Path, ext: str) -> None:
    out = tmp_path / f"label.{ext}"
    result = run("label", forged, "--out", out, "--trust", trust_dir, "--allow-unverified",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "WARNING" in result.stderr
    assert "does NOT verify" in result.stderr
    assert "chain.birth-signature" in result.stderr
    report = json.loads(result.stdout)
    assert report["verified"] is False
    assert report["text"] == "UNVERIFIED\n(01) 09506000134352 (21) A0001"
    if ext == "svg":
        _, _, texts = svg_modules(out.read_bytes())
        assert texts == ["UNVERIFIED", "(01) 09506000134352 (21) A0001"]
    else:
        assert [b.text for b in decode(PILImage.open(out))] == [report["uri"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--out", "label.pdf"], "extension", id="unknown-extension"),
        pytest.param(["--out", "label"], "extension", id="no-extension"),
        pytest.param(["--out", "label.svg", "--resolver", "http://x.example"], "https://",
                     id="bad-resolver-even-for-gs1"),
        pytest.param(["--out", "label.svg", "--resolver", "https://x.example"], None,
                     id="gs1-ignores-a-good-resolver"),
    ],
)  # fmt: skip
def test_cli_usage(
    tmp_path: Path, good: Path, trust_dir: Path, args: list[str], message: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = run("label", good, "--trust", trust_dir, *args)
    if message is None:
        assert result.exit_code == 0, result.stderr
        return
    assert result.exit_code == 2
    assert message in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.t5t"]


def test_cli_existing_output_needs_force(tmp_path: Path, good: Path, trust_dir: Path) -> None:
    out = tmp_path / "label.svg"
    out.write_bytes(b"keep me")
    result = run("label", good, "--out", out, "--trust", trust_dir)
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert out.read_bytes() == b"keep me"
    forced = run("label", good, "--out", out, "--trust", trust_dir, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert out.read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize(
    ("image", "trust", "message"),
    [
        pytest.param("missing.t5t", True, "missing.t5t: no such file", id="missing-image"),
        pytest.param("cell.t5t", False, "--trust", id="no-trust-bundle"),
    ],
)  # fmt: skip
def test_cli_unreadable_input(
    tmp_path: Path, good: Path, trust_dir: Path, image: str, trust: bool, message: str
) -> None:
    out = tmp_path / "label.svg"
    args: list[str | Path] = ["label", tmp_path / image, "--out", out]
    if trust:
        args += ["--trust", trust_dir]
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not out.exists()


def test_cli_help_has_an_example() -> None:
    result = run("label", "--help")
    assert result.exit_code == 0
    assert "Example: passport label" in result.stdout
