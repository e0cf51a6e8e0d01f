"""The registry, library level: schema and migrations, verified ingest of tag images and evicted
journals, fork / clone / checkpoint-mismatch alerts, tag checks against the registry, the
transparency log (checkpoints, consistency, receipts) and the receipt hook of the trust model.

Every test that touches a database takes `db_url`, so it runs on SQLite and on PostgreSQL; the
property test runs on SQLite only, to stay fast. Clocks are fixed (`NOW` = T0 + 30 days).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from attack_kit import Receipts, fresh_actor, loaded_bundle
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from factories import T0, cell_key, pki, sign_birth
from factories import birth_body as make_birth_body
from hypothesis import given, settings
from hypothesis import strategies as st
from registry_kit import (
    BIG_TAG,
    DAY,
    NOW,
    History,
    alert_kinds,
    at,
    chain_head,
    checkpoint_count,
    flagged,
    forged_checkpoint,
    fork,
    image_source,
    journal_source,
    leaves,
    lifecycle,
    measurement,
    memory_root,
    new_passport,
    open_registry,
    registry_trust,
    rules_of,
    stored,
    tampered,
    tampered_image,
)
from sqlalchemy import insert, inspect
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from passport import merkle
from passport.chain import ReceiptLookup, check_image
from passport.errors import InputError, PassportError, StorageError, VerificationError
from passport.image import Image
from passport.notes import open_checkpoint
from passport.receipts import ReceiptBook, verify_receipt
from passport.records import Checkpoint, Entry, Kind, SignedRecord, Values
from passport.registry import Registry, RegistryCheck, Source, models
from passport.registry.db import resolve_url
from passport.registry.ingest import Verifier
from passport.registry.models import record_t
from passport.trust.bundle import TrustBundle
from passport.trust.roles import Role

EMPTY_ROOT = hashlib.sha256(b"").digest()


def by_digest(records: tuple[SignedRecord, ...] | list[SignedRecord]) -> dict[bytes, bytes]:
    return {r.digest: r.raw for r in records}


def assert_log_sound(registry: Registry) -> None:
    """The log holds every stored record exactly once, leaves dense from 0, each leaf hash the
    hash of the record's exact bytes, and the root and newest checkpoint are the in-memory
    tree's over the leaves in index order."""
    log = leaves(registry)
    held = stored(registry)
    assert [idx for idx, *_ in log] == list(range(len(log)))
    assert sorted(d for _, d, _, _ in log) == sorted(held)
    assert all(leaf == merkle.leaf_hash(raw) for _, _, leaf, raw in log)
    root = memory_root(raw for *_, raw in log)
    info = registry.info()
    assert (info["tree_size"], info["records"], info["root"]) == (len(log), len(held), root.hex())
    note = open_checkpoint(info["checkpoint"], info["origin"], registry.log_public_key())
    assert (note.size, note.root) == (len(log), root)


# --------------------------------------------------------------------------------------------
# Setup: schema, key, engines


def test_migrations_build_exactly_the_models_schema(db_url: str) -> None:
    registry = Registry.init(db_url)
    with registry.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), models.metadata)
        tables = set(inspect(conn).get_table_names())
        revision = MigrationContext.configure(conn).get_current_revision()
    assert differences == []
    assert tables == {*models.metadata.tables, "alembic_version"}  # the comparison saw them
    assert revision is not None


def test_init_is_idempotent(db_url: str) -> None:
    first = Registry.init(db_url, origin="registry.test/log/one").info()
    registry = Registry.init(db_url, origin="registry.test/log/two")
    second = registry.info()
    assert second["origin"] == first["origin"] == "registry.test/log/one"
    assert second["log_public_key_pem"] == first["log_public_key_pem"]
    assert (second["tree_size"], second["checkpoint"]) == (0, first["checkpoint"])
    assert checkpoint_count(registry) == 1


def test_a_new_registry_is_an_empty_log_with_an_ed25519_key(db_url: str) -> None:
    registry = Registry.init(db_url, origin="registry.test/log")
    info = registry.info()
    assert info["engine"] == db_url.split(":", 1)[0]
    assert (info["tree_size"], info["root"]) == (0, EMPTY_ROOT.hex())
    assert (info["cells"], info["flagged_cells"], info["records"], info["alerts"]) == (0, 0, 0, 0)
    key = load_pem_public_key(info["log_public_key_pem"].encode())
    assert isinstance(key, ed25519.Ed25519PublicKey)
    assert info["log_public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    note = open_checkpoint(info["checkpoint"], "registry.test/log", key)
    assert (note.origin, note.size, note.root) == ("registry.test/log", 0, EMPTY_ROOT)


def test_sqlite_runs_in_wal_with_foreign_keys_on(tmp_path: Path) -> None:
    """SQLite only (these are SQLite pragmas): a bare path is an SQLite file, tuned."""
    path = tmp_path / "sub" / "registry.db"
    registry = Registry.init(str(path))
    assert registry.url == f"sqlite:///{path}"
    with registry.engine.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 60_000}


def test_the_database_enforces_foreign_keys(db_url: str) -> None:
    registry = open_registry(db_url)
    row = {
        "digest": bytes(32), "cell_id": 4242, "kind": int(Kind.TELEMETRY), "seq": 1,
        "prev": bytes(32), "time": T0, "signer": "cell", "raw": b"\xd2", "ingested_at": NOW,
    }  # fmt: skip
    with pytest.raises(IntegrityError), registry.engine.begin() as conn:
        conn.execute(insert(record_t).values(**row))
    assert stored(registry) == {}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("reg.db", "sqlite:///reg.db", id="bare-path"),
        pytest.param("sqlite:///x/reg.db", "sqlite:///x/reg.db", id="sqlite-url"),
        pytest.param("postgresql://u@h/db", "postgresql+psycopg://u@h/db", id="postgresql"),
        pytest.param("postgres://u@h/db", "postgresql+psycopg://u@h/db", id="postgres-alias"),
    ],
)
def test_database_urls(given: str, expected: str) -> None:
    assert resolve_url(given) == expected


