"""Registry benchmark: verified ingest rate, and receipt latency once the log is large. Prints JSON.

    python bench/registry.py [--records N] [--leaves N] [--proofs N] [--skip-postgres]

What is real:
  * ingest_per_s_sqlite / ingest_per_s_postgres: `Registry.ingest` of N genuine records
    (N / 10 passports: a birth signed by one of three OEM P-256 keys from a throwaway CA, plus
    9 telemetry entries signed by the cell's own Ed25519 key, on st25dv64k images so nothing is
    evicted) into a fresh database, with the library's default batch size. Every record is
    fully verified (trust chain, signatures, history rules) and stored, and the log is
    appended and a checkpoint signed per batch. Decoding the image files (`read_sources`) is
    timed apart (decode_s). `*_client_cpu_s` is this process's CPU time during the ingest (for
    PostgreSQL the server's CPU comes on top).
  * reingest_s_*: the same ingest again (idempotent: everything verified, nothing stored).
    store_phase_per_s_* = records / (ingest_s - reingest_s) estimates the rate of the part
    that runs with the log locked (storing, appending, signing), which bounds one log's
    throughput however many processes verify in parallel. An estimate, not a measurement.
  * raw_verify_per_s: a bare `cryptography` Ed25519 verify, best of several rounds, in the
    same run; ingest_ratio_* = ingest_per_s_* / raw_verify_per_s. Tags are verified by
    --workers processes (default: one per core) while the parent stores; ingest_per_s_*_one_process
    is the same ingest with everything in one process, for comparison (its ratio is in
    ingest_ratio_*_one_process).

What is synthetic (prove_ms_at_1m and fill_s_*):
  * After the real ingest, the log is grown to --leaves leaves directly in SQL: `cell` rows
    (one per 10 records), `record` rows whose `raw` is NOT a signed record but filler bytes of
    the same average length as the real records (kind, seq, prev chain, signer "synthetic"),
    `log_leaf` rows with leaf_hash = merkle.leaf_hash(raw), and every complete perfect-subtree
    `log_node` row, hashed incrementally exactly as `SqlLog.append` does, and a
    `log_checkpoint` row every BATCH (200) leaves as ingest would sign one per batch (note
    signed with the log's key over the root computed in memory); `log_meta.size` is set at the
    end of every chunk. Rows go in with executemany, one transaction per chunk. No
    `chain_head`, `actor_cert` or `alert` rows are written for them (proofs never read those).
  * Then a last checkpoint is signed through `SqlLog.sign_checkpoint`, which itself checks
    that the tree is consistent with the previous (synthetic) checkpoint; the root the fill
    computed in memory must equal the root read back from the stored nodes.
  * prove_ms_at_1m_*: median wall time of `Registry.prove(digest)` (an RFC 9942 receipt
    against the first checkpoint covering the leaf: log_meta, leaf lookup, checkpoint, one
    batched node query, an Ed25519 signature) for --proofs random leaves, real and synthetic
    alike, once the log holds --leaves leaves (1,000,000 by default); every receipt is then
    verified with `passport.receipts.verify_receipt` against the record bytes (outside the
    timing). prove_ms_at_1m is the larger of the two engines' medians (PostgreSQL is skipped
    with --skip-postgres). prove_ms_at_ingest_* is the same measurement before the fill.

loadavg_1m is the machine's 1-minute load average at the start and the end (the benchmark
itself keeps up to two cores busy): anything else running (tests, other benchmarks) skews
every figure above, so compare only runs that started quiet.

PostgreSQL: $PASSPORT_TEST_PG or postgresql://postgres@127.0.0.1:5432/test; the benchmark works
in a private schema it drops afterwards. SQLite: a file in a temporary directory, removed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from _example import example_birth
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import Connection

from passport import merkle
from passport.image import Image
from passport.notes import Checkpoint as Note
from passport.receipts import verify_receipt
from passport.records import (
    Birth,
    Entry,
    Kind,
    SignedRecord,
    Values,
)
from passport.registry import BATCH, Registry, Source, models, read_sources
from passport.registry.db import make_engine
from passport.registry.log import SqlLog, node_id
from passport.registry.models import (
    cell_t,
    log_checkpoint_t,
    log_leaf_t,
    log_meta_t,
    log_node_t,
    record_t,
)
from passport.registry.parallel import default_workers
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.keys import load_private
from passport.trust.roles import Role
from passport.trust.store import load_certificates, thumbprint

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
T0 = int(time.time()) - 400 * 86400  # births a bit over a year ago, then monthly entries
MONTH = 30 * 86400
ENTRIES = 9  # telemetry entries per passport: 10 records each
OEMS = 3
CHUNK = 50_000  # synthetic leaves per transaction
PKI_START = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


# --------------------------------------------------------------------------------------------
# Genuine records


def _birth(cell: ed25519.Ed25519PrivateKey, n: int) -> Birth:
    return example_birth(cell, f"https://id.gs1.org/01/09506000134352/21/B{n:09d}", T0)


def _values(i: int) -> Values:
    """What a BMS reports each month: growing counters."""
    return Values(fec_deci=10 * i, ah_deci=50 * i, wh=180 * i, minutes_hot=i // 3)


def make_dataset(root: Path, records: int) -> tuple[Path, Path, float]:
    """A CA, three OEMs and records // 10 passport images; returns (trust dir, images, s)."""
    started = time.perf_counter()
    authority = CertificateAuthority(root / "ca")
    authority.init(not_before=PKI_START)
    oems = []
    for n in range(OEMS):
        issued = authority.issue(f"oem{n}", Role.OEM, not_before=PKI_START)
        cert = load_certificates(issued.cert_path)[0]
        oems.append((load_private(issued.key_path), thumbprint(cert)))
    images = root / "images"
    images.mkdir()
    for n in range(-(-records // (1 + ENTRIES))):
        cell = ed25519.Ed25519PrivateKey.generate()
        key, x5t = oems[n % OEMS]
        image = Image.create(SignedRecord.sign(_birth(cell, n), key, x5t=x5t), "st25dv64k")
        for i in range(1, 1 + ENTRIES):
            seq, prev = image.next_link()
            body = Entry(Kind.TELEMETRY, seq, prev, T0 + MONTH * seq, _values(i))
            image, _ = image.append(SignedRecord.sign(body, cell))
        (images / f"{n:07d}.t5t").write_bytes(image.to_bytes())
    return authority.trust_dir, images, time.perf_counter() - started


def raw_verify_per_s(rounds: int = 7, per_round: int = 4000) -> float:
    """Bare Ed25519 verifies per second (best round): the floor any verifier pays per record."""
    key = ed25519.Ed25519PrivateKey.generate()
    public, message = key.public_key(), b"x" * 120
    signature = key.sign(message)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            public.verify(signature, message)
        best = max(best, per_round / (time.perf_counter() - start))
    return best


# --------------------------------------------------------------------------------------------
# Databases


@contextmanager
def sqlite_url() -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    directory = Path(tempfile.mkdtemp(prefix="passport-bench-"))
    path = directory / "registry.db"

    def sizes() -> dict[str, int]:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:  # per table, with its indexes, when SQLite has the dbstat table
                rows = conn.execute(
                    "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize) FROM dbstat d "
                    "LEFT JOIN sqlite_master m ON m.name = d.name GROUP BY 1"
                ).fetchall()
            except sqlite3.OperationalError:  # dbstat is a compile-time option
                rows = []
        return {"total": path.stat().st_size, **{str(n): int(s) for n, s in rows}}

    try:
        yield f"sqlite:///{path}", sizes
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def postgres_url() -> Iterator[tuple[str, Callable[[], dict[str, int]]]]:
    base = os.environ.get("PASSPORT_TEST_PG", PG_DEFAULT)
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')

    def sizes() -> dict[str, int]:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'VACUUM ANALYZE "{schema}".record')  # settle visibility maps
            rows = conn.execute(
                "SELECT tablename, pg_total_relation_size("
                "quote_ident(schemaname) || '.' || quote_ident(tablename))"
                " FROM pg_tables WHERE schemaname = %s",
                (schema,),
            ).fetchall()
        table = {str(n): int(s) for n, s in rows}
        return {"total": sum(table.values()), **table}

    try:
        yield f"{base}?options=-csearch_path%3D{schema}", sizes
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


# --------------------------------------------------------------------------------------------
# Synthetic fill


def synthetic_raw(index: int, length: int) -> bytes:
    """Filler standing in for the record at leaf `index` (not a valid record: see docstring)."""
    head = b"synthetic record %d " % index
    return (head + hashlib.sha256(head).digest() * (length // 32 + 1))[:length]


class Frontier:
    """The right edge of the tree: appends leaves and yields the node rows each completes,
    the same (level, index) rows `SqlLog.append` writes."""

    def __init__(self, size: int, edge: dict[int, bytes]) -> None:
        self.size = size
        self.stack = [edge[node_id(level, (size >> level) - 1)] for level in
                      reversed(range(64)) if size >> level & 1]  # fmt: skip

    def append(self, leaf_hash: bytes, out: list[dict[str, Any]]) -> None:
        index, level, value = self.size, 0, leaf_hash
        out.append({"id": node_id(0, index), "hash": value})
        while index & 1:
            value = merkle.node_hash(self.stack.pop(), value)
            index, level = index >> 1, level + 1
            out.append({"id": node_id(level, index), "hash": value})
        self.stack.append(value)
        self.size += 1

    def root(self) -> bytes:
        result = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            result = merkle.node_hash(left, result)
        return result


@dataclass
class Fill:
    seconds: float
    added: int
    raw_length: int


def fill(url: str, leaves: int, raw_length: int) -> Fill:
    """Grow the log to `leaves` leaves with synthetic records (see the module docstring)."""
    registry = Registry(url)
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    try:
        with registry.engine.begin() as conn:
            log = SqlLog(conn)
            state = log.state(lock=True)
            size = state.size
            frontier_ids = [node_id(lv, (size >> lv) - 1) for lv in range(64) if size >> lv & 1]
            frontier = Frontier(size, log.nodes(frontier_ids))
            next_cell = int(conn.execute(select(func.coalesce(func.max(cell_t.c.id), 0))).scalar())
        if leaves <= size or size == 0:  # nothing to add, or no real prefix to extend
            return Fill(0.0, 0, raw_length)
        start_size, prev = size, b""
        cell_id = next_cell
        while frontier.size < leaves:
            end = min(leaves, frontier.size + CHUNK)
            cells: list[dict[str, Any]] = []
            records: list[dict[str, Any]] = []
            leaf_rows: list[dict[str, Any]] = []
            node_rows: list[dict[str, Any]] = []
            checkpoints: list[dict[str, Any]] = []
            for index in range(frontier.size, end):
                raw = synthetic_raw(index, raw_length)
                digest = hashlib.sha256(raw).digest()
                position = (index - start_size) % (1 + ENTRIES)
                if position == 0:  # a synthetic passport: its "birth" starts a new cell
                    cell_id += 1
                    cells.append({
                        "id": cell_id, "passport_id": str(uuid.UUID(bytes=digest[:16])),
                        "battery_id": f"synthetic-{cell_id}", "birth_digest": digest,
                        "cell_key": hashlib.sha256(digest).digest(), "flagged": False,
                        "created_at": now,
                    })  # fmt: skip
                records.append({
                    "digest": digest, "cell_id": cell_id,
                    "kind": int(Kind.BIRTH if position == 0 else Kind.TELEMETRY),
                    "seq": position or None, "prev": prev if position else None,
                    "time": T0 + MONTH * position, "signer": "synthetic", "raw": raw,
                    "ingested_at": now,
                })  # fmt: skip
                leaf_hash = merkle.leaf_hash(raw)
                leaf_rows.append({"idx": index, "digest": digest, "leaf_hash": leaf_hash})
                frontier.append(leaf_hash, node_rows)
                prev = digest
                if frontier.size % BATCH == 0 and frontier.size < leaves:  # as ingest would
                    root = frontier.root()
                    note = Note(state.origin, frontier.size, root).sign(state.origin, state.key)
                    checkpoints.append(
                        {"tree_size": frontier.size, "root": root, "note": note, "signed_at": now}
                    )
            with registry.engine.begin() as conn:
                SqlLog(conn).state(lock=True)
                if cells:
                    conn.execute(insert(cell_t), cells)
                conn.execute(insert(record_t), records)
                conn.execute(insert(log_leaf_t), leaf_rows)
                conn.execute(insert(log_node_t), node_rows)
                if checkpoints:
                    conn.execute(insert(log_checkpoint_t), checkpoints)
                conn.execute(
                    update(log_meta_t).where(log_meta_t.c.id == 1).values(size=frontier.size)
                )
        with registry.engine.begin() as conn:
            _sync_sequence(conn)
            log = SqlLog(conn)
            state = log.state(lock=True)
            stored_root = log.root(state.size)
            if stored_root != frontier.root():
                raise SystemExit("the filled log's stored nodes do not give the computed root")
            log.sign_checkpoint(state, state.size, now)  # checks consistency with the last one
    finally:
        registry.engine.dispose()
    return Fill(time.perf_counter() - started, frontier.size - start_size, raw_length)


def _sync_sequence(conn: Connection) -> None:
    """Cell ids were given explicitly: move PostgreSQL's id sequence past them."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence('cell', 'id'), (SELECT max(id) FROM cell))")
        )


# --------------------------------------------------------------------------------------------
# Proofs


def time_proofs(url: str, count: int, raw_length: int, rng: random.Random) -> dict[str, float]:
    """Median (and p95) ms of Registry.prove over random leaves; every receipt is verified."""
    registry = Registry(url)
    try:
        with registry.engine.connect() as conn:
            size = SqlLog(conn).state().size
        indices = [rng.randrange(size) for _ in range(count)]
        with registry.engine.connect() as conn:
            found = {
                int(i): bytes(d)
                for i, d in conn.execute(
                    select(log_leaf_t.c.idx, log_leaf_t.c.digest).where(
                        log_leaf_t.c.idx.in_(sorted(set(indices)))
                    )
                )
            }
        key = registry.log_public_key()
        registry.prove(found[indices[0]])  # warm the pool and the caches
        times, receipts = [], []
        for index in indices:
            start = time.perf_counter()
            receipt = registry.prove(found[index])
            times.append(time.perf_counter() - start)
            receipts.append((index, receipt))
        for index, receipt in receipts:
            raw = registry.record(found[index])
            info = verify_receipt(receipt, raw, key)
            if info.leaf_index != index or not index < info.tree_size <= size:
                raise SystemExit(f"receipt for leaf {index} names leaf {info.leaf_index}")
            if raw.startswith(b"synthetic") and raw != synthetic_raw(index, raw_length):
                raise SystemExit(f"synthetic record {index} came back altered")
    finally:
        registry.engine.dispose()
    ms = sorted(t * 1000 for t in times)
    return {
        "median": round(statistics.median(ms), 3),
        "p95": round(ms[int(0.95 * (len(ms) - 1))], 3),
        "size": size,
    }


# --------------------------------------------------------------------------------------------
# One engine


def ingest_phase(
    name: str, url: str, trust_dir: Path, sources: list[Source], args: argparse.Namespace
) -> dict[str, Any]:
    """Verified ingest into a fresh database (tags verified by --workers processes), then the
    same again (all duplicates); and, for comparison, a one-process ingest into another fresh
    database."""
    Registry.init(url)
    registry = Registry(url, trust=TrustBundle.load(trust_dir))
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        summary = registry.ingest(sources, workers=args.workers)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        again = registry.ingest(sources, workers=args.workers)  # verifies again, stores nothing
    finally:
        registry.engine.dispose()
    serial = _serial_ingest(url, name, trust_dir, sources)
    expected = sum(len(s.image.records) for s in sources if s.image is not None)
    if summary.stored != expected or summary.rejected:
        rejected = list(summary.rejected.items())[:1]
        raise SystemExit(
            f"{name}: stored {summary.stored} of {expected}; first rejected: {rejected}"
        )
    if again.stored or again.duplicates != expected:
        raise SystemExit(f"{name}: the re-ingest stored {again.stored} records")
    return {
        f"ingest_per_s_{name}": round(summary.stored / wall),
        f"ingest_s_{name}": round(wall, 2),
        f"ingest_client_cpu_s_{name}": round(cpu, 2),
        f"reingest_s_{name}": round(again.seconds, 2),
        f"store_phase_per_s_{name}": round(summary.stored / max(wall - again.seconds, 1e-9)),
        f"ingest_per_s_{name}_one_process": serial,
    }


def _serial_ingest(url: str, name: str, trust_dir: Path, sources: list[Source]) -> int:
    """Records/s of the same ingest with verification in this process only."""
    if name == "sqlite":
        url = url.replace(".db", "-serial.db")
    else:  # a second private schema: drop the tables the parallel run made first
        engine = make_engine(url)
        models.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        engine.dispose()
    Registry.init(url)
    registry = Registry(url, trust=TrustBundle.load(trust_dir))
    try:
        summary = registry.ingest(sources, workers=1)
    finally:
        registry.engine.dispose()
    return round(summary.stored / summary.seconds)


def fill_phase(
    name: str,
    url: str,
    sizes: Callable[[], dict[str, int]],
    args: argparse.Namespace,
    raw_length: int,
) -> dict[str, Any]:
    """Receipt latency at the ingested size, then at --leaves after the synthetic fill."""
    rng = random.Random(args.seed)
    out: dict[str, Any] = {
        f"prove_ms_at_ingest_{name}": time_proofs(url, args.proofs, raw_length, rng)["median"]
    }
    done = fill(url, args.leaves, raw_length)
    if done.added:
        out[f"fill_s_{name}"] = round(done.seconds, 1)
        out[f"fill_leaves_{name}"] = done.added
        proofs = time_proofs(url, args.proofs, raw_length, rng)
        out[f"prove_ms_at_1m_{name}"] = proofs["median"]
        out[f"prove_ms_at_1m_p95_{name}"] = proofs["p95"]
        out[f"log_size_{name}"] = proofs["size"]
        out[f"db_bytes_{name}"] = sizes()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000, help="genuine records to ingest")
    parser.add_argument("--leaves", type=int, default=1_000_000, help="log size for prove timing")
    parser.add_argument("--proofs", type=int, default=1000, help="prove() calls to time")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=default_workers(),
        help="processes verifying tags during ingest (default: one per core)",
    )  # fmt: skip
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]  # other work on the machine skews every figure
    work = Path(tempfile.mkdtemp(prefix="passport-bench-data-"))
    try:
        trust_dir, images, generate_s = make_dataset(work, args.records)
        started = time.perf_counter()
        sources, problems = read_sources([images])
        decode_s = time.perf_counter() - started
        if problems:
            raise SystemExit(f"unreadable images: {problems[:3]}")
        records = [r for s in sources if s.image is not None for r in s.image.records]
        raw_length = round(statistics.fmean(len(r.raw) for r in records))
        result: dict[str, Any] = {
            "records": len(records),
            "generate_s": round(generate_s, 2),
            "decode_s": round(decode_s, 2),
            "mean_record_bytes": raw_length,
        }
        raw_rate = raw_verify_per_s()
        openers = {"sqlite": sqlite_url}
        if not args.skip_postgres:
            openers["postgres"] = postgres_url
        with ExitStack() as stack:
            opened = {name: stack.enter_context(opener()) for name, opener in openers.items()}
            # Every ingest first: the fills write GBs that would slow a later ingest down.
            for name, (url, _) in opened.items():
                result.update(ingest_phase(name, url, trust_dir, sources, args))
            for name, (url, sizes) in opened.items():
                result.update(fill_phase(name, url, sizes, args, raw_length))
        result["raw_verify_per_s"] = round(raw_rate)
        for name in openers:
            result[f"ingest_ratio_{name}"] = round(result[f"ingest_per_s_{name}"] / raw_rate, 3)
            result[f"ingest_ratio_{name}_one_process"] = round(
                result[f"ingest_per_s_{name}_one_process"] / raw_rate, 3
            )
        proves = [result[f"prove_ms_at_1m_{n}"] for n in openers if f"prove_ms_at_1m_{n}" in result]
        if proves:
            result["prove_ms_at_1m"] = max(proves)
        result["python"] = platform.python_version()
        result["machine"] = platform.machine()
        result["cpus"] = os.cpu_count()
        result["loadavg_1m"] = [round(load_at_start, 2), round(os.getloadavg()[0], 2)]
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
