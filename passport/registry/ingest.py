"""Verified ingest: images and evicted-record journals into the registry.

Two phases per batch. First, without locks, every input is decoded and verified with the trust
model: an image with `check_image` (all or nothing), a journal of evicted records along the
hash chains the registry already holds, from the birth record and with every known checkpoint
in place, so that a checkpoint summarizing a different past is caught. Then, in one
transaction with the log locked, the new records are stored as their exact bytes, appended to
the log, forks and clones recorded as alerts, chain heads moved and a checkpoint signed. A
crash at any point leaves the database as it was before the batch.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from passport import merkle
from passport.chain import Finding, check_image, check_records
from passport.errors import VerificationError
from passport.image import Image
from passport.records import Birth, Checkpoint, Entry, SignedRecord
from passport.registry.db import bind_value, bulk_insert, reader
from passport.registry.log import SqlLog
from passport.registry.models import (
    actor_cert_t,
    alert_t,
    cell_t,
    chain_head_t,
    record_t,
)
from passport.trust.bundle import TrustBundle
from passport.trust.roles import roles_of
from passport.trust.store import thumbprint

MAX_FORK_PATHS = 64
RECORD_COLUMNS = (
    "digest",
    "cell_id",
    "kind",
    "seq",
    "prev",
    "time",
    "signer",
    "raw",
    "ingested_at",
)


@dataclass(frozen=True, slots=True)
class Source:
    """One input: an image, or a journal of evicted records (`image` None)."""

    name: str
    image: Image | None = None
    records: tuple[SignedRecord, ...] = ()


@dataclass(slots=True)
class IngestSummary:
    sources: int = 0
    stored: int = 0
    duplicates: int = 0  # already in the registry: a no-op
    rejected: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # source -> findings
    alerts: list[dict[str, Any]] = field(default_factory=list)
    tree_size: int = 0
    seconds: float = 0.0

    def reject(self, source: str, findings: Iterable[Finding]) -> None:
        self.rejected.setdefault(source, []).extend(f.to_dict() for f in findings)


class RegistryReceipts:
    """A `ReceiptLookup` answered from the registry's own log: a record counts as logged when
    the first checkpoint covering its leaf was signed. The operator is trusted here; auditors
    hold receipts instead (`passport.receipts.ReceiptBook`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def logged_at(self, record: SignedRecord) -> dt.datetime | None:
        with reader(self.engine) as conn:
            log = SqlLog(conn)
            index = log.leaf_of(record.digest)
            if index is None:
                return None
            checkpoint = log.checkpoint_covering(index)
            return checkpoint.signed_at if checkpoint is not None else None


def birth_digest_of(
    record: SignedRecord,
    lookup: dict[bytes, SignedRecord],
    cache: dict[bytes, bytes | None] | None = None,
) -> bytes | None:
    """Which passport a record belongs to, following `prev` links through `lookup`. With a
    `cache`, every record walked past is remembered, so a whole history costs O(n)."""
    cache = {} if cache is None else cache
    walked: list[bytes] = []
    answer: bytes | None = None
    while True:
        if record.digest in cache:
            answer = cache[record.digest]
            break
        walked.append(record.digest)
        body = record.body
        if isinstance(body, Birth):
            answer = record.digest
            break
        if isinstance(body, Checkpoint):
            answer = body.birth
            break
        assert isinstance(body, Entry)
        found = lookup.get(body.prev)
        if found is None or len(walked) > 10_000_000:
            break
        record = found
    for digest in walked:
        cache[digest] = answer
    return answer


# ------------------------------------------------------------------------------------------
# Phase 1: verification (no locks)


class Verifier:
    def __init__(self, engine: Engine, trust: TrustBundle, now: dt.datetime | None) -> None:
        self.engine = engine
        self.trust = trust
        self.now = now
        self.receipts = RegistryReceipts(engine)

    def image(
        self,
        source: Source,
        summary: IngestSummary,
        pending: dict[bytes, SignedRecord],
        findings: Sequence[Finding] | None = None,
        known: frozenset[bytes] | set[bytes] = frozenset(),
    ) -> list[SignedRecord]:
        """Accept a tag that verifies (`findings` when a worker process checked it already).
        A checkpoint in `known` (stored already) was cross-checked when it came."""
        image = source.image
        assert image is not None
        if findings is None:
            findings = check_image(image, self.trust, now=self.now, receipts=self.receipts).findings
        if findings:
            summary.reject(source.name, findings)
            return []
        if image.checkpoint is not None and image.checkpoint.digest not in known:
            self._cross_check(source, image.checkpoint, summary, pending)
        return list(image.records)

    def _cross_check(
        self,
        source: Source,
        checkpoint: SignedRecord,
        summary: IngestSummary,
        pending: dict[bytes, SignedRecord],
    ) -> None:
        """A tag's checkpoint against the evicted entries the registry already holds: a
        checkpoint summarizing another past raises an alert (the tag itself verified)."""
        assert source.image is not None
        with reader(self.engine) as conn:
            lookup = dict(pending)
            lookup.update((r.digest, r) for r in source.image.records)
            self._load_predecessors(conn, [checkpoint], lookup)
            history = self._history(conn, source.image.birth.digest, lookup)
        if history is None:
            return
        scratch = IngestSummary()
        self._verify(source.name, history, [checkpoint], scratch)
        summary.alerts.extend(scratch.alerts)

    def journal(
        self, source: Source, summary: IngestSummary, pending: dict[bytes, SignedRecord]
    ) -> list[SignedRecord]:
        """Accept the journal's records that extend a chain from a passport's birth record."""
        with reader(self.engine) as conn:
            lookup = dict(pending)
            lookup.update((r.digest, r) for r in source.records)
            self._load_predecessors(conn, source.records, lookup)
            by_birth: dict[bytes, list[SignedRecord]] = defaultdict(list)
            cache: dict[bytes, bytes | None] = {}
            for record in source.records:
                birth = birth_digest_of(record, lookup, cache)
                if birth is None:
                    summary.reject(source.name, [_orphan(record)])
                else:
                    by_birth[birth].append(record)
            accepted: list[SignedRecord] = []
            for birth, records in by_birth.items():
                history = self._history(conn, birth, lookup)
                if history is None:
                    summary.reject(source.name, [_orphan(r) for r in records])
                    continue
                accepted.extend(self._verify(source.name, history, records, summary))
        return accepted

    def _load_predecessors(
        self, conn: Connection, records: Sequence[SignedRecord], lookup: dict[bytes, SignedRecord]
    ) -> None:
        """Bring in stored records the journal links to, and their passports' births."""
        wanted = {r.body.prev for r in records if isinstance(r.body, Entry)} - lookup.keys()
        births = {r.body.birth for r in records if isinstance(r.body, Checkpoint)}
        if not wanted and not births:
            return
        rows = conn.execute(
            select(cell_t.c.birth_digest, record_t.c.raw)
            .join(cell_t, cell_t.c.id == record_t.c.cell_id)
            .where(
                or_(record_t.c.digest.in_(list(wanted)), cell_t.c.birth_digest.in_(list(births)))
            )
        ).all()
        cells = {bytes(b) for b, _ in rows} | births
        for (raw,) in conn.execute(
            select(record_t.c.raw)
            .join(cell_t, cell_t.c.id == record_t.c.cell_id)
            .where(cell_t.c.birth_digest.in_(list(cells)))
        ):
            record = SignedRecord.from_bytes(bytes(raw))
            lookup.setdefault(record.digest, record)

    def _history(
        self, conn: Connection, birth: bytes, lookup: dict[bytes, SignedRecord]
    ) -> list[SignedRecord] | None:
        """Every record of the passport born in `birth` that we know (stored or pending)."""
        cache: dict[bytes, bytes | None] = {}
        records = [r for r in lookup.values() if birth_digest_of(r, lookup, cache) == birth]
        return records if any(r.digest == birth for r in records) else None

    def _verify(
        self,
        name: str,
        history: list[SignedRecord],
        new: list[SignedRecord],
        summary: IngestSummary,
    ) -> list[SignedRecord]:
        """Check every chain from the birth record through a new record; keep what passes."""
        birth = next(r for r in history if isinstance(r.body, Birth))
        checkpoints = [r for r in history if isinstance(r.body, Checkpoint)]
        children: dict[bytes, list[SignedRecord]] = defaultdict(list)
        for record in history:
            if isinstance(record.body, Entry):
                children[record.body.prev].append(record)
        new_digests = {r.digest for r in new}
        bad: set[bytes] = set()
        checked: set[bytes] = set()  # what appeared in a sequence that was verified
        mismatches: list[tuple[list[SignedRecord], int, str]] = []
        paths = _paths(birth.digest, children)
        for path in paths:
            sequence = _with_checkpoints(birth, path, checkpoints)
            if not new_digests & {r.digest for r in sequence}:
                continue
            checked.update(r.digest for r in sequence)
            report = check_records(sequence, self.trust, now=self.now, receipts=self.receipts)
            for finding in report.findings:
                if finding.index is None:
                    continue
                culprit = sequence[finding.index]
                if finding.rule == "chain.checkpoint-mismatch":
                    mismatches.append((sequence, finding.index, finding.message))
                elif culprit.digest in new_digests:
                    summary.reject(name, [finding])
                    bad.add(culprit.digest)
        for path in paths:  # a rejected record takes down every new record built on it
            for position, record in enumerate(path):
                if record.digest in bad:
                    bad.update(r.digest for r in path[position:] if r.digest in new_digests)
                    break
        for sequence, index, message in mismatches:
            # Compared against an entry we just rejected? Then the entry lied, not the checkpoint.
            if not any(r.digest in bad for r in sequence[: index + 1]):
                summary.alerts.append(
                    _alert("checkpoint-mismatch", birth, sequence[index], message)
                )
        accepted = []
        for record in new:
            if record.digest in bad:
                continue
            if record.digest not in checked:  # an entry off every chain, a checkpoint that
                summary.reject(name, [_orphan(record)])  # stands for entries we do not hold
                continue
            accepted.append(record)
        return accepted


def _orphan(record: SignedRecord) -> Finding:
    return Finding(
        "registry.orphan", None,
        f"{record.kind.name.lower()} {record.digest.hex()[:16]}... does not link to a passport "
        "the registry holds (ingest its image, or older evicted records, first)",
    )  # fmt: skip


def _paths(start: bytes, children: dict[bytes, list[SignedRecord]]) -> list[list[SignedRecord]]:
    """Every maximal chain of entries from `start` (forks give several)."""
    paths: list[list[SignedRecord]] = []
    stack: list[tuple[bytes, list[SignedRecord]]] = [(start, [])]
    while stack and len(paths) < MAX_FORK_PATHS:
        digest, path = stack.pop()
        kids = children.get(digest, [])
        if not kids:
            paths.append(path)
        stack.extend((kid.digest, [*path, kid]) for kid in kids)
    return paths


def _with_checkpoints(
    birth: SignedRecord, path: list[SignedRecord], checkpoints: list[SignedRecord]
) -> list[SignedRecord]:
    """The birth, the path's entries, and each checkpoint after the entry whose seq it counts."""
    by_count: dict[int, list[SignedRecord]] = defaultdict(list)
    for checkpoint in checkpoints:
        assert isinstance(checkpoint.body, Checkpoint)
        by_count[checkpoint.body.count].append(checkpoint)
    sequence = [birth]
    for record in path:
        assert isinstance(record.body, Entry)
        sequence.append(record)
        sequence.extend(by_count.get(record.body.seq, []))
    return sequence


def _alert(kind: str, birth: SignedRecord, record: SignedRecord, message: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "birth": birth.digest.hex(),
        "record": record.digest.hex(),
        "message": message,
    }


# ------------------------------------------------------------------------------------------
# Phase 2: storage (one transaction, log locked)


class Store:
    def __init__(self, conn: Connection, trust: TrustBundle, now: dt.datetime) -> None:
        self.conn = conn
        self.trust = trust
        self.now = now
        self.log = SqlLog(conn)
        self.cell_of: dict[bytes, int] = {}  # record digest (or checkpoint head) -> cell id
        self.ingested_at = bind_value(conn, record_t.c.ingested_at, now)

    def put(self, records: list[SignedRecord], summary: IngestSummary) -> None:
        state = self.log.state(lock=True)
        existing = self._existing([r.digest for r in records])
        fresh: list[SignedRecord] = []
        for record in records:
            if record.digest in existing:
                summary.duplicates += 1
                continue
            existing.add(record.digest)
            fresh.append(record)
        self._insert_cells([r for r in fresh if isinstance(r.body, Birth)], summary)
        rows = [self._row(record) for record in fresh]
        size = state.size
        if rows:
            self._forks([r for r in fresh if isinstance(r.body, Entry)], summary)
            bulk_insert(self.conn, record_t, RECORD_COLUMNS, rows)
            size = self.log.append(size, [(r.digest, merkle.leaf_hash(r.raw)) for r in fresh])
            self._move_heads(fresh)
            self._remember_certs(fresh)
            summary.stored += len(rows)
        for alert in summary.alerts:
            self._alert(alert)
        self.log.sign_checkpoint(state, size, self.now)
        summary.tree_size = size

    def _existing(self, digests: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = self.conn.execute(select(record_t.c.digest).where(record_t.c.digest.in_(chunk)))
            found.update(bytes(d) for (d,) in rows)
        return found

    def _row(self, record: SignedRecord) -> tuple[Any, ...]:
        body = record.body
        if isinstance(body, Birth):
            cell_id, seq, prev, time = self.cell_of[record.digest], None, None, body.issued_at
        elif isinstance(body, Checkpoint):
            cell_id = self._cell_of_birth(body.birth)
            seq, prev, time = body.count, body.head, body.time  # prev: the head it vouches for
            self.cell_of.setdefault(body.head, cell_id)
        else:
            assert isinstance(body, Entry)
            cell_id, seq, prev, time = self._cell_of_prev(body.prev), body.seq, body.prev, body.time
        self.cell_of[record.digest] = cell_id
        signer = "cell" if record.x5t is None else f"x5t:{record.x5t[1].hex()}"
        return (record.digest, cell_id, int(record.kind), seq, prev, time, signer, record.raw,
                self.ingested_at)  # fmt: skip

    def _cell_of_birth(self, birth_digest: bytes) -> int:
        if birth_digest not in self.cell_of:
            row = self.conn.execute(
                select(cell_t.c.id).where(cell_t.c.birth_digest == birth_digest)
            ).first()
            if row is None:
                raise VerificationError("a record arrived before its passport's birth record",
                                        rule="registry.orphan")  # fmt: skip
            self.cell_of[birth_digest] = int(row[0])
        return self.cell_of[birth_digest]

    def _cell_of_prev(self, prev: bytes) -> int:
        if prev not in self.cell_of:
            row = (
                self.conn.execute(
                    select(record_t.c.cell_id).where(record_t.c.digest == prev)
                ).first()
                or self.conn.execute(  # an entry right after a checkpoint
                    select(record_t.c.cell_id)
                    .where(record_t.c.prev == prev)
                    .where(record_t.c.seq.is_not(None))
                ).first()
            )
            if row is None:
                raise VerificationError("an entry arrived before the record it follows",
                                        rule="registry.orphan")  # fmt: skip
            self.cell_of[prev] = int(row[0])
        return self.cell_of[prev]

    def _insert_cells(self, births: list[SignedRecord], summary: IngestSummary) -> None:
        """One cell row per new birth record, in one statement; raise clone alerts for births
        that share a battery id (with another cell key) or a passport id with another."""
        if not births:
            return
        bodies = [(r, r.body) for r in births if isinstance(r.body, Birth)]
        battery_ids = list({b.battery_id for _, b in bodies})
        passport_ids = list({str(b.passport_id) for _, b in bodies})
        known: list[tuple[int, bytes, str, str, bytes]] = []
        for start in range(0, max(len(battery_ids), len(passport_ids)), 400):
            known.extend(
                (int(i), bytes(k), p, b, bytes(d))
                for i, k, p, b, d in self.conn.execute(
                    select(cell_t.c.id, cell_t.c.cell_key, cell_t.c.passport_id,
                           cell_t.c.battery_id, cell_t.c.birth_digest)
                    .where(or_(cell_t.c.battery_id.in_(battery_ids[start : start + 400]),
                               cell_t.c.passport_id.in_(passport_ids[start : start + 400])))
                )
            )  # fmt: skip
        self.conn.execute(insert(cell_t), [
            {"passport_id": str(b.passport_id), "battery_id": b.battery_id,
             "birth_digest": r.digest, "cell_key": b.cell_public_key, "flagged": False,
             "created_at": self.now}
            for r, b in bodies
        ])  # fmt: skip
        digests = [r.digest for r, _ in bodies]
        for start in range(0, len(digests), 500):
            for cell_id, digest in self.conn.execute(
                select(cell_t.c.id, cell_t.c.birth_digest).where(
                    cell_t.c.birth_digest.in_(digests[start : start + 500])
                )
            ):
                self.cell_of[bytes(digest)] = int(cell_id)
        by_battery: dict[str, list[tuple[int, bytes, str, str, bytes]]] = defaultdict(list)
        by_passport: dict[str, list[tuple[int, bytes, str, str, bytes]]] = defaultdict(list)
        for row in known:
            by_battery[row[3]].append(row)
            by_passport[row[2]].append(row)
        for record, body in bodies:
            cell_id = self.cell_of[record.digest]
            passport = str(body.passport_id)
            rivals = {r[0]: r for r in (*by_battery[body.battery_id], *by_passport[passport])}
            for other_id, other_key, other_passport, other_battery, _ in rivals.values():
                summary.alerts.extend(_clone_alert(record, body, cell_id, other_id, other_key,
                                                   other_passport, other_battery))  # fmt: skip
            # births of this same batch are compared with the ones before them
            row = (cell_id, body.cell_public_key, passport, body.battery_id, record.digest)
            by_battery[body.battery_id].append(row)
            by_passport[passport].append(row)

    def _forks(self, entries: list[SignedRecord], summary: IngestSummary) -> None:
        """Entries that share a cell and seq, or a predecessor, with another: two histories."""
        if not entries:
            return
        bodies = [(r, r.body) for r in entries if isinstance(r.body, Entry)]
        cells = {self.cell_of[r.digest] for r, _ in bodies}
        prevs = {body.prev for _, body in bodies}
        rows = self.conn.execute(
            select(record_t.c.digest, record_t.c.cell_id, record_t.c.seq, record_t.c.prev)
            .where(record_t.c.kind >= 3)
            .where(
                or_(
                    record_t.c.prev.in_(list(prevs)),
                    record_t.c.cell_id.in_(list(cells)),
                )
            )
        ).all()
        by_seq: dict[tuple[int, int], list[bytes]] = defaultdict(list)
        by_prev: dict[tuple[int, bytes], list[bytes]] = defaultdict(list)
        for digest, cell, seq, prev in rows:
            by_seq[(int(cell), seq)].append(bytes(digest))
            by_prev[(int(cell), bytes(prev))].append(bytes(digest))
        for record, body in bodies:
            cell_id = self.cell_of[record.digest]
            rivals = {*by_seq[(cell_id, body.seq)], *by_prev[(cell_id, body.prev)]}
            rivals.discard(record.digest)
            for digest in sorted(rivals):
                summary.alerts.append({
                    "kind": "fork", "cell_id": cell_id, "record": record.digest.hex(),
                    "rival": digest.hex(),
                    "message": f"two histories: entries {digest.hex()[:16]}... and "
                    f"{record.digest.hex()[:16]}... both follow seq {body.seq - 1}",
                })  # fmt: skip
            by_seq[(cell_id, body.seq)].append(record.digest)
            by_prev[(cell_id, body.prev)].append(record.digest)

    def _move_heads(self, fresh: list[SignedRecord]) -> None:
        best: dict[int, SignedRecord] = {}
        for record in fresh:
            if isinstance(record.body, Entry):
                cell_id = self.cell_of[record.digest]
                current = best.get(cell_id)
                if current is None or record.body.seq > _seq(current):
                    best[cell_id] = record
        if not best:
            return
        heads: dict[int, int] = dict(
            self.conn.execute(
                select(chain_head_t.c.cell_id, chain_head_t.c.seq).where(
                    chain_head_t.c.cell_id.in_(list(best))
                )
            ).all()
        )
        new_heads = []
        for cell_id, record in best.items():
            body = record.body
            assert isinstance(body, Entry)
            values = {"seq": body.seq, "digest": record.digest, "time": body.time}
            if cell_id not in heads:
                new_heads.append({"cell_id": cell_id, **values})
            elif body.seq > heads[cell_id]:
                self.conn.execute(
                    update(chain_head_t).where(chain_head_t.c.cell_id == cell_id).values(**values)
                )
        if new_heads:
            self.conn.execute(insert(chain_head_t), new_heads)

    def _remember_certs(self, fresh: list[SignedRecord]) -> None:
        """Keep the certificates records name, so verifiers can resolve x5t here too."""
        certs = {}
        for record in fresh:
            if record.x5t is None:
                continue
            try:
                candidates = self.trust.find(record.x5t)
            except VerificationError:
                continue
            for cert in candidates:
                certs[thumbprint(cert, -16)[1]] = cert
        if not certs:
            return
        known = {
            bytes(s) for (s,) in self.conn.execute(
                select(actor_cert_t.c.sha256).where(actor_cert_t.c.sha256.in_(list(certs)))
            )
        }  # fmt: skip
        rows = [
            {"sha256": sha, "x5t64": sha[:8], "der": cert.public_bytes(Encoding.DER),
             "subject": cert.subject.rfc4514_string()[:400],
             "roles": sorted(r.value for r in roles_of(cert)), "first_seen": self.now}
            for sha, cert in certs.items() if sha not in known
        ]  # fmt: skip
        if rows:
            self.conn.execute(insert(actor_cert_t), rows)

    def _alert(self, alert: dict[str, Any]) -> None:
        fingerprint = f"{alert['record']}:{alert.get('rival', '')}"[:200]
        exists = self.conn.execute(
            select(alert_t.c.id)
            .where(alert_t.c.kind == alert["kind"])
            .where(alert_t.c.fingerprint == fingerprint)
        ).first()
        if exists:
            return
        cell_id = alert.get("cell_id")
        if cell_id is None and "birth" in alert:
            cell_id = self._cell_of_birth(bytes.fromhex(alert["birth"]))
        self.conn.execute(update(cell_t).where(cell_t.c.id == cell_id).values(flagged=True))
        self.conn.execute(insert(alert_t).values(
            kind=alert["kind"], cell_id=cell_id, fingerprint=fingerprint, message=alert["message"],
            detail={k: v for k, v in alert.items() if k not in ("kind", "message")},
            created_at=self.now,
        ))  # fmt: skip


def _seq(record: SignedRecord) -> int:
    assert isinstance(record.body, Entry)
    return record.body.seq


def _clone_alert(
    record: SignedRecord,
    body: Birth,
    cell_id: int,
    other_id: int,
    other_key: bytes,
    other_passport: str,
    other_battery: str,
) -> list[dict[str, Any]]:
    if other_passport == str(body.passport_id):
        message = (
            f"passport id {body.passport_id} is claimed by a second birth record "
            f"(batteries {other_battery} and {body.battery_id})"
        )
    elif other_battery == body.battery_id and other_key != body.cell_public_key:
        message = (
            f"battery id {body.battery_id} has a second birth record with another cell key "
            f"(passports {other_passport} and {body.passport_id})"
        )
    else:
        return []
    return [{"kind": "clone", "cell_id": cell_id, "record": record.digest.hex(),
             "rival": str(other_id), "message": message}]  # fmt: skip
