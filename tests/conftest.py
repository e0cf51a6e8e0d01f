"""Shared fixtures. Vectors and data are read from ../shared (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PASSPORT_SHARED", ROOT.parent / "shared"))

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=200
)
settings.load_profile("default")


def shared_path(*parts: str) -> Path:
    """Path under ../shared; fails (CI) or skips (a laptop without it) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} is missing: the shared vectors/data are required"
        if os.environ.get("PASSPORT_REQUIRE_SHARED"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def vectors() -> Path:
    return shared_path("vectors")
