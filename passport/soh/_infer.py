"""Compiled inference: rows routed to their design's folded models (`_fold`), estimated in
blocks of float32 matrix products."""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from passport.soh._base import FloatArray, IntArray, novelty_factor
from passport.soh._fold import Folded, fold_design
from passport.soh._fpu import flush_subnormals
from passport.soh._params import DesignModel, same_width

# rows per block at inference. A block costs about 60 us of numpy calls whatever its rows (on
# a Zen 3 core, 512 KB of L2), so fewer, larger blocks won there: 5 % faster than 2,048
# (session 20). Session 15 had chosen 2,048 on an AVX-512 host with 2 MB of L2 and the
# Gaussian kernel (2 % faster than 4,096 there: 128 x 2,048 float32 exponents stayed in L2)
_CHUNK = 4_096

_OK, _RANGE, _MISSING, _NO_MODEL = range(4)


def _estimate_block(
    k: Folded,
    rows_u: FloatArray,
    lw: FloatArray,
    inv: FloatArray | None,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.uint8] | None]:
    """(soh, sigma, code) for a block of at most _CHUNK rows of one model.

    `rows_u` holds whole input rows (the model's voltages are `k.cols`), `lw` is
    log10(width) - k.w_ref per row, and `inv` is 1 / rated_ah per row for rows not of the
    design's own rating (the long product, G_any), None for rows of its own (G_fast). The
    width and rating checks are made per row by the caller, under whose np.errstate this
    runs; `code` is None when every row is inside the voltage window, else _OK / _RANGE /
    _MISSING per row."""
    n, q = len(rows_u), len(k.cols)
    G = k.G_fast if inv is None else k.G_any
    U = rows_u[:, k.span[0] : k.span[1]] if k.span is not None else rows_u[:, k.cols]
    X = np.empty((n, G.shape[0]), dtype=np.float32)
    # voltage steps, taken in float64 and then rounded (see Folded); hostile voltages (e.g.
    # 1e308) overflow float32, and such rows fail the window check below
    np.subtract(U[:, 0], k.u_ref, out=X[:, 0], casting="same_kind")
    _steps(k, rows_u, U, X[:, 1:q])
    if inv is None:
        X[:, q] = lw
        X[:, q + 1] = 1.0
    else:
        np.multiply(X[:, :q], inv[:, None], out=X[:, q : 2 * q], casting="same_kind")
        X[:, 2 * q] = inv
        X[:, 2 * q + 1] = lw
        X[:, 2 * q + 2] = 1.0
    # (rows, r + 2) = X @ G, then (centres, rows) = centres @ E.T, on blocks of _CHUNK rows
    # (a third faster than on blocks of 32k)
    E = X @ G
    r = E.shape[1] - 2
    E[:, r] = k.minus_gamma * np.einsum("ij,ij->i", E[:, :r], E[:, :r])
    out = E @ k.linear
    nearest = None
    if len(k.rbf_weights):
        # (m, rows): -(offset + gamma |e - c|^2), transposed so that the nearest centre of
        # each row is an element-wise max over contiguous rows of centres (a max along each
        # row of the untransposed product costs five times as much); the product costs the same
        Dt = k.centres_t @ E.T
        if len(k.novelty_knots):
            nearest = Dt.max(axis=0)  # -(offset + novelty)
        if k.offset:  # Cauchy: 1 / (1 + t), a division (a quarter of exp's cost with AVX-512)
            np.divide(-1.0, Dt, out=Dt)
        else:
            np.exp(Dt, out=Dt)
        out += k.rbf_weights @ Dt
    soh = out.astype(np.float64)
    np.maximum(soh, k.clip[0], out=soh)  # np.clip, without its wrapper's cost
    np.minimum(soh, k.clip[1], out=soh)
    sigma = np.interp(soh, k.knots, k.values)
    if nearest is not None:
        sigma *= novelty_factor(-nearest - k.offset, k.novelty_knots, k.novelty_factors)
    if len(k.slope_covariance):  # e S e^T per row: about r^2 flops, r = 23-44 features
        e = E[:, :r]  # (hostile rows: NaN, refused by the window check)
        sigma = np.sqrt(sigma * sigma + np.einsum("ij,ij->i", e @ k.slope_covariance, e))
    # voltages: one flat min/max over the block (NaN propagates and fails the test), row by
    # row only when the block has a row outside the window
    if not n or (U.min() >= k.lo_u and U.max() <= k.hi_u):
        return soh, sigma, None
    code = np.where(((k.lo_u <= U) & (k.hi_u >= U)).all(1), _OK, _RANGE).astype(np.uint8)
    code[~np.isfinite(U).all(1)] = _MISSING
    return soh, sigma, code