@pytest.mark.parametrize("url", ["mysql://x", "oracle://scott@db/orcl"])
def test_unsupported_database_urls_are_refused(url: str) -> None:
    with pytest.raises(InputError, match="unsupported database URL"):
        Registry(url)


def test_a_registry_that_was_never_initialised_says_so(db_url: str) -> None:
    """Every operation on an empty database must raise StorageError telling to run
    `passport registry init`, not leak a low-level SQLAlchemy error."""
    registry = Registry(db_url, trust=registry_trust())
    operations: dict[str, Callable[[], object]] = {
        "info": registry.info,
        "checkpoint": registry.checkpoint,
        "alerts": registry.alerts,
        "prove": lambda: registry.prove(bytes(32)),
        "consistency": lambda: registry.consistency(0, 0),
        "check_image": lambda: registry.check_image(Image.create(new_passport(90).birth)),
    }
    leaks: dict[str, str] = {}
    for name, operation in operations.items():
        try:
            operation()
        except StorageError as exc:
            if "passport registry init" not in str(exc):
                leaks[name] = f"StorageError without the hint: {exc}"
        except (SQLAlchemyError, PassportError) as exc:
            leaks[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        else:
            leaks[name] = "no error"
    assert leaks == {}


# --------------------------------------------------------------------------------------------
# Ingesting tag images


def three_tags() -> tuple[History, History, SignedRecord, list[Source]]:
    """A small tag that evicted (with a checkpoint), a big one that did not, and a birth only."""
    small = lifecycle(1)
    big = lifecycle(2, profile=BIG_TAG)
    lone = new_passport(3).birth
    sources = [
        image_source(small.image, "small.t5t"),
        image_source(big.image, "big.t5t"),
        image_source(Image.create(lone), "lone.t5t"),
    ]
    return small, big, lone, sources


def test_ingest_stores_every_record_of_valid_images(db_url: str) -> None:
    small, big, lone, sources = three_tags()
    assert small.image.checkpoint is not None
    assert big.image.checkpoint is None
    expected = [*small.image.records, *big.image.records, lone]
    registry = open_registry(db_url)
    summary = registry.ingest(sources, now=NOW)
    assert (summary.stored, summary.duplicates, summary.rejected, summary.alerts) == (
        len(expected), 0, {}, [],
    )  # fmt: skip
    assert summary.tree_size == len(expected)
    assert stored(registry) == by_digest(expected)  # byte-identical
    assert [d for _, d, _, _ in leaves(registry)] == [r.digest for r in expected]  # ingest order
    assert registry.info()["root"] == memory_root(r.raw for r in expected).hex()
    assert registry.info()["cells"] == 3
    assert_log_sound(registry)
    for history in (small, big):
        last = history.image.entries[-1]
        assert isinstance(last.body, Entry)
        assert chain_head(registry, history.passport.birth) == (last.body.seq, last.digest)
    assert chain_head(registry, lone) is None


def test_ingesting_the_same_images_again_is_a_no_op(db_url: str) -> None:
    _, _, _, sources = three_tags()
    registry = open_registry(db_url)
    first = registry.ingest(sources, now=NOW)
    log, checkpoints, info = leaves(registry), checkpoint_count(registry), registry.info()
    again = registry.ingest(sources, now=NOW + dt.timedelta(days=1))
    assert (again.stored, again.duplicates, again.rejected, again.alerts) == (
        0, first.stored, {}, [],
    )  # fmt: skip
    assert again.tree_size == first.tree_size
    assert checkpoint_count(registry) == checkpoints  # same size: no new checkpoint
    assert leaves(registry) == log
    assert registry.info() == info


def test_an_older_tag_ingested_later_does_not_move_the_head_back(db_url: str) -> None:
    history = lifecycle(38)
    older = history.snapshots[3]
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    summary = registry.ingest([image_source(older)], now=NOW)
    assert summary.rejected == {}
    last = history.image.entries[-1]
    assert isinstance(last.body, Entry)
    assert chain_head(registry, history.passport.birth) == (last.body.seq, last.digest)
    assert "registry.rollback" in [f.rule for f in registry.check_image(older).findings]


def test_one_image_twice_in_one_batch_is_stored_once(db_url: str) -> None:
    history = lifecycle(4)
    registry = open_registry(db_url)
    source = image_source(history.image)
    summary = registry.ingest([source, source], now=NOW)
    count = len(history.image.records)
    assert (summary.stored, summary.duplicates, summary.tree_size) == (count, count, count)
    assert_log_sound(registry)


# --------------------------------------------------------------------------------------------
# Journals of evicted records


@pytest.mark.parametrize("how", ["image-then-journal", "one-batch", "journal-listed-first"])
def test_an_evicted_journal_is_stored_once_its_image_is_in(db_url: str, how: str) -> None:
    history = lifecycle(5)
    assert any(isinstance(r.body, Checkpoint) for r in history.evicted)
    image, journal = image_source(history.image), journal_source(history.evicted)
    registry = open_registry(db_url)
    if how == "image-then-journal":
        registry.ingest([image], now=NOW)
        summary = registry.ingest([journal], now=NOW)
        assert summary.stored == len(history.evicted)
    else:  # within a batch, images are verified first
        batch = [image, journal] if how == "one-batch" else [journal, image]
        summary = registry.ingest(batch, now=NOW)
    assert (summary.rejected, summary.alerts) == ({}, [])
    assert summary.tree_size == len(history.records)
    assert stored(registry) == by_digest(history.records)
    assert_log_sound(registry)


def test_a_journal_of_an_unknown_passport_is_rejected_as_orphan(db_url: str) -> None:
    history = lifecycle(6)
    registry = open_registry(db_url)
    summary = registry.ingest([journal_source(history.evicted, "lost.evicted.cbor")], now=NOW)
    assert (summary.stored, summary.tree_size) == (0, 0)
    assert list(summary.rejected) == ["lost.evicted.cbor"]
    findings = summary.rejected["lost.evicted.cbor"]
    assert rules_of(findings) == {"registry.orphan"}
    assert len(findings) == len(history.evicted)  # each record is named
    assert stored(registry) == {}
    assert checkpoint_count(registry) == 1
    # once the tag is in, the very same journal goes in
    registry.ingest([image_source(history.image)], now=NOW)
    later = registry.ingest([journal_source(history.evicted, "lost.evicted.cbor")], now=NOW)
    assert (later.stored, later.rejected) == (len(history.evicted), {})


def tampered_journal(history: History, seq: int) -> tuple[list[SignedRecord], SignedRecord]:
    """The evicted journal with entry `seq` tampered; (journal, the original entry)."""
    victim = next(r for r in history.evicted if isinstance(r.body, Entry) and r.body.seq == seq)
    return [tampered(r) if r is victim else r for r in history.evicted], victim


def test_a_tampered_journal_record_is_rejected_with_the_entries_after_it(db_url: str) -> None:
    history = lifecycle(7)
    journal, victim = tampered_journal(history, 3)
    cut = history.evicted.index(victim)
    before = history.evicted[:cut]
    later_entries = [r for r in history.evicted[cut + 1 :] if isinstance(r.body, Entry)]
    # Checkpoints that stand for entries after the tampered one vouch for entries the registry
    # cannot place on a chain now: they wait for the honest journal too. (The one counting
    # the tampered entry itself is placed and signature-checked, and kept.)
    later_checkpoints = [
        r for r in history.evicted[cut + 1 :]
        if isinstance(r.body, Checkpoint) and r.body.count > victim.body.seq  # type: ignore[union-attr]
    ]  # fmt: skip
    assert before
    assert later_entries
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    summary = registry.ingest([journal_source(journal, "j.evicted.cbor")], now=NOW)
    findings = summary.rejected["j.evicted.cbor"]
    assert rules_of(findings) == {"chain.entry-signature", "registry.orphan"}
    (signature,) = [f["message"] for f in findings if f["rule"] == "chain.entry-signature"]
    assert signature.startswith("telemetry entry seq 3:")
    orphans = sum(f["rule"] == "registry.orphan" for f in findings)
    assert orphans == len(later_entries) + len(later_checkpoints)
    held = stored(registry)
    assert all(r.digest in held for r in before)
    assert victim.digest not in held
    assert tampered(victim).digest not in held
    assert not any(r.digest in held for r in later_entries)
    assert_log_sound(registry)
    # the honest journal fills the gap
    honest = registry.ingest([journal_source(history.evicted)], now=NOW)
    assert honest.rejected == {}
    assert stored(registry) == by_digest(history.records)


def test_entries_built_on_a_forged_journal_entry_are_rejected_with_it(db_url: str) -> None:
    """Entry 3 is signed by another key but linked right, and entries 4.. link to it: they
    verify one by one, yet nothing built on a rejected record may enter the registry."""
    history = lifecycle(37, forged=3)
    registry = open_registry(db_url)
    assert registry.ingest([image_source(history.image)], now=NOW).rejected == {}
    summary = registry.ingest([journal_source(history.evicted, "j.evicted.cbor")], now=NOW)
    findings = summary.rejected["j.evicted.cbor"]
    assert [f["rule"] for f in findings] == ["chain.entry-signature"]
    assert findings[0]["message"].startswith("telemetry entry seq 3:")
    held = stored(registry)
    evicted_entries = [r for r in history.evicted if isinstance(r.body, Entry)]
    assert {r.body.seq for r in evicted_entries if r.digest in held} == {1, 2}
    assert_log_sound(registry)


def test_a_tampered_journal_raises_no_alert(db_url: str) -> None:
    """A bit flipped in transit is the sender's problem, not evidence against the passport:
    the tampered entry is rejected, so no checkpoint-mismatch alert may be raised against the
    honest checkpoint that follows it, and the passport must not be flagged."""
    history = lifecycle(8)
    journal, _ = tampered_journal(history, 3)
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    summary = registry.ingest([journal_source(journal, "j.evicted.cbor")], now=NOW)
    assert summary.alerts == []
    assert registry.alerts() == []
    assert not flagged(registry, history.passport.birth)


def rogue_checkpoint(history: History) -> SignedRecord:
    """A checkpoint for this passport signed by another key, counting entries nobody has."""
    body = Checkpoint(count=99, head=hashlib.sha256(b"nothing").digest(), time=T0 + DAY,
                      birth=history.passport.birth.digest, values=Values(wh=1))  # fmt: skip
    return SignedRecord.sign(body, cell_key(999))


def flipped_evicted_checkpoint(history: History) -> SignedRecord:
    """An honest evicted checkpoint with one bit of its signature flipped."""
    return tampered(next(r for r in history.evicted if isinstance(r.body, Checkpoint)))


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(rogue_checkpoint, id="signed-by-another-key"),
        pytest.param(flipped_evicted_checkpoint, id="flipped-signature"),
    ],
)
def test_a_journal_checkpoint_is_never_stored_unverified(
    db_url: str, forge: Callable[[History], SignedRecord]
) -> None:
    """A checkpoint whose signature does not verify with the cell key must not enter the log,
    whether or not the registry holds the entries it counts."""
    history = lifecycle(9)
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    forged = forge(history)
    summary = registry.ingest([journal_source([forged], "forged.evicted.cbor")], now=NOW)
    logged = forged.digest in stored(registry)
    assert not logged, "a checkpoint whose signature does not verify was stored and logged"
    assert (summary.stored, list(summary.rejected)) == (0, ["forged.evicted.cbor"])


