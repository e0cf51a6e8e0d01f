"""SoH speed benchmark on one core: 1,000,000 synthetic cells. Prints JSON.

    python bench/soh_speed.py [--cells N] [--model MODEL] [--samples-per-cell K] [--repeat 3]

Cells are real dev-file rows (all six designs, mixed, shuffled) with 0.5 mV of voltage noise, so
every range check passes as it would on a line. Two paths, both timed end to end in chunks (the
memory bound the CLI keeps), excluding only the generation of the input:

- features: U1..U41 -> SoH, sigma and the passport check (a claim per cell);
- traces: the long format (cell, t, current, voltage; at least K samples per cell, K = 100 by
  default, spread evenly over its segments: 21 segments x 5 samples for a cell of the full
  protocol, 11 segments x 10 samples for the designs whose protocol stopped after U21, as their
  real traces do, so that a batch mixes both) -> turning points -> SoH, sigma and the check.
  The extractor is checked to return exactly the voltages the trace was built from, and
  nothing beyond where it stopped.

`trace_extract_seconds` is the part of the trace path spent in `extract` (the rest: the
estimate and the check). `ratio_to_memory_pass` is the trace path's time divided by one
`numpy.sum` over the same trace array (the (4, samples) float64 block holding the four columns),
chunk by chunk in the same run: how close the path is to reading its input once. Peak memory
is the process's maximum RSS. BLAS and OpenMP are limited to one thread before numpy loads.
Each path runs --repeat times (fresh synthetic cells each time) and the fastest run is reported,
as timeit does, with every run's figures beside it: other work on a shared machine only ever
slows a run down.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _host import host  # noqa: E402

from passport.soh import check_claims, estimate, extract, fit_csv, load_model  # noqa: E402
from passport.soh.io import read_all  # noqa: E402
from passport.soh.traces import AMPLITUDES_C, REST_FACTOR, SEGMENTS  # noqa: E402

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "soh"
DEV_FILE = DEV / "pulse_features_dev.csv"


def synthetic_rows(table, rng: np.random.Generator, n: int):  # type: ignore[no-untyped-def]
    pick = rng.integers(0, len(table.line), n)
    U = table.U[pick] + rng.normal(0.0, 0.0005, (n, table.U.shape[1]))
    return pick, U


def claims(rng: np.random.Generator, truth: np.ndarray, n: int) -> dict[str, np.ndarray]:
    fec = rng.uniform(0, 300, n)
    return {
        "claimed": truth + 0.05 * fec / 1000 + rng.normal(0, 0.01, n),
        "claimed_sigma": np.full(n, 0.01),
        "fec_since": fec,
        "days_since": rng.uniform(0, 365, n),
    }


def features_path(model, table, args, rng):  # type: ignore[no-untyped-def]
    elapsed = 0.0
    done = 0
    estimated = 0
    while done < args.cells:
        n = min(args.chunk, args.cells - done)
        pick, U = synthetic_rows(table, rng, n)
        design, rated, width = table.design[pick], table.rated_ah[pick], table.width_ms[pick]
        c = claims(rng, table.soh[pick], n)
        start = time.perf_counter()
        est = estimate(model, design, U, rated, width)
        check_claims(
            est.soh, est.soh_sigma, c["claimed"], c["claimed_sigma"], c["fec_since"],
            c["days_since"],
        )  # fmt: skip
        elapsed += time.perf_counter() - start
        estimated += int((est.error == "").sum())
        done += n
    return {"cells": done, "seconds": elapsed, "estimated": estimated}


def build_traces(table, pick: np.ndarray, U: np.ndarray, min_samples: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(4, samples): cell code (the index into `pick`), t (s), current (A), voltage (V). A cell
    whose row stops early (U22..U41 empty) gets the segments up to its last turning point
    only; each cell at least `min_samples` samples, as many in each of its segments."""
    segments = 1 + (np.isfinite(table.U[pick]).sum(1) - 1) // 2  # 21, or 11 up to U21
    per_segment = np.maximum(2, -(-min_samples // segments))
    samples = segments * per_segment
    trace = np.empty((4, int(samples.sum())))  # C order, as a reader's columns are
    offset = np.cumsum(samples) - samples
    for count in np.unique(segments).tolist():
        cells = np.flatnonzero(segments == count)
        k = int(per_segment[cells[0]])
        dest = (offset[cells][:, None] + np.arange(count * k)).ravel()  # in drawn order
        trace[:, dest] = _cell_traces(table, pick[cells], U[cells], cells, count, k)
    return trace


def _cell_traces(table, pick, U, codes, count: int, k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Traces of cells with `count` segments and k samples in each: within a segment the
    voltage ramps from the turning point at its start to the one at its end."""
    m = len(pick)
    width_s = table.width_ms[pick] / 1000.0
    rated = table.rated_ah[pick]
    rate = [0.0]
    duration = [np.full(m, 600.0)]
    for a in AMPLITUDES_C:
        rest = REST_FACTOR * width_s
        rate += [a, 0.0, -a, 0.0]
        duration += [width_s, rest, width_s, rest]
    dur = np.stack(duration, axis=1)[:, :count]  # (m, count)
    first = np.empty((m, SEGMENTS))
    last = np.empty((m, SEGMENTS))
    first[:, 0] = U[:, 0] + 0.002  # still relaxing towards the OCV
    last[:, 0] = U[:, 0]
    first[:, 1:] = U[:, 1::2]
    last[:, 1:] = U[:, 2::2]
    first, last = first[:, :count], last[:, :count]
    ramp = np.linspace(0.0, 1.0, k)
    voltage = first[:, :, None] + (last - first)[:, :, None] * ramp
    voltage[:, :, -1] = last  # exactly, not first + (last - first)
    offsets = np.linspace(0.0, 1.0 - 1e-9, k)
    seg_start = np.cumsum(dur, axis=1) - dur
    t = seg_start[:, :, None] + dur[:, :, None] * offsets
    current = (np.asarray(rate[:count])[None, :] * rated[:, None])[:, :, None] * np.ones(k)
    code = np.broadcast_to(np.asarray(codes, dtype=np.float64)[:, None, None], voltage.shape)
    trace = np.empty((4, m * count * k))
    for row, part in enumerate((code, t, current, voltage)):
        trace[row] = part.reshape(-1)
    return trace


def traces_path(model, table, args, rng):  # type: ignore[no-untyped-def]
    path_s = 0.0
    extract_s = 0.0
    sum_s = 0.0
    done = 0
    samples = 0
    estimated = 0
    cells_per_chunk = max(1, args.chunk // 8)
    while done < args.cells:
        m = min(cells_per_chunk, args.cells - done)
        pick, U = synthetic_rows(table, rng, m)
        trace = build_traces(table, pick, np.nan_to_num(U, nan=3.3), args.samples_per_cell)
        design = table.design[pick]
        c = claims(rng, table.soh[pick], m)
        start = time.perf_counter()
        got = extract(trace[0], trace[1], trace[2], trace[3])
        extracted = time.perf_counter()
        est = estimate(model, design, got.U, got.rated_ah, got.width_ms)
        check_claims(
            est.soh, est.soh_sigma, c["claimed"], c["claimed_sigma"], c["fec_since"],
            c["days_since"],
        )  # fmt: skip
        middle = time.perf_counter()
        total = trace.sum()
        end = time.perf_counter()
        path_s += middle - start
        extract_s += extracted - start
        sum_s += end - middle
        full = np.isfinite(table.U[pick])
        if not np.array_equal(np.where(full, U, np.nan), got.U, equal_nan=True):
            raise SystemExit("extractor did not return the voltages the trace was built from")
        if not np.isfinite(total):
            raise SystemExit("trace sum not finite")
        estimated += int((est.error == "").sum())
        samples += trace.shape[1]
        done += m
    return {
        "cells": done,
        "samples_per_cell": samples // done,
        "seconds": path_s,
        "extract_seconds": extract_s,
        "sum_seconds": sum_s,
        "estimated": estimated,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=65_536, help="rows per chunk (features)")
    parser.add_argument("--samples-per-cell", type=int, default=100, help="at least (traces)")
    parser.add_argument("--model", type=Path, help="model file (default: fit the dev file)")
    parser.add_argument("--data", type=Path, default=DEV_FILE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"{args.data}: not found (the shared SoH data)")
    table = read_all(args.data)
    fit_start = time.perf_counter()
    model = load_model(args.model) if args.model else fit_csv(args.data)
    fit_s = time.perf_counter() - fit_start
    # the best of --repeat runs (as timeit does): other work on the machine only ever slows a
    # run down; every run's figures are printed too
    feat_runs = []
    trace_runs = []
    for i in range(args.repeat):
        rng = np.random.default_rng(args.seed + i)
        feat_runs.append(features_path(model, table, args, rng))
        trace_runs.append(traces_path(model, table, args, rng))
    feats = min(feat_runs, key=lambda r: r["seconds"])
    traces = min(trace_runs, key=lambda r: r["seconds"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "cells": args.cells,
        "cells_per_s_features": round(feats["cells"] / feats["seconds"]),
        "cells_per_s_traces": round(traces["cells"] / traces["seconds"]),
        "ratio_to_memory_pass": round(traces["seconds"] / traces["sum_seconds"], 2),
        "samples_per_cell": traces["samples_per_cell"],
        "features_seconds": round(feats["seconds"], 3),
        "traces_seconds": round(traces["seconds"], 3),
        "trace_extract_seconds": round(traces["extract_seconds"], 3),
        "trace_sum_seconds": round(traces["sum_seconds"], 4),
        "estimated_share": round(
            (feats["estimated"] + traces["estimated"]) / (feats["cells"] + traces["cells"]), 4
        ),
        "peak_rss_mb": round(peak_mb, 1),
        "repeat": args.repeat,
        "runs_cells_per_s_features": [round(r["cells"] / r["seconds"]) for r in feat_runs],
        "runs_cells_per_s_traces": [round(r["cells"] / r["seconds"]) for r in trace_runs],
        "runs_ratio_to_memory_pass": [
            round(r["seconds"] / r["sum_seconds"], 2) for r in trace_runs
        ],
        "model_fit_seconds": round(fit_s, 2) if not args.model else None,
        "threads": 1,
        "host": host(),
        "targets": {
            "cells_per_s_features_ge_2M": feats["cells"] / feats["seconds"] >= 2_000_000,
            "cells_per_s_traces_ge_200k": traces["cells"] / traces["seconds"] >= 200_000,
            "ratio_le_10": traces["seconds"] / traces["sum_seconds"] <= 10,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
