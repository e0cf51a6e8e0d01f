"""Pulse turning-point voltages U1..U41 -> physically meaningful features, vectorised.

The protocol: U1 is the open-circuit voltage (OCV); then for each amplitude a = 0.5, 1, 1.5,
2, 2.5 C eight turning points (start/end of the charge pulse, of the rest after it, of the
discharge pulse, of the rest after it), all with current I = a * rated_ah. Differences of turning
points divided by I are resistances (ohm): the instantaneous (ohmic) step, the polarisation
during the pulse, the step when the current stops and the relaxation during the rest, for charge
and discharge. Net shifts after each half cycle (V) carry the charge/discharge hysteresis and the
slope of the OCV curve per unit of charge, which scales with 1/capacity.

Every feature is linear in U (a resistance is also divided by a * rated_ah), so `features` is one
matrix product, and a model on standardised features folds into a matrix product on U. A feature
is NaN when any U it needs is absent (designs measured only up to U21 get the subset). No
feature depends on the state of charge, which an intake line does not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

U_COLUMNS = [f"U{i}" for i in range(1, 42)]
N_U = len(U_COLUMNS)
AMPLITUDES_C = (0.5, 1.0, 1.5, 2.0, 2.5)
TURNING_POINTS = 8  # per amplitude

# Designs whose cell ids carry an ageing-stage suffix: "NMC-2.1Ah-D3-100" is physical cell
# "NMC-2.1Ah-D3" measured at stage 100; rows of all its stages are one cell for splitting.
STAGED_DESIGNS = frozenset({"NMC-2.1Ah"})
_STAGE_SUFFIX = re.compile(r"^(?P<cell>.+)-\d+$")


@dataclass(frozen=True, slots=True)
class Feature:
    """One engineered feature: sum_i coef[i] * U[i] (V), divided by amplitude * rated_ah when
    `amplitude` is set (a resistance, ohm)."""

    name: str
    coef: tuple[tuple[int, float], ...]  # (0-based U index, coefficient)
    amplitude: float | None = None

    @property
    def uses(self) -> tuple[int, ...]:
        return tuple(i for i, _ in self.coef)


def physical_cell(design: str, cell_id: str) -> str:
    """The physical cell a row belongs to: rows of one cell must never be split between training
    and test. For lab-aged designs the trailing "-NNN" ageing stage is dropped."""
    if design in STAGED_DESIGNS:
        match = _STAGE_SUFFIX.match(cell_id)
        if match:
            return match.group("cell")
    return cell_id


def _block_features(block: int, amplitude: float) -> list[Feature]:
    """The features of one amplitude's eight turning points (0-based U indices)."""
    s = 1 + TURNING_POINTS * block  # first turning point of this amplitude
    prev = 0 if block == 0 else s - 1  # the voltage before the pulse: OCV or the last rest end
    a = amplitude
    tag = f"{a:g}C"

    def diff(name: str, plus: int, minus: int, resistance: bool = True) -> Feature:
        return Feature(f"{name}_{tag}", ((plus, 1.0), (minus, -1.0)), a if resistance else None)

    r = [
        diff("r_ohm_chg", s, prev),  # instantaneous step when the charge current starts
        diff("r_pol_chg", s + 1, s),  # polarisation building up during the charge pulse
        diff("r_off_chg", s + 1, s + 2),  # step when the charge current stops
        diff("r_relax_chg", s + 2, s + 3),  # relaxation during the rest after it
        diff("r_ohm_dis", s + 3, s + 4),
        diff("r_pol_dis", s + 4, s + 5),
        diff("r_off_dis", s + 6, s + 5),
        diff("r_relax_dis", s + 7, s + 6),
        diff("shift_chg", s + 3, prev, resistance=False),  # OCV shift by the charge pulse
        diff("shift_dis", s + 7, s + 3, resistance=False),  # ... and back by the discharge pulse
        diff("hysteresis", s + 7, prev, resistance=False),  # net, after a zero-charge cycle
    ]
    r += [
        # charge/discharge asymmetry depends on where the cell sits on its OCV curve
        Feature(f"asym_ohm_{tag}", ((s, 1.0), (prev, -1.0), (s + 3, -1.0), (s + 4, 1.0)), a),
        Feature(f"asym_pol_{tag}", ((s + 1, 1.0), (s, -1.0), (s + 4, -1.0), (s + 5, 1.0)), a),
        Feature(f"r_total_chg_{tag}", ((s + 1, 1.0), (prev, -1.0)), a),
        Feature(f"r_total_dis_{tag}", ((s + 3, 1.0), (s + 5, -1.0)), a),
    ]
    return r


