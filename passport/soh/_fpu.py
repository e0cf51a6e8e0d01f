"""Subnormal floats flushed to zero while a chunk is estimated (x86-64 Linux, glibc only).

Why (Gaussian models, the kernel of model files before session 19; the Cauchy RBF 1 / (1 + t)
of newer ones is subnormal only for hostile rows, t > 1e37): a row far from an RBF centre
has an exponent between -104 and -87, whose float32 exp() is subnormal, and every SIMD
instruction that makes or reads a subnormal takes a microcode assist (exp over such values
runs 13 times slower; so does the weighted sum that reads them). About 1 % of a mixed chunk's
exponents fall there, and they cost a tenth of the inference time. With the SSE control
register's FTZ and DAZ bits set they are zero instead (they would add less than 1e-30 to an
estimate: the outputs are the same), at full speed.

The register belongs to the calling thread and is set through glibc's fegetmode/fesetmode
(femode_t: the x87 control word and MXCSR; exception flags are left alone). The thread's
previous modes are restored on the way out, whatever happens inside. Anywhere else (another
C library or CPU, or a check below failing) `flush_subnormals` does nothing: the same numbers,
only slower.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_FTZ = 0x8000  # MXCSR bit 15: subnormal results are flushed to zero
_DAZ = 0x0040  # MXCSR bit 6: subnormal inputs are read as zero
_MASKS = 0x1F80  # MXCSR bits 7-12: every exception masked, as numpy and CPython run


class _Mode(ctypes.Structure):
    """glibc's femode_t on x86-64 (bits/fenv.h)."""

    _fields_ = [
        ("control_word", ctypes.c_uint16),
        ("reserved", ctypes.c_uint16),
        ("mxcsr", ctypes.c_uint32),
    ]


def _libm() -> Any | None:
    """glibc's libm with fegetmode/fesetmode (glibc 2.25 and later), on x86-64 Linux only."""
    machine = platform.machine().lower()
    if sys.platform != "linux" or machine not in ("x86_64", "amd64"):
        return None
    if platform.libc_ver()[0] != "glibc" or ctypes.sizeof(_Mode) != 8:
        return None
    name = ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        libm = ctypes.CDLL(name)
        get, put = libm.fegetmode, libm.fesetmode
    except (OSError, AttributeError):
        return None
    get.argtypes = put.argtypes = [ctypes.POINTER(_Mode)]
    get.restype = put.restype = ctypes.c_int
    return libm


def _flushed(mode: _Mode) -> _Mode:
    """A copy of `mode` with FTZ and DAZ set."""
    out = _Mode.from_buffer_copy(mode)
    out.mxcsr |= _FTZ | _DAZ
    return out


def _works(libm: Any) -> bool:
    """The register reads as expected (every exception masked), a subnormal float32 product
    becomes zero once the bits are set, and is subnormal again once the modes are restored."""
    saved = _Mode()
    if libm.fegetmode(ctypes.byref(saved)) != 0 or saved.mxcsr & _MASKS != _MASKS:
        return False
    tiny = np.full(64, 1e-30, dtype=np.float32)
    if libm.fesetmode(ctypes.byref(_flushed(saved))) != 0:
        return False
    try:
        inside = float(np.max(tiny * np.float32(1e-10)))
    finally:
        libm.fesetmode(ctypes.byref(saved))
    return inside == 0.0 and float(np.min(tiny * np.float32(1e-10))) > 0.0


class _State:
    libm: Any | None = None
    checked = False


def available() -> bool:
    """Whether `flush_subnormals` changes anything on this machine (checked once)."""
    if not _State.checked:
        libm = _libm()
        _State.libm = libm if libm is not None and _works(libm) else None
        _State.checked = True
    return _State.libm is not None


@contextmanager
def flush_subnormals() -> Iterator[None]:
    """Within the block, this thread's float arithmetic flushes subnormals to zero."""
    if not available():
        yield
        return
    libm: Any = _State.libm
    saved = _Mode()
    if libm.fegetmode(ctypes.byref(saved)) != 0:
        yield
        return
    libm.fesetmode(ctypes.byref(_flushed(saved)))
    try:
        yield
    finally:
        libm.fesetmode(ctypes.byref(saved))