# --------------------------------------------------------------------------------------------
# Rejected images


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        pytest.param(Kind.BIRTH, "chain.birth-signature", id="birth"),
        pytest.param(Kind.CHECKPOINT, "chain.checkpoint-signature", id="checkpoint"),
        pytest.param(Kind.TELEMETRY, "chain.entry-signature", id="telemetry"),
        pytest.param(Kind.MEASUREMENT, "chain.entry-signature", id="measurement"),
    ],
)
def test_an_image_with_a_tampered_record_is_rejected_whole(
    db_url: str, kind: Kind, rule: str
) -> None:
    history = lifecycle(10, telemetry=6, measured_after=5)
    image = history.image
    index = next(i for i, r in enumerate(image.records) if r.kind is kind)
    registry = open_registry(db_url)
    summary = registry.ingest([image_source(tampered_image(image, index), "bad.t5t")], now=NOW)
    assert list(summary.rejected) == ["bad.t5t"]
    assert rule in rules_of(summary.rejected["bad.t5t"])
    assert (summary.stored, summary.tree_size) == (0, 0)
    assert stored(registry) == {}
    assert registry.info()["cells"] == 0


def test_an_image_from_an_unknown_oem_is_rejected(db_url: str) -> None:
    cell = cell_key(11)
    body = make_birth_body(cell, passport_id=uuid.UUID(int=11), battery_id="urn:rogue:11")
    image = Image.create(sign_birth(body, "Rogue Cells OEM"))
    registry = open_registry(db_url)  # trusts ACME OEM and the test lab only
    summary = registry.ingest([image_source(image, "rogue.t5t")], now=NOW)
    assert rules_of(summary.rejected["rogue.t5t"]) == {"trust.cert-unknown"}
    assert stored(registry) == {}


