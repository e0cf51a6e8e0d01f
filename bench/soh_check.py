"""Passport check on the dev data: how often an overstated SoH claim is caught, how often an
honest one is flagged. Prints JSON.

    python bench/soh_check.py [--folds 5] [--seed 0] [--threshold 3]

The measurements are real: out-of-fold estimates (5-fold GroupKFold by physical cell, the
model never saw the cell) for every dev row, with their sigma. The claims are simulated. For
each row a passport claim was signed some time before intake: its age is drawn from a scenario
(cycles and days since), the cell really lost SoH since then at a rate drawn independently of
the checker's assumptions (2-10 points per 1000 full equivalent cycles, 0.5-2 points per year),
and the BMS's claim at the time carried an error of N(0, claim_sigma). So

    honest claim = truth + loss since the claim + N(0, claim_sigma)
    overstated   = honest claim + 5 (or 10) points

and `check_claims` (default ageing prior, threshold |z| > 3, one-sided: only overstating is a
fraud worth flagging) sees the claim, its stated sigma, cycles and days since, and the
measurement. Reported per design and as the mean over designs: the false-flag rate on honest
claims and the detection rate for claims overstated by 5 and 10 points.

`results_per_test` does the same once per test instead of once per row: the out-of-fold rows
of one cell at one state of charge (every pulse width it ran; `soc_pct` only groups them) are
combined as `passport intake` and `soh estimate --per-cell` combine them
(`passport.soh.combine_runs`). The LFP designs ran four widths per test, the others one.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from passport.soh import check_claims, combine_runs, physical_cell  # noqa: E402
from passport.soh.io import read_all, row_tests  # noqa: E402
from passport.soh.model import SohModel, group_kfold  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/soh/pulse_features_dev.csv"
SCENARIOS = {
    # a claim written at the last service: up to 500 cycles and two years before intake
    "aged_claim": {"fec": (0.0, 500.0), "days": (0.0, 730.0)},
    # a claim written just before the cell was retired (the usual case at a recycler)
    "fresh_claim": {"fec": (0.0, 5.0), "days": (0.0, 7.0)},
}
CLAIM_SIGMAS = {"bms": 0.02, "tester": 0.01}


def test_keys(table) -> np.ndarray:  # type: ignore[no-untyped-def]
    """One label per test (one cell at one state of charge): `soc_pct` only groups rows."""
    keys = row_tests(table)
    if keys is None:
        raise SystemExit("the data has no soc_pct column: its rows cannot be grouped into tests")
    return keys


def out_of_fold(table, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    soh = np.full(len(table.line), np.nan)
    sigma = np.full(len(table.line), np.nan)
    rho = np.ones(len(table.line))
    design = table.design.astype(str)
    groups = np.array(
        [f"{d}/{physical_cell(d, c)}" for d, c in zip(design, table.cell_id, strict=True)]
    )
    fold = np.empty(len(design), dtype=np.int64)
    for name in np.unique(design):
        rows = np.flatnonzero(design == name)
        fold[rows] = group_kfold(groups[rows], folds, seed)
    for f in range(folds):
        train, test = fold != f, fold == f
        model = SohModel.fit(
            design[train], table.U[train], table.rated_ah[train], table.width_ms[train],
            table.soh[train], groups[train], tests=test_keys(table)[train],
        )  # fmt: skip
        s, sd, err = model.predict(
            design[test], table.U[test], table.rated_ah[test], table.width_ms[test]
        )
        if (err != "").any():
            raise SystemExit(f"fold {f}: {int((err != '').sum())} rows not estimated")
        soh[test], sigma[test] = s, sd
        rho[test] = [model.row_correlation(d) for d in design[test].tolist()]
    return soh, sigma, rho


def per_test(
    key: np.ndarray, design: np.ndarray, truth: np.ndarray, measured: np.ndarray,
    sigma: np.ndarray, rho: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(design, truth, combined measurement, combined sigma), one entry per test."""
    order = np.argsort(key, kind="stable")
    soh, sd, _ = combine_runs(key[order], measured[order], sigma[order], rho[order])
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    pick = order[first]
    return design[pick], truth[pick], soh[first], sd[first]


def simulate(
    truth: np.ndarray,
    measured: np.ndarray,
    sigma: np.ndarray,
    scenario: dict[str, tuple[float, float]],
    claim_sigma: float,
    threshold: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    n = len(truth)
    fec = rng.uniform(*scenario["fec"], n)
    days = rng.uniform(*scenario["days"], n)
    loss = rng.uniform(0.02, 0.10, n) * fec / 1000 + rng.uniform(0.005, 0.02, n) * days / 365.25
    honest = truth + loss + rng.normal(0.0, claim_sigma, n)
    out: dict[str, float] = {}
    for label, offset in (("false_flag_rate", 0.0), ("detect_5", 0.05), ("detect_10", 0.10)):
        result = check_claims(
            measured, sigma, honest + offset, np.full(n, claim_sigma), fec, days,
            threshold=threshold,
        )  # fmt: skip
        out[label] = float(result.flagged.mean())
    return out


def rates_by_design(
    design: np.ndarray, truth: np.ndarray, measured: np.ndarray, sigma: np.ndarray,
    threshold: float, rng: np.random.Generator,
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:  # fmt: skip
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for scenario_name, scenario in SCENARIOS.items():
        for sigma_name, claim_sigma in CLAIM_SIGMAS.items():
            key = f"{scenario_name}/{sigma_name}_sigma_{claim_sigma:g}"
            per_design = {}
            for name in np.unique(design):
                rows = design == name
                rates = simulate(
                    truth[rows], measured[rows], sigma[rows], scenario, claim_sigma, threshold,
                    rng,
                )  # fmt: skip
                per_design[str(name)] = {k: round(v, 4) for k, v in rates.items()}
            mean = {
                k: round(float(np.mean([d[k] for d in per_design.values()])), 4)
                for k in ("false_flag_rate", "detect_5", "detect_10")
            }
            results[key] = {"mean_over_designs": mean, "per_design": per_design}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=3.0)
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (the shared SoH data)")
    start = time.perf_counter()
    table = read_all(args.data)
    measured, sigma, rho = out_of_fold(table, args.folds, args.seed)
    design = table.design.astype(str)
    tests = per_test(test_keys(table), design, table.soh, measured, sigma, rho)
    rng = np.random.default_rng(args.seed)
    results = rates_by_design(design, table.soh, measured, sigma, args.threshold, rng)
    results_per_test = rates_by_design(*tests, args.threshold, rng)
    print(
        json.dumps(
            {
                "data": str(args.data),
                "rows": len(design),
                "measurements": f"{args.folds}-fold GroupKFold by physical cell, out-of-fold",
                "threshold_z": args.threshold,
                "scenarios": {
                    k: {"fec_since": v["fec"], "days_since": v["days"]}
                    for k, v in SCENARIOS.items()
                },
                "results": results,
                "tests": len(tests[0]),
                "results_per_test": results_per_test,
                "seconds": round(time.perf_counter() - start, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
