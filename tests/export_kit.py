"""Shared by the export tests: a small demo world to export from, and the official schemas
cut to what one tier exports."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from passport.demo import run_demo
from passport.image import Image
from passport.records import Birth, Entry, Kind, SignedRecord, Values
from passport.registry import Registry
from passport.trust import keys
from passport.trust.bundle import TrustBundle
from passport.trust.store import load_certificates, thumbprint
from passport.writer import read_image

CELL = "01-09506000134352-21-D00001.t5t"
OTHER = "01-09506000134352-21-D00002.t5t"


def build_world(out: Path) -> dict[str, list[str]]:
    """A small demo under `out` (a PKI, signed data sheets, cells with history, a registry);
    returns its planted scenarios (name -> image names)."""
    report = run_demo(out, cells=100, years=2, seed=3)
    assert report.as_expected
    return report.scenarios


def trust(world: Path) -> TrustBundle:
    return TrustBundle.load(world / "trust")


def image(world: Path, name: str = CELL) -> Image:
    return read_image(world / "images" / name)


def sheet_raw(world: Path, tag: Image) -> bytes:
    """The signed data sheet the tag's birth record names, from the world's registry."""
    birth = tag.birth.body
    assert isinstance(birth, Birth)
    raw = Registry(f"sqlite:///{world / 'passport.db'}").datasheet(birth.datasheet_sha256)
    assert raw is not None
    return raw


def history_image(world: Path, values: Values, kind: Kind = Kind.MEASUREMENT) -> Image:
    """OTHER's tag with one more entry: signed by the cell (telemetry, status) or the tester."""
    path = world / "images" / OTHER
    tag = read_image(path)
    cell = keys.load_private(path.with_name(path.stem + ".cell.pem"))
    seq, prev = tag.next_link()
    last = max(r.body.time for r in tag.records[1:])  # type: ignore[union-attr]
    if kind in (Kind.TELEMETRY, Kind.STATUS):
        record = SignedRecord.sign(Entry(kind, seq, prev, last + 60, values), cell)
    else:
        key = keys.load_private(world / "keys" / "tester.key.pem")
        cert = load_certificates(world / "keys" / "tester.cert.pem")[0]
        record = SignedRecord.sign(Entry(kind, seq, prev, last + 60, values), key,
                                   x5t=thumbprint(cert))  # fmt: skip
    return tag.append(record, cell_key=cell)[0]


def paths(doc: Any, prefix: str = "") -> set[str]:
    """Every dotted path of a JSON object."""
    out: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            path = f"{prefix}.{key}" if prefix else key
            out.add(path)
            out |= paths(value, path)
    return out


def dig(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        node = node[part]
    return node


def project(schema: dict[str, Any], exported: set[str]) -> dict[str, Any]:
    """The official schema cut to the attributes a tier exports: objects above an exported
    attribute keep only properties on the way to one (and require only those); an exported
    attribute is checked against its full sub-schema, required members included."""
    components = schema["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = components[node["$ref"].split("/")[-1]]
        if "allOf" in node:
            merged: dict[str, Any] = {}
            for part in node["allOf"]:
                merged.update(resolve(part))
            node = merged
        return copy.deepcopy(node)

    def walk(node: dict[str, Any], path: str) -> dict[str, Any]:
        if path in exported:
            return node  # the whole attribute, as published
        node = resolve(node)
        props = node.get("properties", {})
        kept = {}
        for key, sub in props.items():
            sub_path = f"{path}.{key}" if path else key
            if any(p == sub_path or p.startswith(sub_path + ".") for p in exported):
                kept[key] = walk(sub, sub_path)
        node["properties"] = kept
        node["required"] = [r for r in node.get("required", []) if r in kept]
        if not node["required"]:
            del node["required"]
        return node

    root = walk({k: v for k, v in schema.items() if k != "components"}, "")
    root["components"] = schema["components"]
    return root
