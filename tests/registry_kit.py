"""Builders shared by the registry tests (library and CLI): passports with real histories on
small tags (so that there are checkpoints and evicted journals), forks, tampered bytes, and
readers of what a registry database holds.

Births are ECDSA-signed (randomized), so every builder call makes new record bytes: build a
history once per test and keep it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from factories import (
    T0,
    TEST_LAB,
    Passport,
    actor,
    birth_body,
    cell_key,
    next_entry,
    sign_birth,
    telemetry_values,
    trust,
)
from sqlalchemy import func, select

from passport import merkle
from passport.image import Image
from passport.records import Checkpoint, Entry, Kind, SignedRecord, SohMethod, Values
from passport.registry import Registry, Source, source_from_bytes
from passport.registry.models import (
    alert_t,
    cell_t,
    chain_head_t,
    log_checkpoint_t,
    log_leaf_t,
    record_t,
)
from passport.trust.bundle import TrustBundle
from passport.trust.store import thumbprint

OEM = "ACME OEM"
DAY = 86_400
#: The registry's clock in these tests: after every record they sign (T0 + hours).
NOW = dt.datetime.fromtimestamp(T0 + 30 * DAY, dt.UTC)
SMALL_TAG = "ntag216"  # 888 bytes: a birth and two or three entries, so appends evict
BIG_TAG = "st25dv64k"  # 8 KiB: nothing is evicted in these tests


@functools.cache
def registry_trust() -> TrustBundle:
    """The OEM and the test lab under the test PKI (cached: bundles cache validated chains)."""
    return trust(OEM, TEST_LAB)


def at(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


# --------------------------------------------------------------------------------------------
# Passports and histories


def new_passport(seed: int, **changes: Any) -> Passport:
    """The passport of the cell of `seed` with its own passport id and battery id (so that two
    seeds never look like a clone); keyword arguments override birth fields."""
    fields: dict[str, Any] = {
        "passport_id": uuid.UUID(int=seed),
        "battery_id": f"https://id.gs1.org/01/09506000134352/21/R{seed:05d}",
    }
    fields.update(changes)
    cell = cell_key(seed)
    return Passport(cell, sign_birth(birth_body(cell, **fields)))


def measurement(
    image: Image,
    soh_cpct: int = 9700,
    *,
    signer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
) -> SignedRecord:
    """A tester's capacity SoH continuing `image`, signed by the test lab (or `signer`)."""
    key, cert = signer or actor(TEST_LAB)
    values = Values(
        soh_capacity_cpct=soh_cpct, soh_method=SohMethod.CAPACITY_TEST, soh_sigma_cpct=35
    )
    return next_entry(image, key, values, kind=Kind.MEASUREMENT, x5t=thumbprint(cert))


@dataclass(frozen=True)
class History:
    """A passport's life on one tag: every state of the tag, and what left it."""

    passport: Passport
    snapshots: tuple[Image, ...]  # the tag after each write, oldest first (birth only first)
    evicted: tuple[SignedRecord, ...]  # every record evicted, in eviction order

    @property
    def image(self) -> Image:
        return self.snapshots[-1]

    @property
    def records(self) -> tuple[SignedRecord, ...]:
        """Every record ever written, each once (evicted ones first)."""
        seen: dict[bytes, SignedRecord] = {}
        for record in (*self.evicted, *self.image.records):
            seen.setdefault(record.digest, record)
        return tuple(seen.values())

    @property
    def entries(self) -> tuple[SignedRecord, ...]:
        """Every history entry in seq order."""
        found = [r for r in self.records if isinstance(r.body, Entry)]
        return tuple(sorted(found, key=lambda r: _seq(r)))


def lifecycle(
    seed: int,
    telemetry: int = 8,
    *,
    profile: str = SMALL_TAG,
    measured_after: int | None = 3,
    passport: Passport | None = None,
    forged: int | None = None,
) -> History:
    """Birth, then `telemetry` cell entries with a test-lab measurement after the
    `measured_after`-th; on a small tag the oldest entries are evicted behind checkpoints.
    The `forged`-th telemetry entry is signed by another key than the cell's (linked right)."""
    pp = passport or new_passport(seed)
    image = Image.create(pp.birth, profile)
    snapshots = [image]
    evicted: list[SignedRecord] = []
    for i in range(1, telemetry + 1):
        key = cell_key(10_000 + seed) if i == forged else pp.cell
        image, gone = image.append(next_entry(image, key, telemetry_values(i)), cell_key=pp.cell)
        snapshots.append(image)
        evicted.extend(gone)
        if i == measured_after:
            image, gone = image.append(measurement(image), cell_key=pp.cell)
            snapshots.append(image)
            evicted.extend(gone)
    return History(pp, tuple(snapshots), tuple(evicted))


