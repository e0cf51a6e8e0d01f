"""`bench/soh_speed.py` end to end on a small batch: the trace path's extractor must give back
exactly the voltages each synthetic trace was built from (the bench exits otherwise), every
cell must be estimated, and the output must carry the fields the README's speed table reads."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = ("LFP-20Ah", "LMO-10Ah")  # four pulse widths and one: 21- and 11-segment traces


def test_speed_bench_runs_both_paths_on_a_small_batch(tmp_path: Path) -> None:
    with open(shared_path("data", "soh", "pulse_features_dev.csv"), newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["design"] in DESIGNS]
        header = list(rows[0])
    data = tmp_path / "dev.csv"
    with open(data, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soh_speed.py"), "--data", str(data),
         "--cells", "3000", "--chunk", "1024", "--repeat", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cells"] == 3000
    assert out["repeat"] == 2
    assert out["samples_per_cell"] >= 100
    assert out["estimated_share"] == 1.0  # every synthetic cell inside its design's window
    assert 0 < out["trace_extract_seconds"] < out["traces_seconds"]
    assert len(out["runs_cells_per_s_traces"]) == 2
    # the fastest trace run is reported, with its own ratio
    best = out["runs_cells_per_s_traces"].index(out["cells_per_s_traces"])
    assert out["cells_per_s_traces"] == max(out["runs_cells_per_s_traces"])
    assert out["ratio_to_memory_pass"] == out["runs_ratio_to_memory_pass"][best]
    assert set(out["targets"]) == {
        "cells_per_s_features_ge_2M", "cells_per_s_traces_ge_200k", "ratio_le_10",
    }  # fmt: skip
    assert out["host"]["machine"]
    assert out["model_fit_seconds"] > 0