def test_one_rejected_input_does_not_stop_the_others(db_url: str) -> None:
    good, bad = lifecycle(12), lifecycle(13)
    registry = open_registry(db_url)
    summary = registry.ingest(
        [image_source(tampered_image(bad.image, 2), "bad.t5t"), image_source(good.image, "ok.t5t")],
        now=NOW,
    )
    assert list(summary.rejected) == ["bad.t5t"]
    assert stored(registry) == by_digest(good.image.records)


# --------------------------------------------------------------------------------------------
# Forks, clones, checkpoints that lie


def fork_pair(seed: int) -> tuple[Image, Image, SignedRecord]:
    """Two tags of one passport, both validly cell-signed, sharing entries 1-2 and differing
    at seq 3; and the birth."""
    pp = new_passport(seed)
    base = fork(Image.create(pp.birth, BIG_TAG), pp.cell, 2, offset=1)
    return fork(base, pp.cell, 1, offset=3), fork(base, pp.cell, 1, offset=30), pp.birth


@pytest.mark.parametrize("together", [False, True], ids=["two-ingests", "one-batch"])
def test_two_histories_of_one_passport_raise_a_fork_alert(db_url: str, together: bool) -> None:
    honest, rival, birth = fork_pair(14)
    sources = [image_source(honest, "honest.t5t"), image_source(rival, "rival.t5t")]
    registry = open_registry(db_url)
    if together:
        summary = registry.ingest(sources, now=NOW)
    else:
        assert registry.ingest(sources[:1], now=NOW).alerts == []
        summary = registry.ingest(sources[1:], now=NOW)
    assert summary.rejected == {}
    held = stored(registry)
    assert honest.entries[-1].digest in held
    assert rival.entries[-1].digest in held
    (alert,) = registry.alerts()
    assert alert["kind"] == "fork"
    assert alert["detail"]["record"] == rival.entries[-1].digest.hex()
    assert alert["detail"]["rival"] == honest.entries[-1].digest.hex()
    assert registry.info()["flagged_cells"] == 1
    assert flagged(registry, birth)
    again = registry.ingest(sources, now=NOW)
    assert (again.stored, again.duplicates) == (0, len(honest.records) + len(rival.records))
    assert len(registry.alerts()) == 1
    assert_log_sound(registry)