def _steps(k: Folded, rows_u: FloatArray, U: FloatArray, out: npt.NDArray[np.float32]) -> None:
    """The steps between the model's consecutive voltages U (columns of rows_u), into `out`.

    On C-contiguous rows whose model columns are a range, one flat difference over the whole
    block, whose wrap-around elements (a row's first voltage minus the row before's last) are
    computed and dropped: 15-35 ns per row less than the difference of two 2-D views, whose
    inner loops are only q - 1 long. The same float64 differences, rounded the same way."""
    q = U.shape[1]
    if q > 1 and k.span is not None and rows_u.flags.c_contiguous:
        n, width = rows_u.shape
        flat = rows_u.reshape(-1)
        diff = np.empty(n * width)
        np.subtract(flat[1:], flat[:-1], out=diff[:-1])
        out[...] = diff.reshape(n, width)[:, k.span[0] : k.span[0] + q - 1]
    else:
        np.subtract(U[:, 1:], U[:, :-1], out=out, casting="same_kind")


class NameIndex:
    """A model's design names, and a table that finds them by their interned objects'
    addresses (on CPython an object's id is its address): a row's slot is bits 4 and up of its
    pointer (objects are 16-byte aligned), masked to the fewest bits, up to 16, that give each
    name a slot of its own; the name's id is then compared to confirm. Five passes over the
    pointers, a third of the cost of one comparison and one masked assignment per name.
    `slots` is None when no such mask exists: then one comparison per name. The interned names
    are held here, so their addresses stay theirs while the model lives."""

    __slots__ = ("ids", "mask", "names", "slots")

    def __init__(self, names: list[str]) -> None:
        # plain str: a str subclass (numpy.str_, from a caller's array) cannot be interned
        self.names = [sys.intern(str(name)) for name in names]
        # the ids, and 0 (no object's) for len(names): a row in no name's slot
        self.ids = np.array([id(name) for name in self.names] + [0], dtype=np.uintp)
        self.mask = 0
        self.slots: npt.NDArray[np.int16] | None = None
        hashed = self.ids[:-1] >> 4
        for bits in range(1, 17):
            mask = (1 << bits) - 1
            if len(np.unique(hashed & mask)) == len(names):
                self.mask = mask
                self.slots = np.full(mask + 1, len(names), dtype=np.int16)
                self.slots[hashed & mask] = np.arange(len(names), dtype=np.int16)
                break

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """The name's index, len(self) for any other."""
        return self.names.index(name) if name in self.names else len(self.names)

    def __reduce__(self) -> tuple[type[NameIndex], tuple[list[str]]]:
        """Pickled (a model sent to another process) as its names alone: the addresses are
        this process's, and in another one they could be another object's."""
        return NameIndex, (self.names,)


def _design_codes(design: npt.NDArray[Any], names: NameIndex) -> npt.NDArray[np.int16]:
    """Index into `names` per row, len(names) for any other design. A fixed-width string array
    is compared per name (vectorised). An object array is matched by identity first (below),
    and the rows left over by one dict look-up each (much faster than np.unique, which
    sorts)."""
    if design.dtype.kind == "U":
        codes = np.full(len(design), len(names), dtype=np.int16)
        for i, name in enumerate(names.names):
            codes[design == name] = i
        return codes
    if (
        design.dtype != object
        or design.ndim != 1
        or not design.flags.c_contiguous
        or sys.implementation.name != "cpython"  # where an object's id is not its address
    ):
        return _codes_by_lookup(design, names.names)
    codes = _codes_by_identity(design, names)
    rest = np.flatnonzero(codes == len(names))
    if len(rest):
        codes[rest] = _codes_by_lookup(design[rest], names.names)
    return codes


