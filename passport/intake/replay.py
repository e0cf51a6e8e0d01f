"""An auditor's replay: re-grade every cell of a results.json from its recorded evidence under
the policy it names, and list where the recorded decision differs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from passport._fileio import read_bytes
from passport.errors import InputError
from passport.grading import Evidence, GradingPolicy, grade
from passport.intake.outputs import RESULTS_FORMAT


@dataclass(slots=True)
class ReplayReport:
    cells: int = 0
    replayed: int = 0
    skipped: int = 0  # cells graded ERROR (nothing to replay)
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def replay(path: str | os.PathLike[str], policy: GradingPolicy) -> ReplayReport:
    data = read_bytes(path, limit=1 << 30)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not JSON: {exc}", source=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT:
        raise InputError(f"not an intake results file (format {RESULTS_FORMAT})", source=str(path))
    report = ReplayReport()
    cells = doc.get("cells")
    if not isinstance(cells, list):
        raise InputError("no cells list", source=str(path))
    for n, cell in enumerate(cells, 1):
        report.cells += 1
        if not isinstance(cell, dict) or not isinstance(cell.get("evidence"), dict):
            raise InputError(f"cell {n}: no evidence", source=str(path))
        if (
            cell.get("grade") == "ERROR"
            and cell.get("error")
            and not cell["evidence"].get("verified")
        ):  # an unreadable image: nothing was graded (a verified one is re-graded below)
            report.skipped += 1
            continue
        named = cell.get("policy") or {}
        if named.get("sha256") != policy.sha256:
            raise InputError(
                f"cell {n} was graded under policy {named.get('id')} v{named.get('version')} "
                f"(sha256 {named.get('sha256')}); this is {policy.id} v{policy.version} "
                f"(sha256 {policy.sha256}): pass that policy file with --policy",
                source=str(path),
            )
        try:
            again = grade(Evidence.from_dict(cell["evidence"]), policy)
        except InputError as exc:
            raise InputError(f"cell {n}: {exc.reason}", source=str(path)) from None
        report.replayed += 1
        if again.grade != cell.get("grade") or list(again.rules) != cell.get("rules"):
            report.mismatches.append({
                "cell_id": cell.get("cell_id"), "recorded": cell.get("grade"),
                "recorded_rules": cell.get("rules"), "replayed": again.grade,
                "replayed_rules": list(again.rules),
            })  # fmt: skip
    return report