@pytest.mark.parametrize(
    ("seed", "kinds"),
    [
        pytest.param(16, ["clone"], id="other-cell-key"),
        pytest.param(15, [], id="same-cell-key"),
    ],
)
def test_a_second_birth_for_a_battery_id(db_url: str, seed: int, kinds: list[str]) -> None:
    battery = "https://id.gs1.org/01/09506000134352/21/CLONE"
    first = new_passport(15, battery_id=battery)
    second = new_passport(seed, passport_id=uuid.UUID(int=1015), battery_id=battery)
    registry = open_registry(db_url)
    registry.ingest([image_source(Image.create(first.birth), "first.t5t")], now=NOW)
    summary = registry.ingest([image_source(Image.create(second.birth), "second.t5t")], now=NOW)
    assert summary.rejected == {}
    assert {first.birth.digest, second.birth.digest} <= set(stored(registry))
    assert alert_kinds(registry) == kinds
    info = registry.info()
    assert (info["cells"], info["flagged_cells"]) == (2, len(kinds))


def fork_sources() -> list[Source]:
    honest, rival, _ = fork_pair(33)
    return [image_source(honest, "honest.t5t"), image_source(rival, "rival.t5t")]


def clone_sources() -> list[Source]:
    battery = "https://id.gs1.org/01/09506000134352/21/TWICE"
    births = [new_passport(seed, battery_id=battery).birth for seed in (34, 35)]
    return [image_source(Image.create(b), f"{i}.t5t") for i, b in enumerate(births)]


def mismatch_sources() -> list[Source]:
    history = lifecycle(36)
    forged = forged_checkpoint(history.image, history.passport.cell)
    return [image_source(forged, "forged.t5t"), journal_source(history.evicted)]


@pytest.mark.parametrize(
    ("sources", "kind"),
    [
        pytest.param(fork_sources, "fork", id="fork"),
        pytest.param(clone_sources, "clone", id="clone"),
        pytest.param(mismatch_sources, "checkpoint-mismatch", id="checkpoint-mismatch"),
    ],
)
def test_the_ingest_summary_lists_the_alerts_it_raised(
    db_url: str, sources: Callable[[], list[Source]], kind: str
) -> None:
    """`IngestSummary.alerts` (what `passport registry ingest` prints as ALERT lines and in
    its JSON) holds every alert the ingest raised, whichever phase raised it."""
    registry = open_registry(db_url)
    summary = registry.ingest(sources(), now=NOW)
    assert alert_kinds(registry) == [kind]
    assert [a["kind"] for a in summary.alerts] == [kind]


def test_a_second_birth_reusing_a_passport_id_does_not_sink_the_batch(db_url: str) -> None:
    """Two validly signed births with one passport id (another cell key): the registry must
    keep going, storing the second as evidence or rejecting that one input, and store the
    rest of the batch, not fail the whole batch on a unique constraint."""
    first = new_passport(17)
    twin = new_passport(18, passport_id=uuid.UUID(int=17))
    bystander = new_passport(19)
    registry = open_registry(db_url)
    registry.ingest([image_source(Image.create(first.birth), "first.t5t")], now=NOW)
    summary = registry.ingest(
        [image_source(Image.create(twin.birth), "twin.t5t"),
         image_source(Image.create(bystander.birth), "bystander.t5t")],
        now=NOW,
    )  # fmt: skip
    assert bystander.birth.digest in stored(registry)
    assert twin.birth.digest in stored(registry) or "twin.t5t" in summary.rejected


@pytest.mark.parametrize("order", ["forged-tag-first", "journal-first", "one-batch"])
def test_a_checkpoint_that_summarizes_another_past_raises_an_alert(db_url: str, order: str) -> None:
    history = lifecycle(20)
    forged = forged_checkpoint(history.image, history.passport.cell)
    assert forged.checkpoint is not None
    assert check_image(forged, registry_trust(), now=NOW).valid  # the tag alone looks fine
    tag, journal = image_source(forged, "forged.t5t"), journal_source(history.evicted)
    registry = open_registry(db_url)
    if order == "forged-tag-first":
        summaries = [registry.ingest([tag], now=NOW), registry.ingest([journal], now=NOW)]
    elif order == "journal-first":
        honest = registry.ingest([image_source(history.image), journal], now=NOW)
        summaries = [honest, registry.ingest([tag], now=NOW)]
    else:
        summaries = [registry.ingest([tag, journal], now=NOW)]
    alerts = [a for s in summaries for a in s.alerts]
    assert [a["kind"] for a in alerts] == ["checkpoint-mismatch"]
    assert alerts[0]["record"] == forged.checkpoint.digest.hex()
    assert all(s.rejected == {} for s in summaries)
    assert alert_kinds(registry) == ["checkpoint-mismatch"]
    registry.ingest([tag, journal], now=NOW)  # the same evidence again: no second alert
    assert alert_kinds(registry) == ["checkpoint-mismatch"]
    assert flagged(registry, history.passport.birth)
    assert {r.digest for r in history.evicted} <= set(stored(registry))
    rules = [f.rule for f in registry.check_image(forged).findings]
    assert rules == ["registry.flagged"]


# --------------------------------------------------------------------------------------------
# Tags checked against the registry


def rival_of(history: History) -> Image:
    """The tag as it was one write ago, with a different last entry (same seq)."""
    previous = history.snapshots[-2]
    pp = history.passport
    return previous.append(measurement(previous, 9000), cell_key=pp.cell)[0]


@pytest.mark.parametrize(
    ("tag", "known", "rules"),
    [
        pytest.param(lambda h, o: h.image, True, [], id="current"),
        pytest.param(lambda h, o: h.snapshots[3], True, ["registry.rollback"], id="rolled-back"),
        pytest.param(lambda h, o: rival_of(h), True, ["registry.fork"], id="forked"),
        pytest.param(lambda h, o: o.image, False, ["registry.unknown"], id="unknown"),
    ],
)
def test_check_image_compares_a_tag_with_the_registry(
    db_url: str, tag: Callable[[History, History], Image], known: bool, rules: list[str]
) -> None:
    history, other = lifecycle(21), lifecycle(22, telemetry=2)
    old_bytes = tag(history, other).to_bytes()  # a copy of the tag kept before it moved on
    registry = open_registry(db_url)
    summary = registry.ingest(
        [image_source(history.image), journal_source(history.evicted)], now=NOW
    )
    assert summary.rejected == {}
    result = registry.check_image(Image.from_bytes(old_bytes))
    assert isinstance(result, RegistryCheck)
    assert result.known is known
    assert [f.rule for f in result.findings] == rules


