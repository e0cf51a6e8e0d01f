"""Flushing subnormals while a chunk is estimated (passport.soh._fpu): on, off again, restored
on any exit, and a no-op wherever it cannot be done."""

from __future__ import annotations

import ctypes
import platform
import sys
from typing import Any

import numpy as np
import pytest

from passport.soh import _fpu

# CI runs on x86-64 Linux with glibc, where the flush must work; elsewhere it must be off
SUPPORTED = (
    sys.platform == "linux"
    and platform.machine().lower() in ("x86_64", "amd64")
    and platform.libc_ver()[0] == "glibc"
)


def tiny_product() -> float:
    """1e-30 * 1e-10 in float32: 1e-40 is subnormal (the smallest normal is 1.2e-38)."""
    return float((np.full(16, 1e-30, dtype=np.float32) * np.float32(1e-10)).max())


def mode() -> tuple[int, int]:
    m = _fpu._Mode()
    assert _fpu._State.libm.fegetmode(ctypes.byref(m)) == 0
    return m.control_word, m.mxcsr & ~0x3F  # the exception flags are not modes


def test_the_flush_is_available_exactly_where_it_is_supported() -> None:
    assert _fpu.available() is SUPPORTED


@pytest.mark.skipif(not SUPPORTED, reason="x86-64 Linux with glibc only (CI runs there)")
def test_subnormals_are_zero_inside_and_back_outside() -> None:
    before = mode()
    assert tiny_product() > 0.0
    with _fpu.flush_subnormals():
        assert tiny_product() == 0.0
        assert float(np.exp(np.float32(-95.0))) == 0.0  # a far RBF exponent
        assert float(np.exp(np.float32(-80.0))) > 0.0  # normal results are untouched
    assert tiny_product() > 0.0
    assert float(np.exp(np.float32(-95.0))) > 0.0
    assert mode() == before


@pytest.mark.skipif(not SUPPORTED, reason="x86-64 Linux with glibc only (CI runs there)")
def test_the_modes_are_restored_when_the_block_raises() -> None:
    before = mode()
    with pytest.raises(KeyError), _fpu.flush_subnormals():
        raise KeyError("inside")
    assert mode() == before
    assert tiny_product() > 0.0


@pytest.mark.skipif(not SUPPORTED, reason="x86-64 Linux with glibc only (CI runs there)")
def test_nested_blocks_restore_what_they_found() -> None:
    before = mode()
    with _fpu.flush_subnormals():
        flushed = mode()
        with _fpu.flush_subnormals():
            assert tiny_product() == 0.0
        assert mode() == flushed
        assert tiny_product() == 0.0
    assert mode() == before


def test_where_unavailable_the_block_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fpu._State, "checked", True)
    monkeypatch.setattr(_fpu._State, "libm", None)
    assert not _fpu.available()
    with _fpu.flush_subnormals():
        assert tiny_product() > 0.0


class FakeLibm:
    """fegetmode/fesetmode that report `mxcsr` and record what they are given, so that the
    self-check can be driven into each of its refusals."""

    def __init__(self, mxcsr: int, get_rc: int = 0, set_rc: int = 0) -> None:
        self.mxcsr, self.get_rc, self.set_rc = mxcsr, get_rc, set_rc
        self.set_calls: list[int] = []

    def fegetmode(self, ref: Any) -> int:
        ref._obj.mxcsr = self.mxcsr
        return self.get_rc

    def fesetmode(self, ref: Any) -> int:
        self.set_calls.append(ref._obj.mxcsr)
        return self.set_rc


# (name, libm): the self-check refuses each; none of them flushes anything, so a real
# register that kept subnormals must also be refused by the functional check
REFUSED = [
    ("fegetmode fails", FakeLibm(0x1F80, get_rc=-1)),
    ("exceptions unmasked: not the layout or state expected", FakeLibm(0x0000)),
    ("fesetmode fails", FakeLibm(0x1F80, set_rc=-1)),
    ("the bits do not flush", FakeLibm(0x1F80)),
]


@pytest.mark.parametrize("libm", [c for _, c in REFUSED], ids=[n for n, _ in REFUSED])
def test_the_self_check_refuses(libm: FakeLibm) -> None:
    assert not _fpu._works(libm)


def test_the_self_check_restores_what_it_found() -> None:
    libm = FakeLibm(0x1F80)
    _fpu._works(libm)
    assert libm.set_calls == [0x1F80 | 0x8040, 0x1F80]


def test_other_platforms_are_not_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fpu.platform, "machine", lambda: "aarch64")
    assert _fpu._libm() is None
    monkeypatch.setattr(_fpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(_fpu.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert _fpu._libm() is None
