"""Unit conversions from the stored integers to the export schemas' units, and the derived
quantities both passport formats report (fade, resistance increase, remaining capacity): one
definition each, so the two formats cannot drift apart."""

from __future__ import annotations


def mah_to_ah(mah: int) -> float:
    return mah / 1000


def mv_to_v(mv: int) -> float:
    return mv / 1000


def uohm_to_ohm(uohm: int) -> float:
    return uohm / 1_000_000


def dc_to_c(dc: int) -> float:
    """0.1 degC -> degC."""
    return dc / 10


def cpct_to_pct(cpct: int) -> float:
    """0.01 % -> %."""
    return cpct / 100


def deci_to_unit(deci: int) -> float:
    return deci / 10


def wh_to_kwh(wh: int) -> float:
    return wh / 1000


def w_to_kw(w: float) -> float:
    return w / 1000


def fade_pct(soh_cpct: int) -> float:
    """A state of health (0.01 %) as the fade the models ask for: 100 % - SoH, in %."""
    return round(100 - cpct_to_pct(soh_cpct), 2)


def increase_pct(now: int, initial: int) -> float:
    """(R(x) - R_BOL) / R_BOL x 100 %, the DIN DKE SPEC 99100 internal resistance increase."""
    return round((now / initial - 1) * 100, 2)


def remaining_ah(rated_mah: int, soh_cpct: int) -> float:
    """The capacity left (Ah): rated capacity x state of health."""
    return round(mah_to_ah(rated_mah) * cpct_to_pct(soh_cpct) / 100, 4)


def whole_cycles(fec_deci: int) -> int:
    """0.1 full equivalent cycle -> completed cycles (xsd:integer)."""
    return fec_deci // 10