def fork(base: Image, cell: ed25519.Ed25519PrivateKey, count: int, offset: int) -> Image:
    """`base` with `count` more telemetry entries whose values start at `offset` (two offsets
    give two histories that share `base` and differ from the next seq on)."""
    image = base
    for i in range(offset, offset + count):
        image, gone = image.append(next_entry(image, cell, telemetry_values(i)))
        assert not gone, "forks are built on a tag large enough not to evict"
    return image


def forged_checkpoint(image: Image, cell: ed25519.Ed25519PrivateKey) -> Image:
    """`image` whose checkpoint, genuinely signed by the cell key, claims other values
    (less energy throughput) than the evicted entries it stands for add up to."""
    assert image.checkpoint is not None
    body = image.checkpoint.body
    assert isinstance(body, Checkpoint)
    assert body.values.wh
    lie = dataclasses.replace(body, values=body.values._replace(wh=body.values.wh - 100))
    return dataclasses.replace(image, checkpoint=SignedRecord.sign(lie, cell))


# --------------------------------------------------------------------------------------------
# Bytes and sources


def tampered(record: SignedRecord) -> SignedRecord:
    """`record` with one bit of its signature flipped: it still decodes, it no longer verifies."""
    raw = bytearray(record.raw)
    raw[-1] ^= 0x01
    return SignedRecord.from_bytes(bytes(raw))


def tampered_image(image: Image, index: int) -> Image:
    """The tag's bytes with record `index` (0 = birth) tampered, decoded again."""
    data = image.to_bytes()
    target = image.records[index].raw
    assert data.count(target) == 1
    return Image.from_bytes(data.replace(target, tampered(image.records[index]).raw))


def journal_bytes(records: Sequence[SignedRecord]) -> bytes:
    """An evicted-records journal: the records' exact bytes, concatenated (a CBOR sequence)."""
    return b"".join(r.raw for r in records)


def image_source(image: Image, name: str = "tag.t5t") -> Source:
    """An image as the registry reads it from a file (through its bytes)."""
    return source_from_bytes(name, image.to_bytes())


def journal_source(records: Sequence[SignedRecord], name: str = "tag.evicted.cbor") -> Source:
    return source_from_bytes(name, journal_bytes(records))


# --------------------------------------------------------------------------------------------
# What the database holds


def open_registry(url: str, bundle: TrustBundle | None = None) -> Registry:
    """Initialise the registry at `url` and open it with the registry trust bundle."""
    Registry.init(url)
    return Registry(url, trust=bundle or registry_trust())


def stored(registry: Registry) -> dict[bytes, bytes]:
    """digest -> exact bytes of every record the registry holds."""
    with registry.engine.connect() as conn:
        rows = conn.execute(select(record_t.c.digest, record_t.c.raw)).all()
    return {bytes(d): bytes(r) for d, r in rows}


def leaves(registry: Registry) -> list[tuple[int, bytes, bytes, bytes]]:
    """(idx, record digest, stored leaf hash, record bytes) of every log leaf, in idx order."""
    query = (
        select(log_leaf_t.c.idx, log_leaf_t.c.digest, log_leaf_t.c.leaf_hash, record_t.c.raw)
        .join(record_t, record_t.c.digest == log_leaf_t.c.digest)
        .order_by(log_leaf_t.c.idx)
    )
    with registry.engine.connect() as conn:
        return [(int(i), bytes(d), bytes(h), bytes(r)) for i, d, h, r in conn.execute(query)]


def memory_root(raws: Iterable[bytes]) -> bytes:
    """The RFC 9162 root over these record bytes, computed in memory."""
    tree = merkle.MemoryTree()
    for raw in raws:
        tree.append(merkle.leaf_hash(raw))
    root: bytes = tree.root()
    return root


def checkpoint_count(registry: Registry) -> int:
    with registry.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(log_checkpoint_t)).scalar_one())


def chain_head(registry: Registry, birth: SignedRecord) -> tuple[int, bytes] | None:
    """(seq, digest) of the registry's newest entry for the passport born in `birth`."""
    query = (
        select(chain_head_t.c.seq, chain_head_t.c.digest)
        .join(cell_t, cell_t.c.id == chain_head_t.c.cell_id)
        .where(cell_t.c.birth_digest == birth.digest)
    )
    with registry.engine.connect() as conn:
        row = conn.execute(query).first()
    return (int(row[0]), bytes(row[1])) if row is not None else None


def flagged(registry: Registry, birth: SignedRecord) -> bool:
    query = select(cell_t.c.flagged).where(cell_t.c.birth_digest == birth.digest)
    with registry.engine.connect() as conn:
        return bool(conn.execute(query).scalar_one())


def alert_kinds(registry: Registry) -> list[str]:
    with registry.engine.connect() as conn:
        return [str(k) for (k,) in conn.execute(select(alert_t.c.kind).order_by(alert_t.c.id))]


def rules_of(findings: Iterable[dict[str, Any]]) -> set[str]:
    return {f["rule"] for f in findings}


def _seq(record: SignedRecord) -> int:
    assert isinstance(record.body, Entry)
    seq: int = record.body.seq
    return seq
