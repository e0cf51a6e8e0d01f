"""Database engines: SQLite (embedded default, WAL) and PostgreSQL (psycopg 3), one URL away.

SQLite is tuned for a registry that several processes write: WAL journal, a busy timeout,
foreign keys on, and transactions that start with BEGIN IMMEDIATE so that writers queue for
the lock instead of failing mid-transaction. PostgreSQL serializes appends to the log with a
row lock (see `log.py`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

from sqlalchemy import DateTime, Table, create_engine, event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.types import TypeDecorator

from passport.errors import InputError

DB_ENV = "PASSPORT_DB"
DEFAULT_URL = "sqlite:///passport.db"
BUSY_TIMEOUT_S = 60


def resolve_url(url: str | None) -> str:
    """The SQLAlchemy URL to use: argument, else $PASSPORT_DB, else ./passport.db.

    A bare path means an SQLite file; postgresql:// URLs get the psycopg 3 driver.
    """
    url = url or os.environ.get(DB_ENV) or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    if not url.startswith(("sqlite", "postgresql")):
        raise InputError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://")
    return url


READ_ONLY = "passport_read_only"


def reader(engine: Engine) -> Connection:
    """A connection for reading only: on SQLite it does not take the write lock."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """executemany straight on the driver: skips SQLAlchemy's per-row compile and bind
    processing, which cost more than SQLite's own insert. Values must already be in the
    driver's terms (bytes, ints, str; datetimes through `bind_value`)."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(mark for _ in columns)})"
    )
    conn.exec_driver_sql(sql, list(rows))


def bind_value(conn: Connection, column: Any, value: Any) -> Any:
    """A value as the column's type would hand it to the driver (e.g. a UTC datetime)."""
    process = column.type.bind_processor(conn.dialect)
    return process(value) if process is not None else value


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    url = resolve_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S}, **kwargs)
        _tune_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # pysqlite would start transactions lazily and as DEFERRED; a writer that upgrades its
        # lock late can deadlock against another. IMMEDIATE takes the write lock up front;
        # connections marked read-only (see `reader`) start plain transactions and never
        # make writers wait.
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stored as UTC (naive in SQLite), read back with tzinfo=UTC re-attached."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