def test_a_rolled_back_tag_is_caught_without_its_journal(db_url: str) -> None:
    history = lifecycle(23)
    old = history.snapshots[2].to_bytes()
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    result = registry.check_image(Image.from_bytes(old))
    assert result.known
    assert "registry.rollback" in [f.rule for f in result.findings]


def test_check_image_reports_a_flagged_passport(db_url: str) -> None:
    honest, rival, _ = fork_pair(24)
    registry = open_registry(db_url)
    registry.ingest([image_source(honest), image_source(rival)], now=NOW)
    for tag in (honest, rival):
        # each side of the fork differs from the other's entry at that seq, and is flagged
        rules = [f.rule for f in registry.check_image(tag).findings]
        assert rules == ["registry.fork", "registry.flagged"]


# --------------------------------------------------------------------------------------------
# The log: receipts, checkpoints, consistency


def test_a_receipt_proves_each_record_is_in_the_log(db_url: str) -> None:
    history = lifecycle(25)
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    key, origin = registry.log_public_key(), registry.info()["origin"]
    log = leaves(registry)
    root = memory_root(raw for *_, raw in log)
    for idx, digest, _, raw in log:
        info = verify_receipt(registry.prove(digest), raw, key)
        assert (info.leaf_index, info.tree_size, info.root) == (idx, len(log), root)
        assert (info.logged_at, info.origin) == (NOW, origin)
        assert registry.record(digest) == raw


def test_a_receipt_asked_for_later_still_dates_the_record_from_its_first_checkpoint(
    db_url: str,
) -> None:
    early, late = lifecycle(26), lifecycle(27)
    registry = open_registry(db_url)
    registry.ingest([image_source(early.image)], now=NOW)
    registry.ingest([image_source(late.image)], now=NOW + dt.timedelta(days=7))
    info = verify_receipt(
        registry.prove(early.passport.birth.digest),
        early.passport.birth.raw,
        registry.log_public_key(),
    )
    assert (info.logged_at, info.tree_size) == (NOW, len(early.image.records))


@pytest.mark.parametrize(
    ("mangle", "other_key"),
    [
        pytest.param(lambda raw, other: other, False, id="another-record"),
        pytest.param(lambda raw, other: raw[:-1] + bytes([raw[-1] ^ 1]), False, id="one-bit"),
        pytest.param(lambda raw, other: raw, True, id="another-log-key"),
    ],
)
def test_a_receipt_fails_for_other_bytes_or_another_log(
    db_url: str, mangle: Callable[[bytes, bytes], bytes], other_key: bool
) -> None:
    history = lifecycle(28)
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    record, other = history.image.records[-1], history.image.records[-2]
    receipt = registry.prove(record.digest)
    key = registry.log_public_key()
    verify_receipt(receipt, record.raw, key)  # the untouched case holds
    if other_key:
        key = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(VerificationError) as caught:
        verify_receipt(receipt, mangle(record.raw, other.raw), key)
    assert caught.value.rule == "log.receipt-invalid"


def test_records_outside_the_log_have_no_receipt(db_url: str) -> None:
    registry = open_registry(db_url)
    with pytest.raises(StorageError, match="not in the log"):
        registry.prove(bytes(32))
    with pytest.raises(InputError, match="not in the registry"):
        registry.record(bytes(32))


def test_checkpoints_are_signed_and_the_log_only_grows(db_url: str) -> None:
    first, second = lifecycle(29), lifecycle(30)
    registry = open_registry(db_url)
    registry.ingest([image_source(first.image)], now=NOW)
    origin, key = registry.info()["origin"], registry.log_public_key()
    old_note = registry.checkpoint()
    assert registry.checkpoint() == old_note  # nothing new: the same note
    old = open_checkpoint(old_note, origin, key)
    assert (old.origin, old.size) == (origin, len(first.image.records))
    assert old.root == memory_root(r.raw for r in first.image.records)
    registry.ingest(
        [image_source(second.image), journal_source(first.evicted)],
        now=NOW + dt.timedelta(days=1),
    )
    new = open_checkpoint(registry.checkpoint(), origin, key)
    assert new.size == len(first.records) + len(second.image.records)
    assert new.root == bytes.fromhex(registry.info()["root"])
    proof = registry.consistency(old.size, new.size)
    merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    tree = merkle.MemoryTree()
    for _, _, leaf, _ in leaves(registry):
        tree.append(leaf)
    assert proof == tree.consistency_proof(old.size, new.size)
    with pytest.raises(VerificationError) as caught:
        merkle.verify_consistency(old.size, new.size, new.root, old.root, proof)
    assert caught.value.rule == "log.consistency-invalid"
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(VerificationError) as caught:
        open_checkpoint(registry.checkpoint(), origin, other)
    assert caught.value.rule == "log.checkpoint-invalid"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(3, 2, id="old-after-new"),
        pytest.param(1, 5, id="beyond-the-log"),
        pytest.param(-1, 2, id="negative"),
    ],
)
def test_consistency_refuses_impossible_sizes(db_url: str, old: int, new: int) -> None:
    registry = open_registry(db_url)
    registry.ingest([image_source(lifecycle(31).image)], now=NOW)
    assert registry.info()["tree_size"] == 4
    with pytest.raises(InputError, match="sizes must satisfy"):
        registry.consistency(old, new)


