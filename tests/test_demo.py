"""The demo's carried-over figures still match the real data they were taken from, and the
demo's synthetic cells reproduce them."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_path

from passport.demo.figures import DESIGNS, REAL
from passport.demo.fleet import draw_final_soh
from passport.demo.pulses import design_rows
from passport.soh.features import ohmic_resistance


def _derive() -> dict[str, dict[str, object]]:
    spec = importlib.util.spec_from_file_location("demo_figures", ROOT / "bench/demo_figures.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = shared_path("data", "soh", "pulse_features_dev.csv")
    return module.figures(Path(data))  # type: ignore[no-any-return]


def test_figures_are_what_the_script_derives_from_the_real_data() -> None:
    derived = _derive()
    for name, real in REAL.items():
        got = derived[name]
        assert got["chemistry"] == real.chemistry
        assert got["rated_ah"] == real.rated_ah
        assert tuple(got["soh_p05_p50_p95"]) == real.soh_p05_p50_p95  # type: ignore[arg-type]
        assert tuple(got["u1_v_p05_p50_p95"]) == real.u1_v_p05_p50_p95  # type: ignore[arg-type]
        assert got["r0_new_mohm"] == real.r0_new_mohm
        assert got["r0_growth_per_loss"] == real.r0_growth_per_loss
        assert got["r0_spread_log"] == real.r0_spread_log
        assert got["resolution_mv"] == real.resolution_mv


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: d.model)
def test_retired_soh_follows_the_real_percentiles(design: object) -> None:
    rng = random.Random(1)
    draws = np.array([draw_final_soh(design, rng) for _ in range(20_000)])  # type: ignore[arg-type]
    p05, p50, p95 = design.real.soh_p05_p50_p95  # type: ignore[attr-defined]
    got = np.percentile(draws, [5, 50, 95])
    assert got == pytest.approx([p05, p50, p95], abs=0.004)


@pytest.mark.parametrize("design", DESIGNS, ids=lambda d: d.model)
def test_synthetic_pulse_tests_carry_the_real_figures(design: object) -> None:
    """Rest voltage at the real median, resolution 0.1 mV, and R0 on the real line."""
    real = design.real  # type: ignore[attr-defined]
    rng = np.random.default_rng(3)
    soh = np.full(400, 0.85)
    rows = design_rows(design, soh, rng)  # type: ignore[arg-type]
    widths = design.widths_ms  # type: ignore[attr-defined]
    assert rows.width_ms == pytest.approx(np.tile(widths, 400))  # a row per width, cell by cell
    u1 = rows.U[:, 0]
    assert abs(float(np.median(u1)) - real.u1_v_p05_p50_p95[1]) < 0.15
    steps = rows.U[~np.isnan(rows.U)] / (real.resolution_mv / 1000)
    assert np.allclose(steps, np.round(steps), atol=1e-6)
    r0 = ohmic_resistance(rows.U, rows.rated_ah) * 1000
    expected = real.r0_new_mohm * (1 + real.r0_growth_per_loss * 0.15)
    assert float(np.median(r0)) == pytest.approx(expected, rel=0.1)
    spread = float(np.std(np.log(r0)))
    assert spread == pytest.approx(real.r0_spread_log, abs=0.03)
