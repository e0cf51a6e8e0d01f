"""Shared fixtures. Vectors and data are read from ../shared (never copied into the repo)."""

from __future__ import annotations

import os

# Before anything imports numpy: one BLAS thread per test worker (see the Makefile).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

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


@pytest.fixture(scope="session")
def soh_dev() -> object:
    """The SoH dev table as the estimator's inputs (a `test_soh_model.Table`), read once."""
    from test_soh_model import read_table

    return read_table(shared_path("data", "soh", "pulse_features_dev.csv").read_text("utf-8"))


@pytest.fixture(scope="session")
def soh_new_prior(soh_dev: Any) -> object:
    """The pooled prior of the dev designs other than `test_soh_nested.NEW` (what `soh
    calibrate` uses for a new design), fitted once."""
    from test_soh_nested import NEW, SETTINGS, _args

    from passport.soh.model import fit_pooled_prior

    o = soh_dev.rows(soh_dev.design != NEW)
    return fit_pooled_prior(o.design, *_args(o), settings=SETTINGS)


@pytest.fixture
def vectors() -> Path:
    return shared_path("vectors")


PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_base() -> str:
    """The PostgreSQL server the registry tests use; fails in CI when it is unreachable."""
    import psycopg

    url = os.environ.get("PASSPORT_TEST_PG", PG_DEFAULT)
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"PostgreSQL at {url} is not reachable ({exc})"
        if os.environ.get("PASSPORT_REQUIRE_PG"):
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty registry database URL: an SQLite file, or a private PostgreSQL schema
    (so parallel test workers never share tables)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'passport.db'}"
        return
    import uuid

    import psycopg

    base = _pg_base()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