# --------------------------------------------------------------------------------------------
# Closing the trust hook: receipts date the records of a since-revoked signer


def test_receipts_let_a_revoked_testers_earlier_records_pass(db_url: str) -> None:
    """A tester's key is compromised (revoked at T0 + 10 d). Its measurements claim T0 + hours,
    which a thief could backdate: they pass only with proof they were logged before the
    revocation. The first was logged at T0 + 5 d, the second only at T0 + 20 d."""
    name, key, cert = fresh_actor(Role.TESTER)
    bundle = loaded_bundle()  # the registry's bundle: the tester is not revoked yet
    pp = new_passport(32)
    image = fork(Image.create(pp.birth, BIG_TAG), pp.cell, 1, offset=1)
    first = measurement(image, 9700, signer=(key, cert))
    tag1 = image.append(first)[0]
    tag2 = fork(tag1, pp.cell, 1, offset=2)
    second = measurement(tag2, 9650, signer=(key, cert))
    tag2 = tag2.append(second)[0]
    logged_early, revoked, logged_late = at(T0 + 5 * DAY), at(T0 + 10 * DAY), at(T0 + 20 * DAY)

    registry = open_registry(db_url, bundle)
    assert registry.ingest([image_source(tag1)], now=logged_early).rejected == {}
    receipt1 = registry.prove(first.digest)
    assert registry.ingest([image_source(tag2)], now=logged_late).rejected == {}
    receipt2 = registry.prove(second.digest)
    log_key = registry.log_public_key()
    assert verify_receipt(receipt1, first.raw, log_key).logged_at == logged_early
    assert verify_receipt(receipt2, second.raw, log_key).logged_at == logged_late

    pki().revoke(name, reason="key_compromise", at=revoked)
    after = loaded_bundle()

    def findings(tag: Image, receipts: ReceiptLookup | None) -> list[tuple[str, int | None]]:
        report = check_image(tag, after, now=at(T0 + 90 * DAY), receipts=receipts)
        return [(f.rule, f.index) for f in report.findings]

    first_at, second_at = tag2.records.index(first), tag2.records.index(second)
    assert findings(tag1, None) == [("trust.revoked-unproven", first_at)]
    assert findings(tag1, ReceiptBook(log_key, [receipt1])) == []
    assert findings(tag1, registry.receipt_lookup()) == []
    # a receipt the verifier cannot check counts for nothing
    stranger = ed25519.Ed25519PrivateKey.generate().public_key()
    assert findings(tag1, ReceiptBook(stranger, [receipt1])) == [
        ("trust.revoked-unproven", first_at)
    ]
    # logged after the revocation: the receipt proves nothing useful
    both = ReceiptBook(log_key, [receipt1, receipt2])
    assert findings(tag2, both) == [("trust.revoked-unproven", second_at)]
    assert findings(tag2, registry.receipt_lookup()) == [("trust.revoked-unproven", second_at)]
    stub = Receipts({first.digest: logged_early, second.digest: logged_late})
    assert findings(tag2, stub) == [("trust.revoked-unproven", second_at)]


# --------------------------------------------------------------------------------------------
# Property: any order of valid inputs, in any batches, ends in the same sound log


@dataclass(frozen=True)
class Pool:
    """Valid inputs for two passports, and what each holds."""

    sources: tuple[Source, ...]
    births: tuple[bytes, ...]  # the birth digest of each source's passport
    digests: tuple[frozenset[bytes], ...]  # the record digests each source holds
    histories: tuple[History, ...]


@functools.cache
def pool() -> Pool:
    a = lifecycle(40)
    b = lifecycle(41, telemetry=6, measured_after=2)
    half = len(b.evicted) // 2
    named: list[tuple[Source, History, tuple[SignedRecord, ...]]] = [
        (image_source(a.snapshots[4], "a-early.t5t"), a, a.snapshots[4].records),
        (image_source(a.image, "a.t5t"), a, a.image.records),
        (journal_source(a.evicted, "a.evicted.cbor"), a, a.evicted),
        (image_source(b.image, "b.t5t"), b, b.image.records),
        (journal_source(b.evicted[:half], "b-old.evicted.cbor"), b, b.evicted[:half]),
        (journal_source(b.evicted, "b.evicted.cbor"), b, b.evicted),
    ]
    return Pool(
        tuple(s for s, _, _ in named),
        tuple(h.passport.birth.digest for _, h, _ in named),
        tuple(frozenset(r.digest for r in records) for _, _, records in named),
        (a, b),
    )


def expected_after(held: set[bytes], batch: list[int]) -> set[bytes]:
    """What the registry should hold after ingesting `batch` (source indices): every image
    (they are valid), then every journal whose passport's birth is held by then."""
    inputs = pool()
    now_held = set(held)
    for i in batch:
        if inputs.sources[i].image is not None:
            now_held |= inputs.digests[i]
    for i in batch:
        if inputs.sources[i].image is None and inputs.births[i] in now_held:
            now_held |= inputs.digests[i]
    return now_held