def _nonlinearity(blocks: list[list[Feature]]) -> list[Feature]:
    """Resistance at amplitude a minus at 0.5 C (ohm): charge-transfer (Butler-Volmer)
    non-linearity, which grows with ageing."""
    out: list[Feature] = []
    base = {f.name.rsplit("_", 1)[0]: f for f in blocks[0]}
    for block in blocks[1:]:
        for f in block:
            kind = f.name.rsplit("_", 1)[0]
            if kind not in ("r_ohm_chg", "r_pol_chg", "r_total_chg", "r_total_dis"):
                continue
            assert f.amplitude is not None
            b = base[kind]
            assert b.amplitude is not None
            # (x / a) - (y / 0.5) with the common division by a: y scaled by a / 0.5
            scale = f.amplitude / b.amplitude
            coef = dict(f.coef)
            for i, c in b.coef:
                coef[i] = coef.get(i, 0.0) - scale * c
            tag = f.name.rsplit("_", 1)[1]
            terms = tuple((i, c) for i, c in sorted(coef.items()) if c != 0.0)
            out.append(Feature(f"nonlin_{kind}_{tag}", terms, f.amplitude))
    return out


def _catalogue() -> tuple[Feature, ...]:
    blocks = [_block_features(b, a) for b, a in enumerate(AMPLITUDES_C)]
    ocv = Feature("ocv", ((0, 1.0),))
    return (ocv, *(f for block in blocks for f in block), *_nonlinearity(blocks))


FEATURES: tuple[Feature, ...] = _catalogue()
WIDTH_FEATURE = "log10_width_ms"
FEATURE_NAMES: tuple[str, ...] = (*(f.name for f in FEATURES), WIDTH_FEATURE)
N_FEATURES = len(FEATURE_NAMES)


def _matrices() -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """coef (41, k) with the 1/amplitude folded in; resistance mask (k,); uses (41, k)."""
    coef = np.zeros((N_U, len(FEATURES)))
    resistance = np.zeros(len(FEATURES), dtype=bool)
    for j, f in enumerate(FEATURES):
        for i, c in f.coef:
            coef[i, j] = c / f.amplitude if f.amplitude is not None else c
        resistance[j] = f.amplitude is not None
    return coef, resistance.astype(np.float64), coef != 0.0


COEF, RESISTANCE, USES = _matrices()
COEF.setflags(write=False)
RESISTANCE.setflags(write=False)
USES.setflags(write=False)


def required_columns(available: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Which features can be computed when only the U columns in `available` (41,) exist."""
    return np.asarray(~((~available)[:, None] & USES).any(axis=0), dtype=np.bool_)


def features(U: FloatArray, rated_ah: FloatArray, width_ms: FloatArray) -> FloatArray:
    """(n, 41) voltages -> (n, N_FEATURES) features named by FEATURE_NAMES: OCV (V),
    resistances (ohm), shifts (V), log10 pulse width. NaN where a needed U is absent."""
    U = np.asarray(U, dtype=np.float64)
    if U.ndim != 2 or U.shape[1] != N_U:
        raise ValueError(f"U must have shape (n, {N_U}), not {U.shape}")
    finite = np.isfinite(U)
    U0 = np.where(finite, U, 0.0)
    raw = U0 @ COEF
    inv_ah = 1.0 / np.asarray(rated_ah, dtype=np.float64)
    scale = 1.0 + RESISTANCE[None, :] * (inv_ah[:, None] - 1.0)
    out = np.empty((U.shape[0], N_FEATURES))
    np.multiply(raw, scale, out=out[:, :-1])
    missing = (~finite).astype(np.float64) @ USES.astype(np.float64) > 0
    out[:, :-1][missing] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, -1] = np.log10(np.asarray(width_ms, dtype=np.float64))
    return out


def ohmic_resistance(U: FloatArray, rated_ah: FloatArray) -> FloatArray:
    """Ohmic resistance (ohm): the instantaneous step of the 0.5 C charge pulse, (U2 - U1) /
    (0.5 * rated_ah). Compared with the birth record's resistance it gives resistance growth."""
    U = np.asarray(U, dtype=np.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # hostile input: inf
        out: FloatArray = (U[:, 1] - U[:, 0]) / (0.5 * np.asarray(rated_ah, dtype=np.float64))
    return out
