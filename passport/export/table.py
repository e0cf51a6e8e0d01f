"""An export format is a table of attributes: where each goes, who may read it, where its value
comes from, and how its unit converts. `fill` builds a document from a table for one tier."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from passport.export.context import Context
from passport.export.tiers import Access, Tier

Getter = Callable[[Context], Any]


@dataclass(frozen=True, slots=True)
class Attribute:
    path: str
    tier: Access  # the Annex XIII point: who may read it (tiers.py)
    annex: str  # where Regulation 2023/1542 asks for it
    source: str
    conversion: str  # stored unit -> schema unit, in words
    get: Getter


def sheet_value(key: str) -> Getter:
    """A data-sheet field by dotted key (`recycled_content_pct.cobalt`); None when absent."""

    def get(ctx: Context) -> Any:
        node: Any = ctx.sheet
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    return get


def fill(
    doc: dict[str, Any], attributes: Iterable[Attribute], ctx: Context, tier: Tier
) -> list[str]:
    """Set every attribute `tier` may read into `doc` at its path; return the paths left out
    for want of a value (nothing is made up; a data-sheet field of the wrong shape gives none)."""
    missing: list[str] = []
    for attr in attributes:
        if not tier.sees(attr.tier):
            continue
        try:
            value = attr.get(ctx)
        except (KeyError, TypeError, ValueError, AttributeError):
            value = None  # a data-sheet field of the wrong shape: no value, listed as missing
        if value is None:
            missing.append(attr.path)
            continue
        node = doc
        *parents, leaf = attr.path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return missing
