"""The registry: every record ever written for every cell, verified, with a transparency log.

`Registry(url, trust=...)` opens one (SQLite file or PostgreSQL URL); `Registry.init(url)`
applies the migrations and creates the log key. See `ingest.py` for what ingest checks and
`log.py` for the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, insert, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from passport import cbor
from passport._fileio import read_bytes
from passport.chain import Finding
from passport.datasheet import datasheet_sha256, read_datasheet
from passport.errors import DecodeError, InputError, StorageError
from passport.image import Image
from passport.records import Entry, SignedRecord
from passport.registry import migrate, parallel
from passport.registry.db import make_engine, reader, resolve_url
from passport.registry.ingest import IngestSummary, RegistryReceipts, Source, Store, Verifier
from passport.registry.log import SqlLog
from passport.registry.models import (
    alert_t,
    cell_t,
    chain_head_t,
    datasheet_t,
    log_meta_t,
    record_t,
)
from passport.trust.bundle import TrustBundle

__all__ = ["IngestSummary", "Registry", "RegistryReceipts", "Source", "read_sources"]

BATCH = 200  # inputs per transaction
JOURNAL_SUFFIX = ".evicted.cbor"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def read_sources(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Source], list[tuple[str, str]]]:
    """Files (or directories of *.t5t and *.evicted.cbor) -> sources; unreadable ones are
    returned as (path, reason) instead of stopping the batch."""
    sources: list[Source] = []
    problems: list[tuple[str, str]] = []
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.t5t")))
            files.extend(sorted(p.glob(f"*{JOURNAL_SUFFIX}")))
        else:
            files.append(p)
    for f in files:
        try:
            sources.append(source_from_bytes(str(f), read_bytes(f, limit=64 << 20)))
        except (InputError, DecodeError) as exc:
            problems.append((str(f), exc.reason))
    return sources, problems


def source_from_bytes(name: str, data: bytes) -> Source:
    """A tag image (starts with a Type 5 capability container) or a CBOR sequence of records."""
    if data[:1] in (b"\xe1", b"\xe2"):
        return Source(name, image=Image.from_bytes(data))
    records = tuple(SignedRecord.from_bytes(raw) for raw in cbor.iter_sequence(data, what=name))
    if not records:
        raise InputError("neither a tag image nor a journal of records", source=name)
    return Source(name, records=records)


@dataclass(frozen=True, slots=True)
class RegistryCheck:
    """What the registry says about an image: rollback, fork, clone flags."""

    known: bool
    findings: tuple[Finding, ...]


class Registry:
    def __init__(
        self,
        url: str | None = None,
        *,
        trust: TrustBundle | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.url = resolve_url(url)
        self.engine = engine or make_engine(self.url)
        self.trust = trust

    # ------------------------------------------------------------------ setup

    @classmethod
    def init(cls, url: str | None = None, *, origin: str | None = None) -> Registry:
        """Apply migrations and, on a new database, create the log's Ed25519 key."""
        registry = cls(url)
        if registry.url.startswith("sqlite:///") and registry.url != "sqlite:///:memory:":
            Path(registry.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            migrate.upgrade(registry.engine)
            with registry.engine.begin() as conn:
                if conn.execute(select(log_meta_t.c.id)).first() is None:
                    key = ed25519.Ed25519PrivateKey.generate()
                    conn.execute(insert(log_meta_t).values(
                        id=1,
                        origin=origin or f"battery-passport.example/log/{uuid.uuid4().hex[:12]}",
                        public_key_pem=key.public_key().public_bytes(
                            serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo,
                        ).decode(),
                        private_key_pem=key.private_bytes(
                            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption(),
                        ).decode(),
                        size=0,
                    ))  # fmt: skip
                    log = SqlLog(conn)
                    log.sign_checkpoint(log.state(), 0, _utcnow())
        except SQLAlchemyError as exc:
            raise StorageError(
                f"cannot initialise the registry at {registry.url}: {_short(exc)}"
            ) from None
        return registry

    def _need_trust(self) -> TrustBundle:
        if self.trust is None:
            raise InputError("this needs the trust bundle (--trust DIR)")
        return self.trust

    # ------------------------------------------------------------------ ingest

    def ingest(
        self,
        sources: Sequence[Source],
        *,
        now: dt.datetime | None = None,
        batch: int = BATCH,
        progress: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> IngestSummary:
        """Verify and store; images first then journals within each batch. Idempotent.

        With `workers` > 1, tags are verified in that many processes while this one stores
        (the trust bundle must have been loaded from a directory)."""
        trust = self._need_trust()
        summary = IngestSummary(sources=len(sources))
        with self._guard("reading"), self._connect() as conn:
            summary.tree_size = SqlLog(conn).state().size
        started = time.perf_counter()
        images = [s for s in sources if s.image is not None]
        ordered = images + [s for s in sources if s.image is None]
        verdicts: Iterator[list[Finding]] | None = None
        if workers > 1 and len(images) > 1 and parallel.can_parallelize(trust):
            verdicts = parallel.verify_images(
                [s.image for s in images if s.image is not None], trust, self.url, now, workers
            )
        try:
            for start in range(0, len(ordered), batch):
                chunk = ordered[start : start + batch]
                self._ingest_batch(chunk, trust, now, summary, verdicts)
                if progress is not None:
                    progress(len(chunk))
        finally:
            if verdicts is not None:
                close = getattr(verdicts, "close", None)
                if close is not None:
                    close()
        summary.seconds = time.perf_counter() - started
        return summary

    def _ingest_batch(
        self,
        chunk: Sequence[Source],
        trust: TrustBundle,
        now: dt.datetime | None,
        summary: IngestSummary,
        verdicts: Iterator[list[Finding]] | None = None,
    ) -> None:
        verifier = Verifier(self.engine, trust, now)
        accepted: list[SignedRecord] = []
        pending: dict[bytes, SignedRecord] = {}
        alerts_before = len(summary.alerts)
        skipped = 0
        try:
            with self._guard("ingest"):
                known = self._known(chunk)
                for source in chunk:
                    held = source.image.records if source.image is not None else source.records
                    if held and all(r.digest in known for r in held):
                        # Stored already, so verified and cross-checked when it came: a
                        # re-ingest adds nothing (and costs no second verification).
                        if source.image is not None and verdicts is not None:
                            next(verdicts)
                        skipped += len(held)
                        continue
                    if source.image is not None:
                        findings = next(verdicts) if verdicts is not None else None
                        records = verifier.image(source, summary, pending, findings, known)
                    else:
                        records = verifier.journal(source, summary, pending)
                    accepted.extend(records)
                    pending.update((r.digest, r) for r in records)
                batch = IngestSummary(alerts=summary.alerts[alerts_before:])
                with self.engine.begin() as conn:
                    Store(conn, trust, now or _utcnow()).put(accepted, batch)
        except StorageError as exc:
            raise StorageError(f"{exc.reason}; nothing of this batch was stored") from None
        # Only a committed batch counts; its store phase adds fork and clone alerts.
        summary.alerts[alerts_before:] = batch.alerts
        summary.stored += batch.stored
        summary.duplicates += batch.duplicates + skipped
        summary.tree_size = batch.tree_size or summary.tree_size

    def _known(self, chunk: Sequence[Source]) -> set[bytes]:
        """Which of the chunk's records the registry already stores."""
        digests = list({
            r.digest for s in chunk for r in (s.image.records if s.image is not None else s.records)
        })  # fmt: skip
        known: set[bytes] = set()
        with self._connect() as conn:
            for start in range(0, len(digests), 500):
                rows = conn.execute(
                    select(record_t.c.digest).where(
                        record_t.c.digest.in_(digests[start : start + 500])
                    )
                )
                known.update(bytes(d) for (d,) in rows)
        return known

    # ------------------------------------------------------------------ reading

    def info(self) -> dict[str, Any]:
        with self._guard("reading"), self._connect() as conn:
            log = SqlLog(conn)
            state = log.state()
            checkpoint = log.latest_checkpoint()
            meta = conn.execute(select(log_meta_t.c.public_key_pem)).scalar_one()
            return {
                "url": self.engine.url.render_as_string(hide_password=True),
                "engine": self.engine.dialect.name,
                "origin": state.origin,
                "tree_size": state.size,
                "root": log.root(state.size).hex(),
                "log_public_key_pem": meta,
                "cells": conn.execute(select(func.count()).select_from(cell_t)).scalar_one(),
                "flagged_cells": conn.execute(
                    select(func.count()).select_from(cell_t).where(cell_t.c.flagged)
                ).scalar_one(),
                "records": conn.execute(select(func.count()).select_from(record_t)).scalar_one(),
                "alerts": conn.execute(select(func.count()).select_from(alert_t)).scalar_one(),
                "checkpoint": checkpoint.note if checkpoint else None,
            }

    def log_public_key(self) -> ed25519.Ed25519PublicKey:
        with self._guard("reading"), self._connect() as conn:
            return SqlLog(conn).state().key.public_key()

    def prove(self, digest: bytes) -> bytes:
        """The RFC 9942 receipt of a record against the newest checkpoint."""
        with self._guard("reading"), self._connect() as conn:
            log = SqlLog(conn)
            return log.receipt(digest, log.state())

    def record(self, digest: bytes) -> bytes:
        with self._guard("reading"), self._connect() as conn:
            row = conn.execute(select(record_t.c.raw).where(record_t.c.digest == digest)).first()
        if row is None:
            raise InputError(f"record {digest.hex()} is not in the registry")
        return bytes(row[0])

    def checkpoint(self) -> str:
        """The newest signed checkpoint, signing one first if the log grew since."""
        with self._guard("checkpoint"), self.engine.begin() as conn:
            log = SqlLog(conn)
            state = log.state(lock=True)
            return log.sign_checkpoint(state, state.size, _utcnow())

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        with self._guard("reading"), self._connect() as conn:
            size = SqlLog(conn).state().size
            if not 0 <= old_size <= new_size <= size:
                raise InputError(f"sizes must satisfy 0 <= old <= new <= {size} (the log size)")
            return SqlLog(conn).consistency_proof(old_size, new_size)

    def alerts(self) -> list[dict[str, Any]]:
        with self._guard("reading"), self._connect() as conn:
            rows = conn.execute(select(alert_t).order_by(alert_t.c.id)).all()
        return [
            {"id": r.id, "kind": r.kind, "cell_id": r.cell_id, "message": r.message,
             "detail": r.detail, "created_at": r.created_at.isoformat()}
            for r in rows
        ]  # fmt: skip

    def alerts_for(self, birth_digests: Iterable[bytes]) -> dict[bytes, list[dict[str, Any]]]:
        """The alerts about each of these passports (by birth record), oldest first: its own,
        and those of any other passport with its battery id or passport id (a clone alert
        sits on the copy the registry saw second, but it is news for both)."""
        wanted = list(dict.fromkeys(birth_digests))
        out: dict[bytes, list[dict[str, Any]]] = {}
        with self._guard("reading"), self._connect() as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                cells = conn.execute(
                    select(cell_t.c.id, cell_t.c.birth_digest, cell_t.c.battery_id,
                           cell_t.c.passport_id).where(cell_t.c.birth_digest.in_(chunk))
                ).all()  # fmt: skip
                batteries = {c.battery_id for c in cells}
                passports = {c.passport_id for c in cells}
                kin = conn.execute(
                    select(cell_t.c.id, cell_t.c.battery_id, cell_t.c.passport_id).where(
                        cell_t.c.battery_id.in_(batteries) | cell_t.c.passport_id.in_(passports)
                    )
                ).all()
                rows = conn.execute(
                    select(alert_t.c.id, alert_t.c.cell_id, alert_t.c.kind, alert_t.c.message)
                    .where(alert_t.c.cell_id.in_({k.id for k in kin}))
                    .order_by(alert_t.c.id)
                ).all()
                by_cell: dict[int, list[dict[str, Any]]] = {}
                for row in rows:
                    by_cell.setdefault(row.cell_id, []).append(
                        {"kind": row.kind, "message": row.message}
                    )
                for c in cells:
                    related = [
                        k.id
                        for k in kin
                        if k.battery_id == c.battery_id or k.passport_id == c.passport_id
                    ]
                    found = [a for cid in sorted(related) for a in by_cell.get(cid, [])]
                    if found:
                        out[bytes(c.birth_digest)] = found
        return out

    def entries_after(self, birth_digest: bytes, seq: int) -> list[SignedRecord]:
        """The history entries the registry holds for this passport beyond `seq`, by seq."""
        with self._guard("reading"), self._connect() as conn:
            rows = conn.execute(
                select(record_t.c.raw)
                .join(cell_t, cell_t.c.id == record_t.c.cell_id)
                .where(cell_t.c.birth_digest == birth_digest)
                .where(record_t.c.kind >= 3)
                .where(record_t.c.seq > seq)
                .order_by(record_t.c.seq)
            ).all()
        return [SignedRecord.from_bytes(bytes(raw)) for (raw,) in rows]

    def history(self, ref: str) -> tuple[list[SignedRecord], bool]:
        """A passport's full history as the registry holds it: the birth record, then the
        entries along its chain to the newest (`ref` is a battery id, passport id or birth
        record SHA-256 hex); and whether the registry flagged it (fork or clone)."""
        ref = ref.strip()
        with self._guard("reading"), self._connect() as conn:
            clauses = [cell_t.c.battery_id == ref, cell_t.c.passport_id == ref]
            if len(ref) == 64 and all(c in "0123456789abcdefABCDEF" for c in ref):
                clauses.append(cell_t.c.birth_digest == bytes.fromhex(ref))
            cells = conn.execute(
                select(cell_t.c.id, cell_t.c.birth_digest, cell_t.c.flagged).where(or_(*clauses))
            ).all()
            if not cells:
                raise InputError(f"the registry holds no passport {ref!r}")
            if len(cells) > 1:
                raise InputError(
                    f"{ref!r} names {len(cells)} passports in the registry (a clone): use the "
                    "birth record's SHA-256 or export from the tag"
                )
            cell = cells[0]
            rows = conn.execute(
                select(record_t.c.digest, record_t.c.raw).where(record_t.c.cell_id == cell.id)
            ).all()
            head = conn.execute(
                select(chain_head_t.c.digest).where(chain_head_t.c.cell_id == cell.id)
            ).scalar_one_or_none()
        held = {bytes(d): SignedRecord.from_bytes(bytes(raw)) for d, raw in rows}
        birth = held.get(bytes(cell.birth_digest))
        if birth is None:
            raise StorageError(f"the registry lost the birth record of {ref!r}")
        chain: list[SignedRecord] = []
        digest = bytes(head) if head is not None else birth.digest
        while digest != birth.digest:
            record = held.get(digest)
            if record is None or not isinstance(record.body, Entry):
                raise StorageError(f"the registry's chain of {ref!r} is broken at {digest.hex()}")
            chain.append(record)
            digest = record.body.prev
        return [birth, *reversed(chain)], bool(cell.flagged)

    def check_image(self, image: Image) -> RegistryCheck:
        """Compare a tag with what the registry holds: unknown, rolled back, forked, flagged."""
        findings: list[Finding] = []
        with self._guard("reading"), self._connect() as conn:
            cell = conn.execute(
                select(cell_t).where(cell_t.c.birth_digest == image.birth.digest)
            ).first()
            if cell is None:
                unknown = "the registry holds no passport with this birth record"
                return RegistryCheck(False, (Finding("registry.unknown", None, unknown),))
            head = conn.execute(
                select(chain_head_t).where(chain_head_t.c.cell_id == cell.id)
            ).first()
            last = image.entries[-1] if image.entries else None
            seq = last.body.seq if last is not None and isinstance(last.body, Entry) else 0
            if head is not None and seq < head.seq:
                findings.append(Finding(
                    "registry.rollback", None,
                    f"the tag's newest entry is seq {seq}, but the registry holds up to seq "
                    f"{head.seq} for this passport: the tag was rolled back or truncated",
                ))  # fmt: skip
            for record in image.entries:
                assert isinstance(record.body, Entry)
                # A fork only where the registry holds another entry for that seq.
                rival = conn.execute(
                    select(record_t.c.digest)
                    .where(record_t.c.cell_id == cell.id)
                    .where(record_t.c.kind >= 3)
                    .where(record_t.c.seq == record.body.seq)
                    .where(record_t.c.digest != record.digest)
                ).first()
                if rival is not None:
                    findings.append(Finding(
                        "registry.fork", None,
                        f"entry seq {record.body.seq} on the tag differs from the registry's",
                    ))  # fmt: skip
            if cell.flagged:
                findings.append(Finding(
                    "registry.flagged", None,
                    "the registry has flagged this passport (fork or clone alert): see alerts",
                ))  # fmt: skip
        return RegistryCheck(True, tuple(findings))

    # ------------------------------------------------------------------ data sheets

    def add_datasheet(self, raw: bytes, *, source: str = "<bytes>") -> bytes:
        """Verify an OEM data sheet (`passport.datasheet.read_datasheet`, with the registry's
        trust bundle) and store its exact bytes; returns its SHA-256. Idempotent: storing the
        same bytes again is a no-op. A sheet that fails verification raises
        `VerificationError` and nothing is stored."""
        raw = bytes(raw)
        sheet = read_datasheet(raw, self._need_trust(), source=source)
        digest = datasheet_sha256(raw)
        row = {"sha256": digest, "raw": raw, "model": sheet.model,
               "manufacturer": sheet.manufacturer, "revision": sheet.revision,
               "added_at": _utcnow()}  # fmt: skip
        with self._guard("storing the data sheet"):
            try:
                with self.engine.begin() as conn:
                    held = conn.execute(
                        select(datasheet_t.c.sha256).where(datasheet_t.c.sha256 == digest)
                    ).first()
                    if held is None:
                        conn.execute(insert(datasheet_t).values(**row))
            except IntegrityError:
                # Another writer stored the same bytes meanwhile (same key, same bytes).
                if self.datasheet(digest) is None:
                    raise
        return digest

    def datasheet(self, sha256: bytes) -> bytes | None:
        """The exact bytes of the data sheet with this SHA-256, or None when not held."""
        with self._guard("reading"), self._connect() as conn:
            row = conn.execute(
                select(datasheet_t.c.raw).where(datasheet_t.c.sha256 == bytes(sha256))
            ).first()
        return bytes(row[0]) if row is not None else None

    def receipt_lookup(self) -> RegistryReceipts:
        return RegistryReceipts(self.engine)

    def _connect(self) -> Connection:
        with self._guard("open"):
            return reader(self.engine)

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Database errors as `StorageError`s that say what to do."""
        try:
            yield
        except SQLAlchemyError as exc:
            text = str(exc)
            if "no such table" in text or ("relation" in text and "does not exist" in text):
                raise StorageError(
                    f"the registry at {self.url} is not initialised: run `passport registry init`"
                ) from None
            raise StorageError(
                f"{what}: the registry at {self.url} failed: {_short(exc)}"
            ) from None


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
