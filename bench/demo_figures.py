"""Summary figures of the real pulse-test data that the demo carries over (it runs on machines
without ../shared, so it synthesises cells from these figures: numbers, never rows).

    python bench/demo_figures.py [--data CSV]

Prints one JSON object, per design: chemistry, rated capacity, the retired cells' SoH
distribution (5th/50th/95th percentile over cells), the rest voltage U1 (same percentiles over
rows), the ohmic resistance R0 = (U2 - U1) / I of the 0.5 C step at the longest pulse width
as a line in lost capacity, R0 = r0_new * (1 + growth * (1 - SoH)), fitted over cells (median
over each cell's states of charge), the cell-to-cell spread of log R0 around that line, and
the voltage resolution. `passport/demo/figures.py` holds the output (rounded); a test checks
that it still matches this script when ../shared is there.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "soh" / "pulse_features_dev.csv"


def figures(path: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows[row["design"]].append(row)
    out: dict[str, dict[str, Any]] = {}
    for design, items in sorted(rows.items()):
        rated = float(items[0]["rated_ah"])
        width = max(float(r["pulse_width_ms"]) for r in items)
        per_cell: dict[str, list[float]] = defaultdict(list)
        soh_of: dict[str, float] = {}
        decimals = 0
        for r in items:
            soh_of[r["cell_id"]] = float(r["soh"])
            decimals = max(decimals, len(r["U2"].split(".")[-1]) if "." in r["U2"] else 0)
            if float(r["pulse_width_ms"]) == width and r["U1"] and r["U2"]:
                per_cell[r["cell_id"]].append((float(r["U2"]) - float(r["U1"])) / (0.5 * rated))
        cells = sorted(per_cell)
        soh = np.array([soh_of[c] for c in cells])
        r0 = np.array([float(np.median(per_cell[c])) for c in cells])
        lost = 1.0 - soh
        A = np.column_stack([np.ones_like(lost), lost])
        (alpha, beta), *_ = np.linalg.lstsq(A, r0, rcond=None)
        residual = np.log(r0 / (alpha + beta * lost))
        u1 = np.array([float(r["U1"]) for r in items if r["U1"]])
        all_soh = np.array(list(soh_of.values()))
        out[design] = {
            "chemistry": items[0]["chemistry"],
            "rated_ah": rated,
            "cells": len(soh_of),
            "soh_p05_p50_p95": [round(float(x), 3) for x in np.percentile(all_soh, [5, 50, 95])],
            "u1_v_p05_p50_p95": [round(float(x), 3) for x in np.percentile(u1, [5, 50, 95])],
            "r0_new_mohm": round(float(alpha) * 1e3, 3),
            "r0_growth_per_loss": round(float(beta / alpha), 2),
            "r0_spread_log": round(float(np.std(residual)), 3),
            "r0_width_ms": width,
            "resolution_mv": round(10.0 ** (3 - decimals), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    print(json.dumps({"source": str(args.data), "designs": figures(args.data)}, indent=2))


if __name__ == "__main__":
    main()
