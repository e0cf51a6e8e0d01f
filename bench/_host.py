"""What a speed figure was measured on: the same code ran at 1.75 M cells/s on an AVX-512 core
and 0.92 M on an AVX2 one (numpy's float32 exp alone 0.45 against 1.3 ns an element), so a
figure without its host cannot be compared with another session's."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _l2_cache() -> str | None:
    try:  # Linux: the first core's level-2 cache
        for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
            if (index / "level").read_text().strip() == "2":
                return (index / "size").read_text().strip()
    except OSError:
        pass
    return None


def _simd(func: str) -> str | None:
    """The SIMD target numpy dispatches `func` to on float32 (numpy 2: X86_V4 is AVX-512)."""
    try:
        from numpy.lib.introspect import opt_func_info

        info = opt_func_info(func_name=f"^{func}$", signature="float32")
        return str(info[func]["ff"]["current"])
    except (ImportError, KeyError, TypeError):
        return None


def host() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "l2_cache_per_core": _l2_cache(),
        "numpy_exp_float32_simd": _simd("exp"),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
