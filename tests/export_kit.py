"""Shared by the export tests: the official schemas cut to what one tier exports."""

from __future__ import annotations

import copy
from typing import Any


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
