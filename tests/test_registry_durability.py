"""Registry durability: SIGKILL in the middle of an ingest, and four writers at once.

Both run on SQLite and PostgreSQL (fixture `db_url`) with real child processes, because neither
a crash nor lock contention can be simulated honestly inside one interpreter. After every kill
the whole log is re-derived from the stored leaves and compared with what the registry says,
so a torn batch, a gap in the leaf indices, a node row that does not match its leaves or a
checkpoint that a later tree does not extend would all show up here. Kills land after a random
number of committed batches plus a random fraction of a batch's time (the child reports each
batch), so they hit verification and the storing transaction alike on fast and slow machines.

The data set (1,000 passports x (birth + 9 telemetry entries) = 10,000 records on st25dv64k
tags, so nothing is evicted) is generated once per test process under tmp_path_factory; that
takes about 1 s on 2 cores, so it is not shared between xdist workers.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from factories import GS1_ID, PKI_START, birth_body, grow
from sqlalchemy import func, select

from passport import merkle
from passport.image import Image
from passport.notes import open_checkpoint
from passport.records import SignedRecord
from passport.registry import Registry, read_sources
from passport.registry.log import SqlLog
from passport.registry.models import (
    alert_t,
    chain_head_t,
    log_checkpoint_t,
    log_leaf_t,
    log_meta_t,
    log_node_t,
    record_t,
)
from passport.trust.bundle import TrustBundle
from passport.trust.ca import CertificateAuthority
from passport.trust.keys import load_private
from passport.trust.roles import Role
from passport.trust.store import load_certificates, thumbprint

pytestmark = pytest.mark.slow

PASSPORTS = 1_000
ENTRIES = 9  # telemetry entries per passport: 10 records each, 10,000 in all
PARTIAL = 4  # entries on the earlier tag image of each passport (concurrency test)
OEMS = 3
KILLS = 4  # SIGKILLs that must land while the child is still running, per database
CRASH_BATCH = 50  # images per ingest transaction in the crash test: 500 records
CHILD_TIMEOUT_S = 180

CHILD = """\
import json, sys, time
from pathlib import Path

from passport.registry import Registry, read_sources
from passport.trust.bundle import TrustBundle

url, trust_dir, inputs, batch, barrier = sys.argv[1:6]
paths = json.loads(Path(inputs).read_text()) if inputs.endswith(".json") else [inputs]
sources, problems = read_sources(paths)
if problems:
    sys.exit(f"unreadable inputs: {problems[:3]}")
registry = Registry(url, trust=TrustBundle.load(trust_dir))
print("ready", flush=True)
if barrier != "-":
    while not Path(barrier).exists():
        time.sleep(0.002)
