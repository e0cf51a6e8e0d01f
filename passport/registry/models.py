"""Registry tables (SQLModel). Records are stored as their exact bytes, keyed by SHA-256.

Migrations live in `passport/registry/migrations` (Alembic); a test checks that they build
exactly this schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel

from passport.registry.db import UTCDateTime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Cell(SQLModel, table=True):
    """One passport (one birth record). A battery id seen with two cell keys raises a clone
    alert; forks flag the cell."""

    __tablename__ = "cell"

    id: int | None = Field(default=None, primary_key=True)
    passport_id: str = Field(index=True, max_length=36)  # not unique: a reuse is evidence
    battery_id: str = Field(index=True, max_length=128)
    birth_digest: bytes = Field(sa_type=LargeBinary(32), unique=True)
    cell_key: bytes = Field(sa_type=LargeBinary(32), index=True)
    flagged: bool = False
    created_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class Record(SQLModel, table=True):
    """Every record ever accepted, as its exact bytes."""

    __tablename__ = "record"
    __table_args__ = (
        Index("ix_record_cell_seq", "cell_id", "seq"),
        Index("ix_record_prev", "prev"),
    )

    digest: bytes = Field(sa_type=LargeBinary(32), primary_key=True)
    cell_id: int = Field(foreign_key="cell.id")
    kind: int
    seq: int | None = None  # entries: seq; checkpoints: count of evicted entries
    prev: bytes | None = Field(default=None, sa_type=LargeBinary(32))
    time: int = Field(sa_type=BigInteger)  # claimed, epoch seconds
    signer: str = Field(max_length=200)
    raw: bytes = Field(sa_type=LargeBinary)
    ingested_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class ChainHead(SQLModel, table=True):
    """The newest entry the registry holds for a cell (for rollback checks)."""

    __tablename__ = "chain_head"

    cell_id: int = Field(foreign_key="cell.id", primary_key=True)
    seq: int
    digest: bytes = Field(sa_type=LargeBinary(32))
    time: int = Field(sa_type=BigInteger)


class ActorCert(SQLModel, table=True):
    """Actor certificates records named by x5t, so verifiers can resolve them from here too."""

    __tablename__ = "actor_cert"

    sha256: bytes = Field(sa_type=LargeBinary(32), primary_key=True)
    x5t64: bytes = Field(sa_type=LargeBinary(8), index=True)
    der: bytes = Field(sa_type=LargeBinary)
    subject: str = Field(max_length=400)
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    first_seen: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class LogLeaf(SQLModel, table=True):
    """Leaf `idx` of the transparency log: the record accepted idx-th."""

    __tablename__ = "log_leaf"

    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    digest: bytes = Field(
        sa_column=Column(LargeBinary(32), ForeignKey("record.digest"), unique=True, nullable=False)
    )
    leaf_hash: bytes = Field(sa_type=LargeBinary(32))


class LogNode(SQLModel, table=True):
    """Hash of a complete perfect subtree: id = level << 48 | index (level 0 = leaf hashes)."""

    __tablename__ = "log_node"

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_type=LargeBinary(32))


class LogCheckpoint(SQLModel, table=True):
    """Every checkpoint the log signed (C2SP signed note). Each is consistent with the last."""

    __tablename__ = "log_checkpoint"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root: bytes = Field(sa_type=LargeBinary(32))
    note: str = Field(sa_type=Text)
    signed_at: dt.datetime = Field(sa_type=UTCDateTime)


class LogMeta(SQLModel, table=True):
    """The log's identity and its size (the row appends lock). One row, id 1."""

    __tablename__ = "log_meta"

    id: int = Field(default=1, primary_key=True)
    origin: str = Field(max_length=200)
    public_key_pem: str = Field(sa_type=Text)
    private_key_pem: str = Field(sa_type=Text)
    size: int = Field(default=0, sa_type=BigInteger)


class Alert(SQLModel, table=True):
    """Evidence of trouble: fork, clone, checkpoint mismatch, rollback."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("kind", "fingerprint", name="uq_alert_kind_fingerprint"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40, index=True)
    cell_id: int | None = Field(default=None, foreign_key="cell.id", index=True)
    fingerprint: str = Field(max_length=200)  # makes re-ingesting the same evidence a no-op
    message: str = Field(sa_type=Text)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


class DataSheet(SQLModel, table=True):
    """OEM model data sheets (signed COSE_Sign1 bytes), keyed by the SHA-256 birth records
    carry. Stored only after verification; see `passport.datasheet`."""

    __tablename__ = "datasheet"

    sha256: bytes = Field(sa_type=LargeBinary(32), primary_key=True)
    raw: bytes = Field(sa_type=LargeBinary)
    model: str = Field(max_length=128)
    manufacturer: str = Field(max_length=200)
    revision: str = Field(max_length=64)
    added_at: dt.datetime = Field(default_factory=_now, sa_type=UTCDateTime)


metadata = SQLModel.metadata


def _table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


# Core tables: queries use these (typed columns, no ORM overhead on the ingest path).
cell_t = _table(Cell)
record_t = _table(Record)
chain_head_t = _table(ChainHead)
actor_cert_t = _table(ActorCert)
log_leaf_t = _table(LogLeaf)
log_node_t = _table(LogNode)
log_checkpoint_t = _table(LogCheckpoint)
log_meta_t = _table(LogMeta)
alert_t = _table(Alert)
datasheet_t = _table(DataSheet)
