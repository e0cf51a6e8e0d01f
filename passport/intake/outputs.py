"""The run's outputs, each written atomically: results.csv (one row per cell, for spreadsheets),
results.json (everything, including each cell's evidence for a replay), report.html and
policy.toml (the exact grading policy the run used, which `passport audit grades` replays with:
the shipped default changes between releases, and a replay needs the file whose SHA-256 the
results name)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from passport._fileio import write_atomic
from passport.intake.report import render_report

RESULT_COLUMNS = (
    "cell_id", "image", "verified", "soh", "soh_sigma", "claimed_soh", "grade", "reasons",
    "passport_id", "design", "outcome", "rules", "also", "group", "claim_z", "claim_flagged",
    "posterior_soh", "posterior_sigma", "resistance_mohm", "resistance_growth",
    "intake_entry", "output_image", "test_line", "test_rows", "test_far_rows",
    "test_error", "error", "note",
)  # fmt: skip
RESULTS_FORMAT = "battery-passport/intake-results"
RESULTS_VERSION = 1


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return " | ".join(str(v) for v in value)
    return str(value)


def results_csv(cells: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for cell in cells:
        row = [_cell(cell.get(c)) for c in RESULT_COLUMNS]
        row[RESULT_COLUMNS.index("rules")] = ";".join(cell.get("rules") or [])
        writer.writerow(row)
    return out.getvalue()


POLICY_FILE = "policy.toml"  # beside results.json


def write_outputs(
    out_dir: Path, cells: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], policy: bytes
) -> dict[str, str]:
    finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    paths = {
        "results_csv": out_dir / "results.csv",
        "results_json": out_dir / "results.json",
        "report_html": out_dir / "report.html",
        "policy": out_dir / POLICY_FILE,
    }
    full = {**summary, "outputs": {k: str(v) for k, v in paths.items()}, "finished": finished}
    write_atomic(paths["policy"], policy)
    write_atomic(paths["results_csv"], results_csv(cells).encode("utf-8"))
    document = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "summary": full,
                "cells": list(cells)}  # fmt: skip
    write_atomic(
        paths["results_json"],
        json.dumps(document, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8"),
    )
    write_atomic(paths["report_html"], render_report(cells, full).encode("utf-8"))
    return {k: str(v) for k, v in paths.items()}