summary = registry.ingest(
    sources, batch=int(batch), progress=lambda n: print("batch", flush=True)
)
print(json.dumps({
    "seconds": summary.seconds, "stored": summary.stored, "duplicates": summary.duplicates,
    "rejected": summary.rejected, "alerts": summary.alerts, "tree_size": summary.tree_size,
}), flush=True)
"""


@dataclass(frozen=True)
class DataSet:
    """Everything the tests ingest, on disk, with the digests each file holds."""

    root: Path
    trust_dir: Path
    images_dir: Path  # the full images: what the crash test ingests
    partial_dir: Path  # an earlier image of each passport (its first PARTIAL entries)
    child: Path  # the ingest script the child processes run
    contents: dict[str, frozenset[bytes]]  # file path -> digests of the records it holds
    seconds: float  # how long generating it took

    @property
    def digests(self) -> frozenset[bytes]:
        return frozenset().union(*self.contents.values())

    def union(self, paths: list[str]) -> frozenset[bytes]:
        return frozenset().union(*(self.contents[p] for p in paths))


def _generate(root: Path) -> DataSet:
    """A CA with a few OEMs, then passports signed with the library directly (fast: no CLI,
    one P-256 signature per birth, Ed25519 cell keys for the entries)."""
    started = time.perf_counter()
    authority = CertificateAuthority(root / "ca")
    authority.init(not_before=PKI_START)
    oems = []
    for n in range(OEMS):
        issued = authority.issue(
            f"oem{n}", Role.OEM, common_name=f"Durability OEM {n}", not_before=PKI_START
        )
        oems.append(
            (load_private(issued.key_path), thumbprint(load_certificates(issued.cert_path)[0]))
        )
    images_dir, partial_dir = root / "images", root / "partial"
    images_dir.mkdir()
    partial_dir.mkdir()
    rng = random.Random(20261124)
    contents: dict[str, frozenset[bytes]] = {}
    for n in range(PASSPORTS):
        cell = ed25519.Ed25519PrivateKey.generate()
        oem_key, x5t = oems[n % OEMS]
        body = birth_body(
            cell,
            passport_id=uuid.UUID(int=rng.getrandbits(128), version=4),
            battery_id=f"{GS1_ID}{n:06d}",
        )
        image = Image.create(SignedRecord.sign(body, oem_key, x5t=x5t), "st25dv64k")
        partial, _, _ = grow(image, cell, PARTIAL, evict=False)  # evict=False: all must fit
        full, _, _ = grow(partial, cell, ENTRIES - PARTIAL, start=PARTIAL + 1, evict=False)
        for directory, img in ((partial_dir, partial), (images_dir, full)):
            path = directory / f"{n:05d}.t5t"
            path.write_bytes(img.to_bytes())
            contents[str(path)] = frozenset(r.digest for r in img.records)
    child = root / "ingest_child.py"
    child.write_text(CHILD)
    return DataSet(
        root=root,
        trust_dir=authority.trust_dir,
        images_dir=images_dir,
        partial_dir=partial_dir,
        child=child,
        contents=contents,
        seconds=time.perf_counter() - started,
    )


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> DataSet:
    return _generate(tmp_path_factory.mktemp("registry-data"))


# --------------------------------------------------------------------------------------------
# Helpers


@dataclass(frozen=True)
class Child:
    """A child process running CHILD; its stderr goes to a file (no pipe to fill up)."""

    proc: subprocess.Popen[str]
    stderr: Path

    def errors(self) -> str:
        return self.stderr.read_text()[-3000:]

    def summary(self) -> dict[str, Any]:
        """Wait for the child and return its JSON summary; fail with its stderr otherwise."""
        out, _ = self.proc.communicate(timeout=CHILD_TIMEOUT_S)
        assert self.proc.returncode == 0, f"ingest exited {self.proc.returncode}:\n{self.errors()}"
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result


def start_child(
    data: DataSet, url: str, inputs: Path, log_dir: Path, *, batch: int, barrier: Path | None
) -> Child:
    """Start an ingest and return once it has decoded its inputs and opened the registry."""
    stderr = log_dir / f"child-{time.monotonic_ns()}.err"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(data.child), url, str(data.trust_dir), str(inputs), str(batch),
             str(barrier) if barrier else "-"],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    child = Child(proc, stderr)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        pytest.fail(f"the ingest child did not start ({line!r}):\n{child.errors()}")
    return child


def wait_and_kill_at_random(child: Child, rng: random.Random, batches: int) -> None:
    """SIGKILL at a random moment of the ingest, whatever the machine's speed: after a random
    number of batches (the child prints a line per batch) plus a random part of one batch's
    time, so the kill falls in verification or inside the storing transaction alike."""
    assert child.proc.stdout is not None
    wanted = rng.randrange(1, batches)
    last = time.perf_counter()
    interval = 0.1
    for _ in range(wanted):
        if not child.proc.stdout.readline():
            return  # the child ended (the caller looks at how)
        now = time.perf_counter()
        interval, last = now - last, now
    time.sleep(rng.uniform(0, interval))
    if child.proc.poll() is None:
        os.kill(child.proc.pid, signal.SIGKILL)


@dataclass(frozen=True)
class LogFacts:
    """What `check_log` found, for comparisons between checks."""

    size: int
    digests: frozenset[bytes]
    root: bytes


def check_log(url: str, data: DataSet) -> LogFacts:
    """Re-derive the whole log from its leaves and check it against every stored table.

    Runs with the log locked, so on PostgreSQL it waits until the backend of a killed client
    has ended (committed or rolled back) its transaction."""
    registry = Registry(url)
    try:
        with registry.engine.begin() as conn:
            state = SqlLog(conn).state(lock=True)
            meta_size = conn.execute(select(log_meta_t.c.size)).scalar_one()
            leaves = conn.execute(
                select(log_leaf_t.c.idx, log_leaf_t.c.digest, log_leaf_t.c.leaf_hash).order_by(
                    log_leaf_t.c.idx
                )
            ).all()
            raw = {
                bytes(d): bytes(r)
                for d, r in conn.execute(select(record_t.c.digest, record_t.c.raw))
            }
            record_rows = conn.execute(select(func.count()).select_from(record_t)).scalar_one()
            node_rows = conn.execute(select(func.count()).select_from(log_node_t)).scalar_one()
            cp = log_checkpoint_t.c
            checkpoints = conn.execute(
                select(cp.tree_size, cp.root, cp.note).order_by(cp.tree_size)
            ).all()
            alerts = conn.execute(select(func.count()).select_from(alert_t)).scalar_one()
            heads = dict(conn.execute(select(chain_head_t.c.cell_id, chain_head_t.c.seq)).all())
            newest = dict(
                conn.execute(
                    select(record_t.c.cell_id, func.max(record_t.c.seq))
                    .where(record_t.c.kind >= 3)
                    .group_by(record_t.c.cell_id)
                ).all()
            )
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        info = registry.info()
        log_key = registry.log_public_key()
    finally:
        registry.engine.dispose()

    size = len(leaves)
    digests = [bytes(d) for _, d, _ in leaves]
    assert [int(i) for i, _, _ in leaves] == list(range(size)), "leaf indices are not 0..n-1"
    assert size == meta_size == record_rows == info["tree_size"] == info["records"], (
        f"leaves {size}, log_meta.size {meta_size}, records {record_rows}, info {info}"
    )
    assert len(set(digests)) == size, "a digest is logged twice"
    assert set(digests) == set(raw), "a record without a leaf, or a leaf without a record"
    assert set(raw) <= data.digests, "a record that was never ingested"
    tree = merkle.MemoryTree()
    for digest, (_, _, leaf_hash) in zip(digests, leaves, strict=True):
        assert bytes(leaf_hash) == merkle.leaf_hash(raw[digest]), "leaf hash is not of the record"
        tree.append(bytes(leaf_hash))
    root = tree.root()
    assert root.hex() == info["root"], "the stored nodes give another root than the leaves"
    assert node_rows == sum(size >> level for level in range(64)), "missing or extra node rows"
    # Every checkpoint ever signed is a prefix of today's tree: nothing was rewritten.
    assert checkpoints, "no checkpoint"
    assert int(checkpoints[-1].tree_size) == size, "the newest checkpoint is not of the tree"
    for tree_size, cp_root, note in checkpoints:
        assert bytes(cp_root) == tree.root(int(tree_size)), f"checkpoint {tree_size} rewritten"
        signed = open_checkpoint(note, state.origin, log_key)
        assert (signed.size, signed.root) == (int(tree_size), bytes(cp_root))
    assert info["checkpoint"] == checkpoints[-1].note
    assert alerts == info["alerts"] == 0, "honest ingest raised alerts"
    assert heads == newest, "a chain head is not the cell's newest stored entry"
    return LogFacts(size, frozenset(digests), root)


# --------------------------------------------------------------------------------------------
# Tests


def test_dataset_is_cheap_and_complete(dataset: DataSet) -> None:
    """The crash test needs 10,000+ distinct records, and building them must stay cheap."""
    full = [p for p in dataset.contents if Path(p).parent == dataset.images_dir]
    assert len(full) == PASSPORTS
    assert len(dataset.union(full)) == len(dataset.digests) == PASSPORTS * (1 + ENTRIES) >= 10_000
    assert dataset.seconds < 20, f"generating the data set took {dataset.seconds:.1f} s"


def test_sigkill_mid_ingest_leaves_a_consistent_log(
    db_url: str, dataset: DataSet, tmp_path: Path
) -> None:
    """Kill the ingest at random moments; each time the log must be whole and verifiable, and
    a last run must finish the job with every record stored exactly once."""
    Registry.init(db_url)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    total = len(dataset.digests)
    batches = -(-PASSPORTS // CRASH_BATCH)
    sizes: list[int] = []
    kills = attempts = 0
    while kills < KILLS:
        attempts += 1
        assert attempts <= 3 * KILLS, f"the ingest kept finishing before the kill (seed {seed})"
        child = start_child(
            dataset, db_url, dataset.images_dir, tmp_path, batch=CRASH_BATCH, barrier=None
        )
        wait_and_kill_at_random(child, rng, batches)
        child.proc.communicate(timeout=CHILD_TIMEOUT_S)
        if child.proc.returncode == -signal.SIGKILL:
            kills += 1
        else:  # it finished before the kill: then it must have succeeded
            assert child.proc.returncode == 0, child.errors()
        facts = check_log(db_url, dataset)
        assert facts.size >= (sizes[-1] if sizes else 0), "committed records disappeared"
        sizes.append(facts.size)
    print(f"seed {seed}: log sizes after each SIGKILL {sizes} of {total}")
    assert any(0 < s < total for s in sizes), (
        f"no kill landed mid-ingest (log sizes after each kill {sizes}, seed {seed})"
    )

    summary = start_child(
        dataset, db_url, dataset.images_dir, tmp_path, batch=CRASH_BATCH, barrier=None
    ).summary()
    assert summary["rejected"] == {}
    assert summary["stored"] == total - sizes[-1]
    assert summary["stored"] + summary["duplicates"] == total
    facts = check_log(db_url, dataset)
    assert facts.size == total
    assert facts.digests == dataset.digests

    again = Registry(db_url, trust=TrustBundle.load(dataset.trust_dir))
    try:
        second = again.ingest(read_sources([dataset.images_dir])[0], batch=CRASH_BATCH)
    finally:
        again.engine.dispose()
    assert (second.stored, second.duplicates, second.tree_size) == (0, total, total)
    assert check_log(db_url, dataset).root == facts.root


WRITERS = 4
SHARE = 0.6


def test_concurrent_writers_store_each_record_once(
    db_url: str, dataset: DataSet, tmp_path: Path
) -> None:
    """Four processes ingest overlapping, shuffled subsets at once (full images and earlier
    images of the same passports, so they also overlap record by record): they must queue on
    the lock (busy timeout / row lock), never fail, and store the union exactly once."""
    Registry.init(db_url)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    files = sorted(dataset.contents)
    subsets = [rng.sample(files, int(SHARE * len(files))) for _ in range(WRITERS)]  # shuffled
    barrier = tmp_path / "go"
    children = []
    for n, subset in enumerate(subsets):
        inputs = tmp_path / f"inputs-{n}.json"
        inputs.write_text(json.dumps(subset))
        children.append(start_child(dataset, db_url, inputs, tmp_path, batch=25, barrier=barrier))
    barrier.touch()
    summaries = [child.summary() for child in children]  # each asserts exit status 0

    print(
        f"seed {seed}: "
        + ", ".join(f"{s['stored']} stored in {s['seconds']:.1f} s" for s in summaries)
    )
    union = dataset.union([p for subset in subsets for p in subset])
    for summary, subset in zip(summaries, subsets, strict=True):
        assert summary["rejected"] == {}, f"seed {seed}"
        assert summary["alerts"] == [], f"seed {seed}"
        assert summary["stored"] + summary["duplicates"] == sum(
            len(dataset.contents[p]) for p in subset
        )
    assert sum(s["stored"] for s in summaries) == len(union), (
        f"records stored by more than one writer, or by none (seed {seed}): {summaries}"
    )
    facts = check_log(db_url, dataset)
    assert facts.size == len(union)
    assert facts.digests == union
