"""The transparency log in SQL: leaves, perfect-subtree hashes, signed checkpoints, receipts.

The tree is RFC 9162's over the exact record bytes. Every hash of a complete perfect subtree is
stored (`log_node`, id = level << 48 | index), so appending a leaf writes O(1) rows amortized
and any root, inclusion or consistency proof needs O(log n) rows, fetched in one query.
Appends happen inside the caller's transaction with the `log_meta` row locked, so leaf indices
are dense and a crash leaves either all of a batch or none of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from passport import merkle
from passport.errors import StorageError, VerificationError
from passport.notes import Checkpoint
from passport.receipts import make_receipt
from passport.registry.db import bulk_insert
from passport.registry.models import (
    LogCheckpoint,
    log_checkpoint_t,
    log_leaf_t,
    log_meta_t,
    log_node_t,
)

NODE_SHIFT = 48


def node_id(level: int, index: int) -> int:
    return level << NODE_SHIFT | index


@dataclass(frozen=True, slots=True)
class LogState:
    origin: str
    size: int
    key: ed25519.Ed25519PrivateKey


def _frontier(size: int) -> list[int]:
    """Ids of the perfect subtrees on the right edge of a tree of `size` leaves."""
    return [node_id(level, (size >> level) - 1) for level in range(64) if size >> level & 1]


class SqlLog:
    """The log as seen through one connection (inside the caller's transaction)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # ------------------------------------------------------------------ state

    def state(self, *, lock: bool = False) -> LogState:
        query = select(log_meta_t).where(log_meta_t.c.id == 1)
        if lock and self.conn.dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already locks
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        if row is None:
            raise StorageError("the registry is not initialised (run `passport registry init`)")
        key = load_pem_private_key(row.private_key_pem.encode(), None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return LogState(row.origin, int(row.size), key)

    def nodes(self, ids: Iterable[int]) -> dict[int, bytes]:
        wanted = sorted(set(ids))
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.conn.execute(
                select(log_node_t.c.id, log_node_t.c.hash).where(log_node_t.c.id.in_(chunk))
            )
            found.update((int(i), bytes(h)) for i, h in rows)
        missing = set(wanted) - set(found)
        if missing:
            raise StorageError(
                f"the log is missing {len(missing)} tree nodes: the database is damaged"
            )
        return found

    def _getter(self, nodes: Iterable[tuple[int, int]]) -> Callable[[int, int], bytes]:
        """Fetch the perfect subtrees a computation needs in one query; serve them from memory."""
        found = self.nodes(node_id(level, index) for level, index in nodes)
        return lambda level, index: found[node_id(level, index)]

    # ------------------------------------------------------------------ writing

    def append(self, size: int, leaves: Sequence[tuple[bytes, bytes]]) -> int:
        """Append (record digest, leaf hash) pairs at index `size`; returns the new size."""
        if not leaves:
            return size
        cache = self.nodes(_frontier(size)) if size else {}
        new_nodes: dict[int, bytes] = {}
        leaf_rows = []
        for digest, leaf_hash in leaves:
            index, level = size, 0
            new_nodes[node_id(0, index)] = leaf_hash
            cache[node_id(0, index)] = leaf_hash
            while index & 1:
                left = cache[node_id(level, index - 1)]
                right = cache[node_id(level, index)]
                index, level = index >> 1, level + 1
                parent = merkle.node_hash(left, right)
                new_nodes[node_id(level, index)] = cache[node_id(level, index)] = parent
            leaf_rows.append((size, digest, leaf_hash))
            size += 1
        bulk_insert(self.conn, log_leaf_t, ("idx", "digest", "leaf_hash"), leaf_rows)
        bulk_insert(self.conn, log_node_t, ("id", "hash"), list(new_nodes.items()))
        self.conn.execute(update(log_meta_t).where(log_meta_t.c.id == 1).values(size=size))
        return size

    def sign_checkpoint(self, state: LogState, size: int, now: dt.datetime) -> str:
        """Sign and store a checkpoint for `size`, after proving it consistent with the last."""
        last = self.latest_checkpoint()
        if last is not None and last.tree_size == size:
            return last.note
        root = self.root(size)
        if last is not None and last.tree_size > 0:  # anything extends the empty tree
            if size < last.tree_size:
                raise StorageError("refusing to sign a checkpoint smaller than the last one")
            proof = self.consistency_proof(last.tree_size, size)
            try:
                merkle.verify_consistency(last.tree_size, size, bytes(last.root), root, proof)
            except VerificationError as exc:
                raise StorageError(
                    f"the log is not consistent with its last checkpoint: {exc}"
                ) from None
        note = Checkpoint(state.origin, size, root).sign(state.origin, state.key)
        self.conn.execute(
            insert(log_checkpoint_t),
            [{"tree_size": size, "root": root, "note": note, "signed_at": now}],
        )
        return note

    # ------------------------------------------------------------------ reading

    def latest_checkpoint(self) -> LogCheckpoint | None:
        row = self.conn.execute(
            select(log_checkpoint_t).order_by(log_checkpoint_t.c.tree_size.desc()).limit(1)
        ).first()
        return LogCheckpoint.model_validate(row._mapping) if row is not None else None

    def checkpoint_covering(self, index: int) -> LogCheckpoint | None:
        """The first checkpoint whose tree contains leaf `index` (when it was committed)."""
        row = self.conn.execute(
            select(log_checkpoint_t)
            .where(log_checkpoint_t.c.tree_size > index)
            .order_by(log_checkpoint_t.c.tree_size)
            .limit(1)
        ).first()
        return LogCheckpoint.model_validate(row._mapping) if row is not None else None

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return merkle.root(size, self._getter(merkle.subtree_nodes(0, size)))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        nodes = merkle.inclusion_proof_nodes(index, size)
        return merkle.inclusion_proof(index, size, self._getter(nodes))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        nodes = merkle.consistency_proof_nodes(size1, size2)
        return merkle.consistency_proof(size1, size2, self._getter(nodes))

    def leaf_of(self, digest: bytes) -> int | None:
        row = self.conn.execute(
            select(log_leaf_t.c.idx).where(log_leaf_t.c.digest == digest)
        ).first()
        return int(row[0]) if row is not None else None

    def receipt(self, digest: bytes, state: LogState) -> bytes:
        """An RFC 9942 receipt for a logged record, against the first signed checkpoint that
        covers it: its `iat` is then the earliest time the log can prove (what matters when
        the record's signer is revoked later)."""
        index = self.leaf_of(digest)
        if index is None:
            raise StorageError(f"record {digest.hex()} is not in the log")
        checkpoint = self.checkpoint_covering(index)
        if checkpoint is None:
            raise StorageError("no signed checkpoint covers this record yet")
        proof = self.inclusion_proof(index, checkpoint.tree_size)
        return make_receipt(
            state.key,
            origin=state.origin,
            tree_size=checkpoint.tree_size,
            leaf_index=index,
            proof=proof,
            root=bytes(checkpoint.root),
            signed_at=checkpoint.signed_at,
        )
