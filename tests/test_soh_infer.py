"""Inference plumbing: how rows find their design's model, and the voltage steps of a block.
Named cases, no fitted model."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

from passport.soh._infer import NameIndex, _design_codes, _steps

NAMES = ["LFP-20Ah", "LMO-10Ah", "NMC-21Ah"]
ROWS = ["LMO-10Ah", "LFP-20Ah", "NMC-99Ah", "LFP-20Ah", "NMC-21Ah", "LMO-10Ah"] * 50


def fresh(name: str) -> str:
    """An equal string that is a different object from the interned one."""
    return "".join(list(name))


def expected(values: list[object]) -> np.ndarray:
    return np.array([NAMES.index(v) if v in NAMES else len(NAMES) for v in values])


def interned(rows: list[str]) -> np.ndarray:
    return as_object([sys.intern(v) for v in rows])


def mixed(rows: list[str]) -> np.ndarray:
    return as_object([fresh(v) if i % 3 else sys.intern(v) for i, v in enumerate(rows)])


def as_object(values: list[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# (name, the rows as given to estimate); a row's code is the index of its name, len(NAMES) for
# anything else, however the array holds it
CASES: list[tuple[str, Callable[[], np.ndarray]]] = [
    ("interned objects", lambda: interned(ROWS)),
    ("equal objects, not interned", lambda: as_object([fresh(v) for v in ROWS])),
    ("interned and not, mixed", lambda: mixed(ROWS)),
    ("a slice not at the start", lambda: interned(ROWS)[7:]),
    ("a strided view", lambda: interned(ROWS * 2)[::2]),
    ("a 2-D array's column", lambda: interned(ROWS * 2).reshape(-1, 2)[:, 0]),
    ("entries that are not strings", lambda: as_object([None, 3, b"LFP-20Ah", ("x",), *ROWS])),
    ("fixed-width strings", lambda: np.array(ROWS)),
    ("one row", lambda: as_object([sys.intern("NMC-21Ah")])),
    ("no row of a known design", lambda: as_object(["LFP-68Ah"] * 10)),
]


def one_slot() -> NameIndex:
    """Every pointer in the first name's slot: the others are found by their look-up."""
    index = NameIndex(NAMES)
    index.mask, index.slots = 0, np.zeros(1, dtype=np.int16)
    return index


def no_table() -> NameIndex:
    """No mask gave each name a slot of its own: one comparison per name."""
    index = NameIndex(NAMES)
    index.slots = None
    return index


# (name, the index of NAMES): every way of finding a row's name gives the same codes
INDEXES: list[tuple[str, Callable[[], NameIndex]]] = [
    ("slot table", lambda: NameIndex(NAMES)),
    ("one slot for all", one_slot),
    ("no slot table", no_table),
]


@pytest.mark.parametrize("index", [c for _, c in INDEXES], ids=[n for n, _ in INDEXES])
@pytest.mark.parametrize("make", [c for _, c in CASES], ids=[n for n, _ in CASES])
def test_design_codes(make: Callable[[], np.ndarray], index: Callable[[], NameIndex]) -> None:
    design = make()
    np.testing.assert_array_equal(_design_codes(design, index()), expected(design.tolist()))


def test_name_index_of_numpy_strings() -> None:
    """Names given as numpy.str_ (a str subclass, which sys.intern refuses) are held as str."""
    index = NameIndex([np.str_(n) for n in NAMES])
    assert all(type(n) is str for n in index.names)
    design = mixed(ROWS)
    np.testing.assert_array_equal(_design_codes(design, index), expected(design.tolist()))


def test_name_index_is_rebuilt_in_another_process() -> None:
    """A pickled index (a model sent to a worker process) carries its names, not this
    process's addresses: unpickled elsewhere, its ids are that process's interned names'."""
    names = ["design-a-unlikely-elsewhere", "design-b-unlikely-elsewhere"]
    blob = pickle.dumps(NameIndex(names))
    script = (
        "import pickle, sys\n"
        f"index = pickle.loads({blob!r})\n"
        "fresh = [id(sys.intern(n)) for n in index.names]\n"
        "print(index.ids[:-1].tolist() == fresh)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_name_index_gives_each_name_its_own_slot() -> None:
    names = [f"design-{i}" for i in range(40)]
    index = NameIndex(names)
    assert index.slots is not None
    pointers = np.array([id(sys.intern(n)) for n in names], dtype=np.uintp)
    np.testing.assert_array_equal(index.slots[(pointers >> 4) & index.mask], np.arange(40))
    assert index.index("design-7") == 7
    assert index.index("design-99") == 40


def test_design_codes_without_identity_matching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where an object's id is not its address (not CPython), every row is looked up."""
    from passport.soh import _infer

    fake = SimpleNamespace(intern=sys.intern, implementation=SimpleNamespace(name="pypy"))
    monkeypatch.setattr(_infer, "sys", fake)
    design = mixed(ROWS)
    np.testing.assert_array_equal(
        _design_codes(design, NameIndex(NAMES)), expected(design.tolist())
    )


def test_design_codes_leave_the_array_and_its_objects_as_they_were() -> None:
    """The identity match reads the array's object pointers: it must not change the array or
    take references to its objects (a leak of one per call would show here)."""
    design = interned(ROWS)
    before = design.copy()
    first = design[0]
    index = NameIndex(NAMES)
    _design_codes(design, index)
    refs = sys.getrefcount(first)
    for _ in range(50):
        _design_codes(design, index)
    assert sys.getrefcount(first) == refs
    assert all(a is b for a, b in zip(design, before, strict=True))


def _rows(n: int, seed: int = 0) -> np.ndarray:
    return 3.3 + np.random.default_rng(seed).normal(0.0, 0.05, (n, 41))


def _tail_nan(u: np.ndarray) -> np.ndarray:
    u[:, 21:] = np.nan  # a protocol that stopped after U21
    return u


def _hostile(u: np.ndarray) -> np.ndarray:
    u[1, 5], u[2, 0], u[3, 40], u[4, 7] = np.inf, -np.inf, np.nan, 1e308
    return u


# (name, the block's whole rows, the model's voltage columns as a range); the steps must equal
# the row-by-row difference of the model's columns, however the block is laid out
STEP_CASES: list[tuple[str, Callable[[], np.ndarray], tuple[int, int]]] = [
    ("all 41 columns", lambda: _rows(50), (0, 41)),
    ("the first 21 of 41", lambda: _rows(50), (0, 21)),
    ("21 of 41, the rest NaN", lambda: _tail_nan(_rows(50)), (0, 21)),
    ("a range not at the start", lambda: _rows(50), (3, 30)),
    ("infinite, NaN and huge voltages", lambda: _hostile(_rows(50)), (0, 41)),
    ("one row", lambda: _rows(1), (0, 41)),
    ("rows that are not contiguous", lambda: _rows(100)[::2], (0, 41)),
]


@pytest.mark.parametrize(
    ("make", "span"), [c[1:] for c in STEP_CASES], ids=[c[0] for c in STEP_CASES]
)
def test_voltage_steps(make: Callable[[], np.ndarray], span: tuple[int, int]) -> None:
    rows_u = make()
    U = rows_u[:, span[0] : span[1]]
    got = np.full((len(U), U.shape[1] - 1), -1.0, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        _steps(SimpleNamespace(span=span), rows_u, U, got)  # type: ignore[arg-type]
        want = (U[:, 1:] - U[:, :-1]).astype(np.float32)
    np.testing.assert_array_equal(got, want)