def _codes_by_identity(design: npt.NDArray[Any], names: NameIndex) -> npt.NDArray[np.int16]:
    """Rows holding the interned object of a design name, found by the array's object
    pointers (read, never written, through its buffer address), through the slot table of
    `names` or else by comparing with each name's id. Rows read by passport.soh.io hold
    interned names; rows that hold other objects match nothing and are looked up."""
    n = len(design)
    address = design.__array_interface__["data"][0]
    pointers = np.frombuffer(
        memoryview((ctypes.c_size_t * n).from_address(address)), dtype=np.uintp
    )
    if names.slots is not None:
        hashed = pointers >> 4
        hashed &= names.mask
        codes: npt.NDArray[np.int16] = names.slots[hashed]
        codes[names.ids[codes] != pointers] = len(names)  # another object in the slot
        return codes
    codes = np.full(n, len(names), dtype=np.int16)
    for i, name_id in enumerate(names.ids[:-1].tolist()):
        codes[pointers == name_id] = i
    return codes


def _codes_by_lookup(design: npt.NDArray[Any], names: list[str]) -> npt.NDArray[np.int16]:
    # interned keys: an interned row's look-up is an identity check, not a string comparison
    lookup = {sys.intern(name): i for i, name in enumerate(names)}
    values = design.tolist()  # (astype(object) would first copy the array)
    try:  # a plain dict's own __getitem__: twice as fast as a defaultdict's
        return np.fromiter(map(lookup.__getitem__, values), dtype=np.int16, count=len(design))
    except (KeyError, TypeError):  # another design, or an unhashable entry (never a design)
        other = len(names)
        return np.array(
            [lookup.get(v, other) if isinstance(v, str) else other for v in values],
            dtype=np.int16,
        )


@dataclass(frozen=True, slots=True)
class CompiledModel:
    """Every design's compiled models in one list (a design's all-widths model, then its
    per-width ones), with their scalar limits as arrays indexed by model number, the last
    entry standing for no model (NaN: every test fails), so that the width and rating checks
    of a whole chunk are a few gathers and comparisons instead of a dozen calls per block."""

    names: NameIndex
    models: tuple[Folded, ...]
    first_model: npt.NDArray[np.int16]  # per design name, then len(models): no model
    # per design index with per-width models: their widths (ascending) and model numbers
    widths: dict[int, tuple[FloatArray, npt.NDArray[np.int16]]]
    rated_ah: FloatArray
    lo_w: FloatArray
    hi_w: FloatArray
    lo_ah: FloatArray
    hi_ah: FloatArray
    w_ref: FloatArray


def compile_model(models: Mapping[str, DesignModel], rating_tolerance: float) -> CompiledModel:
    flat: list[Folded] = []
    first = []
    widths = {}
    for i, m in enumerate(models.values()):
        first.append(len(flat))
        flat.append(fold_design(m, rating_tolerance))
        if m.by_width:
            w = np.array([s.width_range_ms[0] for s in m.by_width])
            order = np.argsort(w)
            widths[i] = (w[order], (len(flat) + order).astype(np.int16))
        flat.extend(fold_design(s, rating_tolerance) for s in m.by_width)
    first.append(len(flat))

    def table(attr: str) -> FloatArray:
        return np.array([getattr(k, attr) for k in flat] + [math.nan], dtype=np.float64)

    return CompiledModel(
        NameIndex(list(models)), tuple(flat), np.array(first, dtype=np.int16), widths,
        table("rated_ah"), table("lo_w"), table("hi_w"), table("lo_ah"), table("hi_ah"),
        table("w_ref"),
    )  # fmt: skip


def _model_index(
    cm: CompiledModel, design: npt.NDArray[Any], width_ms: FloatArray
) -> npt.NDArray[np.int16]:
    """The model of each row: its design's model for its pulse width, else the design's
    all-widths model; len(cm.models) for a design without a model."""
    n = len(design)
    first = design[0]
    if bool((design[:256] == first).all()) and bool((design == first).all()):
        i = cm.names.index(str(first))
        which = np.full(n, cm.first_model[i], dtype=np.int16)
        codes: npt.NDArray[np.int16] | None = None
        mine = [i] if i < len(cm.names) else []
    else:
        codes = _design_codes(design, cm.names)
        which = cm.first_model[codes]
        mine = list(range(len(cm.names)))
    for i in mine:
        if i in cm.widths:
            widths, models = cm.widths[i]
            own = np.flatnonzero(codes == i) if codes is not None else np.arange(n)
            w = width_ms[own]
            # the nearest per-width model (cut at the midpoints), if the row's width is its
            # (a comparison per cut: a design has a few widths; searchsorted costs twice as much)
            nearest = np.zeros(len(w), dtype=np.intp)
            for cut in (0.5 * (widths[1:] + widths[:-1])).tolist():
                nearest += w > cut
            match = same_width(w, widths[nearest])
            which[own[match]] = models[nearest[match]]
    return which


