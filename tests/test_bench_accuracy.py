"""`bench/soh_accuracy.py --holdout`: the maintainers' check on held-back cells. Its figures must
be those of the product path (`passport soh fit` on the training file, `passport soh estimate`
on the held-back one), and a cell found in both files must be reported."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from typer.testing import CliRunner

from cli.app import app
from passport.soh import physical_cell
from passport.soh.features import features
from passport.soh.io import read_all
from passport.soh.model import Z90

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = ("LMO-10Ah", "NMC-21Ah")  # one width each: small and quick to fit


def _split(tmp: Path, *, leak: int = 0) -> tuple[Path, Path]:
    """Two designs of the dev file, a third of each design's physical cells held back; with
    `leak`, that many held-back cells are also left in the training file."""
    with open(shared_path("data", "soh", "pulse_features_dev.csv"), newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["design"] in DESIGNS]
    header = list(rows[0])
    held: set[tuple[str, str]] = set()
    leaked: set[tuple[str, str]] = set()
    rng = np.random.default_rng(0)
    for d in DESIGNS:
        cells = sorted({physical_cell(d, r["cell_id"]) for r in rows if r["design"] == d})
        pick = rng.permutation(cells)[: len(cells) // 3].tolist()
        held |= {(d, c) for c in pick}
        if d == DESIGNS[0]:
            leaked |= {(d, c) for c in pick[:leak]}
    paths = tmp / "train.csv", tmp / "held.csv"
    for path, want_held in zip(paths, (False, True), strict=True):
        with open(path, "w", newline="") as fh:
            out = csv.DictWriter(fh, header)
            out.writeheader()
            for r in rows:
                key = (r["design"], physical_cell(r["design"], r["cell_id"]))
                if (key in held) == want_held or (not want_held and key in leaked):
                    out.writerow(r)
    return paths


def _bench(train: Path, held: Path) -> dict:  # type: ignore[type-arg]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soh_accuracy.py"), "--data", str(train),
         "--holdout", str(held)],
        capture_output=True, text=True, env=env, check=True, timeout=600,
    )  # fmt: skip
    result: dict = json.loads(done.stdout)  # type: ignore[type-arg]
    return result


def test_holdout_figures_are_those_of_the_cli_on_the_held_back_file(tmp_path: Path) -> None:
    train, held = _split(tmp_path)
    got = _bench(train, held)
    runner = CliRunner()
    model, out = tmp_path / "model.json", tmp_path / "estimates.csv"
    assert runner.invoke(app, ["soh", "fit", str(train), "--out", str(model)]).exit_code == 0
    done = runner.invoke(
        app, ["soh", "estimate", "--model", str(model), str(held), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    with open(held, newline="") as fh:
        truth = [(r["design"], float(r["soh"])) for r in csv.DictReader(fh)]
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(truth) == got["rows"]
    assert got["cells_also_in_training"] == 0
    assert got["error_rows"] == {}
    assert got["designs_without_estimates"] == []
    # the host the figures came from: numpy's SIMD target for float32 exp, as numpy names it
    assert got["host"]["numpy_exp_float32_simd"] in {
        "baseline",
        "X86_V2",
        "X86_V3",
        "X86_V4",
        "AVX512_SKX",
        "AVX2",
        "AVX512F",
        "NEON",
        "ASIMD",
        "VSX",
        "VX",
    }
    assert all(got["host"][key] for key in ("cpu", "cpus", "machine", "python", "numpy"))
    for d in DESIGNS:
        mine = [
            (float(r["soh"]), float(r["soh_sigma"]), t)
            for r, (dd, t) in zip(rows, truth, strict=True)
            if dd == d
        ]
        est, sigma, true = (np.array(x) for x in zip(*mine, strict=True))
        err = np.abs(est - true) * 100
        figures = got["per_design"][d]["model"]
        # the CLI writes 6 decimals; the bench scores the float32 fast path's own numbers
        assert figures["mae"] == pytest.approx(err.mean(), abs=2e-3)
        assert figures["p95"] == pytest.approx(np.quantile(err, 0.95), abs=2e-3)
        assert figures["coverage_90"] == pytest.approx(np.mean(err <= Z90 * sigma * 100), abs=2e-3)
        assert got["per_design"][d]["cells"] == len({physical_cell(d, c) for c in _cells(held, d)})
    # the rows it counts as far from training are those the CLI marks unlike_training
    marked = np.array([r["unlike_training"] == "1" for r in rows])
    assert got["far_from_training"]["share"] == pytest.approx(marked.mean(), abs=1.5 / len(rows))
    # `passport soh evaluate` (the recycler's own check) gives the same figures
    done = runner.invoke(app, ["soh", "evaluate", "--model", str(model), str(held), "--json"])
    assert done.exit_code == 0, done.output
    evaluated = json.loads(done.stdout)["designs"]
    for d in DESIGNS:
        for key in ("mae", "p95", "coverage_90", "mean_sigma"):
            assert evaluated[d][key] == pytest.approx(got["per_design"][d]["model"][key], abs=6e-3)
        assert evaluated[d]["cells"] == got["per_design"][d]["cells"]
    mean = np.mean([got["per_design"][d]["model"]["mae"] for d in DESIGNS])
    assert got["mean_over_designs"]["model"]["mae"] == pytest.approx(mean, abs=1e-3)
    # the most novel tenth: held rows farthest from their 5th-nearest training row
    tr, te = read_all(train), read_all(held)
    for d in DESIGNS:
        a, b = tr.design == d, te.design == d
        F_tr = features(tr.U[a], tr.rated_ah[a], tr.width_ms[a])
        F_te = features(te.U[b], te.rated_ah[b], te.width_ms[b])
        keep = np.isfinite(F_tr).all(0) & np.isfinite(F_te).all(0)
        mu, sd = F_tr[:, keep].mean(0), F_tr[:, keep].std(0)
        sd[sd == 0] = 1.0
        A, B = (F_tr[:, keep] - mu) / sd, (F_te[:, keep] - mu) / sd
        fifth = np.array([np.sort(np.linalg.norm(A - row, axis=1))[4] for row in B])
        top = fifth >= np.quantile(fifth, 0.9)
        est = np.array([float(r["soh"]) for r in rows])[b]
        sig = np.array([float(r["soh_sigma"]) for r in rows])[b]
        inside = np.abs(te.soh[b] - est) <= Z90 * sig
        novel = got["per_design"][d]["model"]["coverage_90_novel_tenth"]
        assert novel == pytest.approx(inside[top].mean(), abs=0.02)


def _cells(path: Path, design: str) -> list[str]:
    with open(path, newline="") as fh:
        return [r["cell_id"] for r in csv.DictReader(fh) if r["design"] == design]


def test_holdout_counts_cells_that_are_also_in_the_training_file(tmp_path: Path) -> None:
    train, held = _split(tmp_path, leak=2)
    got = _bench(train, held)
    assert got["cells_also_in_training"] == 2


def _bench_module():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import soh_accuracy
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return soh_accuracy


@pytest.mark.parametrize(
    ("coverage", "warned", "expected"),
    [
        pytest.param([0.9, 0.5], [False, True], (1, 0.5, 0.9), id="one-of-each"),
        pytest.param([0.9, 1.0], [False, False], (0, None, 0.95), id="none-warned"),
        pytest.param([0.2, 0.4], [True, True], (2, 0.3, None), id="all-warned"),
    ],
)
def test_warned_split_names_the_draws_of_each_kind(
    coverage: list[float], warned: list[bool], expected: tuple[object, ...]
) -> None:
    got = _bench_module().warned_split(coverage, warned)
    assert (got["draws_warned"], got["coverage_prior_warned"],
            got["coverage_prior_not_warned"]) == expected  # fmt: skip


def test_the_prior_experiment_splits_its_draws_by_the_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _bench_module()
    monkeypatch.setattr(bench, "PRIOR_CELLS", (3,))
    monkeypatch.setattr(bench, "PRIOR_DRAWS", 8)
    monkeypatch.setattr(bench, "BAND_CELLS", (3,))
    three = (*DESIGNS, "NMC-2.1Ah")  # a pooled prior needs two designs besides the held one
    with open(shared_path("data", "soh", "pulse_features_dev.csv"), newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["design"] in three]
    path = tmp_path / "three.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = bench.prior_experiment(bench.Data(path), dict.fromkeys(three, 0.0), 0)
    warned = {"curve": 0, "band": 0}
    for d in three:
        for kind in warned:
            (point,) = out[d][kind]
            assert point["cells"] == 3
            k = point["draws_warned"]
            assert 0 <= k <= 8
            warned[kind] += k
            parts = [
                (k, point["coverage_prior_warned"]),
                (8 - k, point["coverage_prior_not_warned"]),
            ]
            mean = sum(n * c for n, c in parts if n) / 8
            assert point["coverage_prior"] == pytest.approx(mean, abs=2e-3)  # both rounded
    assert warned["curve"] > 0  # 3 random NMC-21Ah cells often span under 15 points
    assert warned["band"] > warned["curve"]  # 3 cells adjacent in SoH, more often still