def assert_heads_are_newest(registry: Registry, held: set[bytes]) -> None:
    """Each passport's chain head is the held entry with the highest seq."""
    for history in pool().histories:
        newest = [r for r in history.entries if r.digest in held][-1:]
        expected = [(r.body.seq, r.digest) for r in newest if isinstance(r.body, Entry)]
        assert chain_head(registry, history.passport.birth) == (expected[0] if expected else None)


@settings(max_examples=25)
@given(
    batches=st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=5), min_size=1, max_size=4),
    batch_size=st.integers(1, 4),
)
def test_any_order_of_valid_inputs_ends_in_the_same_sound_log(
    batches: list[list[int]], batch_size: int
) -> None:
    inputs = pool()
    everything = set().union(*inputs.digests)
    with tempfile.TemporaryDirectory() as directory:
        registry = open_registry(f"sqlite:///{Path(directory) / 'registry.db'}")
        held: set[bytes] = set()
        for batch in batches:
            sources = [inputs.sources[i] for i in batch]
            summary = registry.ingest(sources, now=NOW, batch=batch_size)
            held = expected_after(held, batch)
            assert registry.alerts() == []
            assert set(stored(registry)) == held
            assert summary.tree_size == len(held)
            assert_log_sound(registry)
            assert_heads_are_newest(registry, held)
        final = registry.ingest(list(inputs.sources), now=NOW)
        assert (final.rejected, final.alerts) == ({}, [])
        assert set(stored(registry)) == everything
        assert final.tree_size == len(everything)
        assert_log_sound(registry)
        assert_heads_are_newest(registry, everything)
        assert registry.alerts() == []


# --------------------------------------------------------------------------------------------
# Parallel verification


def test_parallel_verification_stores_the_same_log_as_one_process(
    db_url: str, tmp_path: Path
) -> None:
    """Tags checked in worker processes: same records, same rejections, same log root, as
    when everything runs in one process (ingest order, hence the tree, does not change)."""
    tags = [lifecycle(300 + n).image for n in range(6)]
    bad = tampered_image(lifecycle(310).image, 2)
    # loaded after the actors exist on disk: workers rebuild the bundle from its directory
    bundle = TrustBundle.load(pki().trust_dir)
    sources = [image_source(t, f"t{n}.t5t") for n, t in enumerate(tags)]
    sources.insert(3, image_source(bad, "bad.t5t"))
    parallel = open_registry(db_url, bundle)
    summary = parallel.ingest(sources, now=NOW, workers=2)
    serial = open_registry(f"sqlite:///{tmp_path / 'serial.db'}", bundle)
    reference = serial.ingest(sources, now=NOW, workers=1)
    assert summary.stored == reference.stored == sum(len(t.records) for t in tags)
    assert set(summary.rejected) == set(reference.rejected) == {"bad.t5t"}
    assert rules_of(summary.rejected["bad.t5t"]) == rules_of(reference.rejected["bad.t5t"])
    assert stored(parallel) == stored(serial)
    assert parallel.info()["root"] == serial.info()["root"]


# --------------------------------------------------------------------------------------------
# What the intake asks the registry


def test_alerts_for_reach_both_passports_of_a_duplicate_serial(db_url: str) -> None:
    """The clone alert sits on the birth the registry saw second; both passports hear of it,
    an unrelated one does not."""
    battery = "https://id.gs1.org/01/09506000134352/21/DUP"
    first = new_passport(41, battery_id=battery)
    second = new_passport(42, battery_id=battery)
    other = new_passport(43)
    registry = open_registry(db_url)
    registry.ingest([image_source(Image.create(p.birth), f"{i}.t5t")
                     for i, p in enumerate((first, second, other))], now=NOW)  # fmt: skip
    found = registry.alerts_for([first.birth.digest, second.birth.digest, other.birth.digest])
    assert set(found) == {first.birth.digest, second.birth.digest}
    assert [a["kind"] for a in found[first.birth.digest]] == ["clone"]
    assert found[first.birth.digest] == found[second.birth.digest]


def test_entries_after_lists_what_the_registry_holds_beyond_a_tag(db_url: str) -> None:
    history = lifecycle(44, telemetry=5, profile=BIG_TAG, measured_after=None)
    registry = open_registry(db_url)
    registry.ingest([image_source(history.image)], now=NOW)
    later = registry.entries_after(history.passport.birth.digest, 2)
    assert [r.digest for r in later] == [r.digest for r in history.entries[2:]]
    assert registry.entries_after(history.passport.birth.digest, 5) == []
    assert registry.entries_after(b"\0" * 32, 0) == []


def test_reingesting_stored_sources_skips_verification(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tags and journals whose every record is stored add nothing: counted as duplicates
    without a second verification; a tag with one new entry is still verified."""
    history = lifecycle(45, telemetry=6)
    sources = [image_source(history.image), journal_source(history.evicted)]
    registry = open_registry(db_url)
    registry.ingest(sources, now=NOW)

    def refuse(*_args: object, **_kwargs: object) -> list[SignedRecord]:
        raise AssertionError("verified a source whose records are all stored")

    with monkeypatch.context() as patch:
        patch.setattr(Verifier, "image", refuse)
        patch.setattr(Verifier, "journal", refuse)
        again = registry.ingest(sources, now=NOW)
    assert (again.stored, again.duplicates) == (0, len(history.image.records)
                                                + len(history.evicted))  # fmt: skip
    new = measurement(history.image)
    grown = history.image.append(new, cell_key=history.passport.cell)[0]
    held = set(stored(registry))
    more = registry.ingest([image_source(grown)], now=NOW)
    assert more.rejected == {}
    assert more.stored == len({r.digest for r in grown.records} - held) >= 1
    assert new.digest in stored(registry)