def predict_rows(
    cm: CompiledModel,
    design: npt.NDArray[Any],
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.uint8]]:
    """(soh, sigma, code) for rows of any designs; code _NO_MODEL where the design has none.

    Each row goes to one model (`_model_index`), and to its short product when its rating is
    the design's own, else to the long one: chosen per row, so a row's estimate never depends
    on the other rows. The width and rating checks and log10(width) are taken over the whole
    chunk; a stable sort of the (model, product) keys makes each pair's rows a contiguous run
    of the permutation, estimated in blocks of gathered rows (slices of the input when one
    run covers it: one design, no per-width models, its own rating) and scattered back. A row
    gets the same estimate either way up to float32 rounding (the block it sits in may
    differ)."""
    n = len(design)
    soh = np.full(n, np.nan)
    sigma = np.full(n, np.nan)
    code = np.full(n, _NO_MODEL, dtype=np.uint8)
    if n == 0:
        return soh, sigma, code
    which = _model_index(cm, design, width_ms)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        own = rated_ah == cm.rated_ah[which]
        inside = (width_ms >= cm.lo_w[which]) & (width_ms <= cm.hi_w[which])
        if not own.all():
            inside &= own | ((rated_ah >= cm.lo_ah[which]) & (rated_ah <= cm.hi_ah[which]))
        lw = np.log10(width_ms) - cm.w_ref[which]
        key = 2 * which + ~own  # (model, long product)
        if key[0] == key[-1] and bool((key == key[0]).all()):
            order: IntArray | None = None  # one run: slices of the input, in place
            ends = np.zeros(2 * len(cm.models) + 2, dtype=np.int64)
            ends[int(key[0]) :] = n
            out = (soh, sigma, code)
        else:
            order = np.argsort(key, kind="stable")
            ends = np.cumsum(np.bincount(key, minlength=2 * len(cm.models) + 2))
            out = (np.full(n, np.nan), np.full(n, np.nan), np.full(n, _NO_MODEL, dtype=np.uint8))
        with flush_subnormals():  # far rows' exp() underflows: see _fpu
            for run in range(2 * len(cm.models)):
                lo, hi = (int(ends[run - 1]) if run else 0), int(ends[run])
                if lo < hi:
                    long = bool(run % 2)
                    _run(cm.models[run // 2], U, rated_ah, lw, order, (lo, hi), long, out)
    if order is not None:
        soh[order], sigma[order], code[order] = out
    modelled = which < len(cm.models)
    bad = modelled & ~inside
    if bad.any():
        w, ah = width_ms[bad], rated_ah[bad]
        usable = np.isfinite(w) & np.isfinite(ah) & (w > 0) & (ah > 0)
        code[bad] = np.maximum(code[bad], np.where(usable, _RANGE, _MISSING))
    failed = code != _OK
    soh[failed] = np.nan
    sigma[failed] = np.nan
    return soh, sigma, code


def _run(
    k: Folded,
    U: FloatArray,
    rated_ah: FloatArray,
    lw: FloatArray,
    order: IntArray | None,
    span: tuple[int, int],
    long: bool,
    out: tuple[FloatArray, FloatArray, npt.NDArray[np.uint8]],
) -> None:
    """Rows order[lo:hi] (span; rows lo:hi of the input without `order`) of one model, in
    blocks, into out[lo:hi] (in sorted order)."""
    for lo in range(span[0], span[1], _CHUNK):
        hi = min(lo + _CHUNK, span[1])
        rows: slice | IntArray
        if order is None:
            rows = slice(lo, hi)
            rows_u = U[rows]
        else:
            rows = order[lo:hi]
            rows_u = U.take(rows, axis=0)  # whole rows: faster than gathering a column range
        inv = 1.0 / rated_ah[rows] if long else None
        s, sd, err = _estimate_block(k, rows_u, lw[rows], inv)
        out[0][lo:hi], out[1][lo:hi] = s, sd
        out[2][lo:hi] = _OK if err is None else err
