"""passport.image: the NFC Type 5 tag image, eviction behind checkpoints, strict decoding.

The image is what a phone reads from the cell, so its layout is checked byte by byte against
the NFC Forum T5T / NDEF rules by a parser written here, not the library's. Eviction must never
lose a record. And the issue's key property: any single-byte change or truncation of an image
is either refused or changes nothing that was signed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from factories import (
    TEST_LAB,
    Passport,
    actor,
    checkpoint_image,
    grow,
    image_bytes,
    next_entry,
    passport,
    raws,
    telemetry_values,
    trust,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from passport import cose
from passport.chain import verify_image
from passport.errors import CapacityError, DecodeError, InputError, PassportError
from passport.image import MEDIA_TYPE, PROFILES, Image
from passport.records import (
    COUNTER_FIELDS,
    Checkpoint,
    Entry,
    Event,
    Kind,
    SignedRecord,
    SohMethod,
    Status,
    Values,
)
from passport.trust.policy import Policy
from passport.trust.store import thumbprint

CC = {
    "st25dv04k": bytes.fromhex("E1404000"),
    "ntag216": bytes.fromhex("E1406F00"),
    "st25dv16k": bytes.fromhex("E240000000000100"),
    "st25dv64k": bytes.fromhex("E240000000000400"),
}
SIZES = {"st25dv04k": 512, "ntag216": 888, "st25dv16k": 2048, "st25dv64k": 8192}
EVICTING_PROFILES = ("ntag216", "st25dv16k", "st25dv64k")


def test_profiles_are_the_four_memories() -> None:
    assert {name: p.size for name, p in PROFILES.items()} == SIZES


# --------------------------------------------------------------------------------------------
# Layout, parsed by hand


def parse_t5t(data: bytes) -> tuple[bytes, bytes]:
    """(capability container, NDEF payload) of a tag image, checking every structural byte
    against NFC Forum T5T 1.0 and NDEF 1.0 independently of passport.image."""
    if data[0] == 0xE1:
        cc = data[:4]
        assert cc[2] * 8 == len(data), "4-byte CC: byte 2 is the memory size / 8"
    else:
        cc = data[:8]
        assert cc[0] == 0xE2, cc.hex()
        assert cc[2] == 0, "8-byte CC: byte 2 is zero"
        assert cc[4:6] == b"\0\0", "8-byte CC: bytes 4-5 are reserved"
        assert int.from_bytes(cc[6:8]) * 8 == len(data), "8-byte CC: bytes 6-7 are size / 8"
    assert cc[1] == 0x40, "mapping version 1.0, read and write access granted"
    pos = len(cc)
    assert data[pos] == 0x03, "NDEF Message TLV"
    if data[pos + 1] == 0xFF:
        length = int.from_bytes(data[pos + 2 : pos + 4])
        assert length >= 0xFF, "3-byte TLV length only for lengths of 0xFF and more"
        pos += 4
    else:
        length = data[pos + 1]
        pos += 2
    ndef, rest = data[pos : pos + length], data[pos + length :]
    assert rest[0] == 0xFE, "Terminator TLV right after the message"
    assert rest[1:] == bytes(len(rest) - 1), "zero padding to the end of memory"
    header, type_length = ndef[0], ndef[1]
    if header == 0xD2:  # MB ME SR, TNF 2 (media type)
        payload_length, offset = ndef[2], 3
    else:
        assert header == 0xC2, f"NDEF header {header:#04x}"  # MB ME, TNF 2, 4-byte length
        payload_length, offset = int.from_bytes(ndef[2:6]), 6
        assert payload_length >= 256, "short records must use the SR form"
    assert ndef[offset : offset + type_length] == b"application/vnd.battery-passport+cbor"
    payload = ndef[offset + type_length :]
    assert len(payload) == payload_length
    return bytes(cc), payload


def small_birth_passport() -> Passport:
    """The smallest sensible birth record: its payload stays under 256 bytes, so the NDEF
    record takes the short form."""
    return passport(battery_id="ACME.1", manufacturer="A", model="M", site="S", issued_at=0)


def sample_image(profile: str) -> Image:
    """An image for `profile` holding a birth and as many entries as fit (at most 3)."""
    pp = passport()
    image = Image.create(pp.birth, profile)
    for i in range(1, 4):
        record = next_entry(image, pp.cell, telemetry_values(i))
        try:
            image, _ = image.append(record)
        except CapacityError:
            break
    return image


@pytest.mark.parametrize("profile", SIZES)
@pytest.mark.parametrize("small", [False, True], ids=["long-ndef", "short-ndef"])
def test_layout(profile: str, small: bool) -> None:
    """CC bytes exactly as T5T defines them for the memory, one media-type NDEF record holding
    the records in order, terminator, zero padding, and the file is the memory size."""
    image = Image.create(small_birth_passport().birth, profile) if small else sample_image(profile)
    data = image.to_bytes()
    assert len(data) == SIZES[profile]
    cc, payload = parse_t5t(data)
    assert cc == CC[profile]
    assert payload == b"".join(raws(image.records))
    assert data[len(cc) + 1] == 0xFF  # no real passport is small enough for a 1-byte TLV length
    ndef_header = data[len(cc) + 4]
    assert ndef_header == (0xD2 if len(payload) < 256 else 0xC2)
    assert (len(payload) < 256) is small
    assert image.used_bytes == len(data) - data[::-1].index(0xFE)


def test_layout_tolerates_access_and_feature_bits() -> None:
    """A tag may set write-access bits (CC byte 1, low nibble) and feature flags (byte 3): they
    are kept and written back; nothing else changes."""
    image = sample_image("ntag216")
    locked = replace(image, access=0x03, features=0x01)
    data = locked.to_bytes()
    assert data[:4] == bytes.fromhex("E1436F01")
    assert data[4:] == image.to_bytes()[4:]
    assert Image.from_bytes(data) == locked


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("profile", SIZES)
def test_round_trip_without_checkpoint(profile: str) -> None:
    image = sample_image(profile)
    assert image.entries
    decoded = Image.from_bytes(image.to_bytes())
    assert decoded == image
    assert decoded.to_bytes() == image.to_bytes()


@pytest.mark.parametrize("profile", EVICTING_PROFILES)
def test_round_trip_with_checkpoint(profile: str) -> None:
    _, image = checkpoint_image(profile)
    assert image.checkpoint is not None
    decoded = Image.from_bytes(image.to_bytes())
    assert decoded == image
    assert decoded.checkpoint == image.checkpoint


def test_st25dv04k_cannot_hold_a_checkpoint() -> None:
    """512 bytes hold a birth and one entry but never a birth and a checkpoint."""
    _, image = checkpoint_image("ntag216")
    small = Image(PROFILES["st25dv04k"], image.birth, image.checkpoint)
    with pytest.raises(CapacityError):
        small.to_bytes()


def test_birth_alone_round_trips_and_next_link_is_birth() -> None:
    pp = passport()
    image = Image.create(pp.birth, "st25dv04k")
    assert Image.from_bytes(image.to_bytes()) == image
    assert image.next_link() == (1, pp.birth.digest)


# --------------------------------------------------------------------------------------------
# Eviction


def folded(records: list[SignedRecord]) -> Values:
    values = Values()
    for record in records:
        assert isinstance(record.body, Entry)
        values = values.then(record.body.values)
    return values


REPURPOSER = "SecondLife Repurposing"


def varied_entry(image: Image, pp: Passport, i: int) -> SignedRecord:
    """Mostly cell telemetry; every seventh entry a repurposer's status change with lineage
    (the only role besides the OEM the policy lets write parents), which is larger and so
    sometimes evicts two entries at once."""
    if i % 7 == 6:
        parents = tuple(uuid.UUID(int=i * 10 + k) for k in range(1 + i % 3))
        values = telemetry_values(i)._replace(status=Status.REPURPOSED, parents=parents)
        key, cert = actor(REPURPOSER)
        return next_entry(image, key, values, kind=Kind.STATUS, x5t=thumbprint(cert))
    return next_entry(image, pp.cell, telemetry_values(i))


@pytest.mark.parametrize("profile", EVICTING_PROFILES)
def test_eviction_never_loses_a_record(profile: str) -> None:
    """Append until several evictions happened. Each append returns exactly what left memory
    (the replaced checkpoint first, then the oldest entries in order); the new checkpoint
    vouches for the last of them and carries the values forward; the image still verifies;
    memory plus evicted records is everything ever appended."""
    pp = passport()
    store = trust(pp.oem, REPURPOSER)
    image = Image.create(pp.birth, profile)
    appended: list[SignedRecord] = []
    evicted_entries: list[SignedRecord] = []
    evictions = multi = 0
    i = 0
    while evictions < 5 or len(evicted_entries) < 10:
        i += 1
        record = varied_entry(image, pp, i)
        before = image
        image, gone = image.append(record, cell_key=pp.cell)
        appended.append(record)
        assert image.used_bytes <= SIZES[profile]
        if not gone:
            assert image.checkpoint == before.checkpoint
            assert image.entries == (*before.entries, record)
            continue
        evictions += 1
        old = [] if before.checkpoint is None else [before.checkpoint]
        assert list(gone[: len(old)]) == old
        gone_entries = list(gone[len(old) :])
        multi += len(gone_entries) > 1
        queue = [*before.entries, record]
        assert gone_entries == queue[: len(gone_entries)]
        assert list(image.entries) == queue[len(gone_entries) :]
        evicted_entries += gone_entries

        assert image.checkpoint is not None
        checkpoint = image.checkpoint.body
        last = gone_entries[-1]
        assert isinstance(checkpoint, Checkpoint)
        assert isinstance(last.body, Entry)
        assert checkpoint.count == last.body.seq
        assert checkpoint.head == last.digest
        assert checkpoint.time == last.body.time
        assert checkpoint.birth == pp.birth.digest
        assert image.checkpoint.x5t is None
        assert checkpoint.values == folded(evicted_entries)
        assert checkpoint.values.fec_deci == last.body.values.fec_deci
        events = {e for r in evicted_entries for e in r.body.values.events}  # type: ignore[union-attr]
        assert set(checkpoint.values.events) == events

        data = image.to_bytes()
        assert len(data) == SIZES[profile]
        report = verify_image(Image.from_bytes(data), store)
        assert [r.sha256 for r in report.records] == [r.digest.hex() for r in image.records]
        assert [r.signer for r in report.records] == [
            f"oem: {pp.oem}",
            *("cell" if r.x5t is None else f"repurposer: {REPURPOSER}" for r in image.records[1:]),
        ]

    assert evicted_entries + list(image.entries) == appended
    assert len({r.digest for r in appended}) == len(appended)
    assert {Event.THERMAL_EVENT, Event.ACCIDENT} <= set(image.checkpoint.body.values.events)  # type: ignore[union-attr]
    assert multi, "no append evicted more than one entry: the varied sizes did not work"
    assert any(r.x5t is not None for r in evicted_entries), "no actor entry was ever evicted"


def fill(pp: Passport, profile: str) -> tuple[Image, SignedRecord]:
    """An image filled without eviction, and the next entry, which no longer fits."""
    image = Image.create(pp.birth, profile)
    i = 0
    while True:
        i += 1
        record = next_entry(image, pp.cell, telemetry_values(i))
        if image.free_bytes < len(record.raw):
            return image, record
        image, gone = image.append(record)
        assert gone == ()


@pytest.mark.parametrize("profile", SIZES)
def test_full_image_without_cell_key_raises_capacity_error(profile: str) -> None:
    """Eviction needs the cell key to sign a checkpoint; without it nothing is dropped."""
    image, record = fill(passport(), profile)
    with pytest.raises(CapacityError, match="cell key"):
        image.append(record)


def test_st25dv04k_second_entry_does_not_fit_even_with_eviction() -> None:
    """512 bytes: birth + one entry fit, but birth + checkpoint + entry never do."""
    pp = passport()
    image = Image.create(pp.birth, "st25dv04k")
    image, gone = image.append(next_entry(image, pp.cell, telemetry_values(1)), cell_key=pp.cell)
    assert gone == ()
    second = next_entry(image, pp.cell, telemetry_values(2))
    with pytest.raises(CapacityError) as info:
        image.append(second, cell_key=pp.cell)
    message = str(info.value)
    assert "st25dv04k" in message
    assert "512" in message
    assert "checkpoint" in message


@pytest.mark.parametrize(
    "change",
    ["seq+1", "seq-1", "prev", "prev-of-birth"],
)
def test_append_refuses_entry_that_does_not_continue(change: str) -> None:
    pp = passport()
    image = Image.create(pp.birth, "st25dv16k")
    image, _, _ = grow(image, pp.cell, 2)
    seq, prev = image.next_link()
    seq, prev = {
        "seq+1": (seq + 1, prev),
        "seq-1": (seq - 1, prev),
        "prev": (seq, hashlib.sha256(prev).digest()),
        "prev-of-birth": (seq, pp.birth.digest),
    }[change]
    record = SignedRecord.sign(Entry(Kind.TELEMETRY, seq, prev, 0), pp.cell)
    with pytest.raises(InputError) as info:
        image.append(record, cell_key=pp.cell)
    assert not isinstance(info.value, CapacityError)


def test_append_refuses_non_entries() -> None:
    _, image = checkpoint_image()
    assert image.checkpoint is not None
    for record in (image.birth, image.checkpoint):
        with pytest.raises(InputError):
            image.append(record)


def test_next_link_after_checkpoint_without_entries() -> None:
    """With every entry evicted, the next entry links to the checkpoint's head."""
    _, image = checkpoint_image()
    assert image.checkpoint is not None
    bare = Image(image.profile, image.birth, image.checkpoint)
    body = image.checkpoint.body
    assert isinstance(body, Checkpoint)
    assert bare.next_link() == (body.count + 1, body.head)


# --------------------------------------------------------------------------------------------
# Decoding errors

PP, CP_IMAGE = checkpoint_image()
DATA = CP_IMAGE.to_bytes()
STORE = PP.store
TLV_END = len(DATA) - DATA[::-1].index(0xFE) - 1  # offset of the Terminator TLV
MEDIA_AT = DATA.index(MEDIA_TYPE)


def patch(position: int, value: int) -> Callable[[], bytes]:
    return lambda: DATA[:position] + bytes([value]) + DATA[position + 1 :]


BIRTH, CHECKPOINT = CP_IMAGE.birth.raw, CP_IMAGE.checkpoint.raw  # type: ignore[union-attr]
ENTRIES = raws(CP_IMAGE.entries)

IMAGE_ERRORS: dict[str, tuple[Callable[[], bytes], str]] = {
    "cc-magic": (patch(0, 0xE3), "image.cc"),
    "cc-magic-8-byte-for-small-memory": (patch(0, 0xE2), "image.cc"),
    "cc-version-2": (patch(1, 0x80), "image.cc"),
    "cc-read-access-restricted": (patch(1, 0x48), "image.cc"),
    "cc-size-smaller": (patch(2, 0x6E), "image.size"),
    "cc-size-larger": (patch(2, 0x70), "image.truncated"),
    "8-byte-cc-for-1024-bytes": (
        lambda: bytes.fromhex("E240000000000080") + image_bytes([BIRTH], 1024)[4:-4],
        "image.cc",
    ),
    "file-longer-than-cc": (lambda: DATA + bytes(8), "image.size"),
    "file-truncated-by-one": (lambda: DATA[:-1], "image.truncated"),
    "file-truncated-to-cc": (lambda: DATA[:4], "image.truncated"),
    "file-empty": (lambda: b"", "image.truncated"),
    "memory-below-64-bytes": (lambda: bytes.fromhex("E1400700") + bytes(52), "image.size"),
    "padding-non-zero": (patch(len(DATA) - 1, 0x01), "image.padding"),
    "padding-second-terminator": (patch(TLV_END + 1, 0xFE), "image.padding"),
    "terminator-missing": (patch(TLV_END, 0x00), "image.tlv"),
    "tlv-type-lock-control": (patch(4, 0x01), "image.tlv"),
    "tlv-length-past-memory": (patch(6, 0xFF), "image.truncated"),
    "ndef-header-well-known": (patch(8, 0xC1), "image.ndef"),
    "ndef-header-chunked": (patch(8, 0xE2), "image.ndef"),
    "media-type-changed": (patch(MEDIA_AT + 5, ord("X")), "image.ndef"),
    "media-type-other": (
        lambda: image_bytes([BIRTH], media_type=b"application/vnd.battery-passport+json"),
        "image.ndef",
    ),
    "first-record-an-entry": (lambda: image_bytes([ENTRIES[0], BIRTH]), "image.order"),
    "first-record-a-checkpoint": (lambda: image_bytes([CHECKPOINT, BIRTH]), "image.order"),
    "birth-after-entries": (lambda: image_bytes([BIRTH, ENTRIES[0], BIRTH]), "image.order"),
    "two-births": (lambda: image_bytes([BIRTH, BIRTH]), "image.order"),
    "checkpoint-after-entry": (
        lambda: image_bytes([BIRTH, ENTRIES[0], CHECKPOINT]),
        "image.order",
    ),
    "two-checkpoints": (lambda: image_bytes([BIRTH, CHECKPOINT, CHECKPOINT]), "image.order"),
    "empty-payload": (lambda: image_bytes([]), "image.empty"),
    "payload-reserved-byte": (lambda: image_bytes([BIRTH, b"\x1c"]), "cbor.malformed"),
    "payload-lone-break": (lambda: image_bytes([BIRTH, b"\xff"]), "cbor.indefinite-length"),
    "payload-truncated-record": (lambda: image_bytes([BIRTH[:-1]]), "cbor.truncated"),
    "record-invalid": (lambda: image_bytes([BIRTH, b"\xd2\x80"]), "cose.malformed"),
}


@pytest.mark.parametrize("name", IMAGE_ERRORS)
def test_decode_error(name: str) -> None:
    build, rule = IMAGE_ERRORS[name]
    with pytest.raises(DecodeError) as info:
        Image.from_bytes(build())
    assert info.value.rule == rule, str(info.value)


def test_decode_error_names_the_record() -> None:
    """A bad record inside a good image is reported with its index."""
    with pytest.raises(DecodeError, match="record 2"):
        Image.from_bytes(image_bytes([BIRTH, CHECKPOINT, b"\xd2\x80"]))


def test_hand_built_images_match_the_library() -> None:
    """The builder used by the table above writes the library's bytes for a valid image, so
    each refusal is caused by the one thing the case changes."""
    assert image_bytes(raws(CP_IMAGE.records)) == DATA
    assert image_bytes([BIRTH], 8192) == Image(PROFILES["st25dv64k"], CP_IMAGE.birth).to_bytes()
    assert Image.from_bytes(image_bytes([BIRTH, *ENTRIES[:1]])).entries == CP_IMAGE.entries[:1]
    assert DATA[4:6] == b"\x03\xff"
    assert DATA[8] == 0xC2


# --------------------------------------------------------------------------------------------
# The key property: one changed byte is refused or changes nothing that was signed

ORIGINAL = tuple(raws(CP_IMAGE.records))
CHUNKS = 8


def accepted(data: bytes) -> tuple[bytes, ...] | None:
    """The records of `data` if it decodes and verifies, None if refused with a PassportError.
    Any other exception propagates and fails the test."""
    try:
        image = Image.from_bytes(data)
        verify_image(image, STORE)
    except PassportError:
        return None
    return tuple(raws(image.records))


def test_property_base_image() -> None:
    """The swept image is valid and holds every record kind (cell and actor entries too)."""
    assert accepted(DATA) == ORIGINAL
    assert len(DATA) == 888
    assert CP_IMAGE.checkpoint is not None
    assert [r.x5t is not None for r in CP_IMAGE.entries] == [False, True]
    assert actor(TEST_LAB)[1] in STORE.find(thumbprint(actor(TEST_LAB)[1]))


@pytest.fixture
def signatures_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check each (record bytes, public key) pair's signature for real once per test.

    The verifier now checks every record of an image, not just up to the first fault, so the
    sweep would spend most of its time re-verifying the three records a mutation left alone.
    `SignedRecord.verify` is a function of the record's bytes and the key only, so a success
    remembered under exactly those is the same success; every changed record (new bytes) and
    every failure still goes through the real check."""
    real = SignedRecord.verify
    passed: set[tuple[bytes, bytes]] = set()

    def verify(record: SignedRecord, public_key: cose.PublicKey) -> None:
        key = (record.raw, public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
        if key not in passed:
            real(record, public_key)
            passed.add(key)

    monkeypatch.setattr(SignedRecord, "verify", verify)


@pytest.mark.slow
@pytest.mark.usefixtures("signatures_checked_once")
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_every_single_byte_change(chunk: int) -> None:
    """Every position, every other byte value (a chunk of positions per test, for xdist): refused,
    or accepted with byte-identical records. Only the CC's access bits and feature byte may
    change without refusal."""
    positions = range(chunk, len(DATA), CHUNKS)
    tolerated = set()
    for position in positions:
        head, original, tail = DATA[:position], DATA[position], DATA[position + 1 :]
        for value in range(256):
            if value == original:
                continue
            result = accepted(head + bytes([value]) + tail)
            if result is not None:
                assert result == ORIGINAL, (position, value)
                tolerated.add(position)
    assert tolerated == {1, 3} & set(positions)


def test_every_truncation_is_refused() -> None:
    for length in range(len(DATA)):
        assert accepted(DATA[:length]) is None, length


@settings(max_examples=300)
@given(
    st.lists(st.tuples(st.integers(0, len(DATA) - 1), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_byte_changes_property(changes: list[tuple[int, int]]) -> None:
    """Up to four changed bytes anywhere: refused, or nothing signed changed."""
    data = bytearray(DATA)
    for position, value in changes:
        data[position] = value
    result = accepted(bytes(data))
    assert result is None or result == ORIGINAL


@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=64), st.integers(0, len(DATA)))
def test_inserted_bytes_are_refused(extra: bytes, position: int) -> None:
    """Inserting bytes anywhere changes the file length: refused."""
    assert accepted(DATA[:position] + extra + DATA[position:]) is None


# Hypothesis: any lawful history a cell and a tester could write round-trips through the tag
# bytes and still verifies, whatever the memory and however much was evicted on the way. The
# drawn values are made lawful first (counters never fall, SoH never rises, status changes only
# as the policy allows): the history rules themselves are tested in test_chain.
entry_values = st.fixed_dictionaries(
    {},
    optional={
        "fec_deci": st.integers(0, 2**32 - 1),
        "ah_deci": st.integers(0, 2**32 - 1),
        "wh": st.integers(0, 2**32 - 1),
        "soh_capacity_cpct": st.integers(0, 65535),
        "minutes_hot": st.integers(0, 2**32 - 1),
        "events": st.sets(st.sampled_from(Event), min_size=1).map(lambda s: tuple(sorted(s))),
        "status": st.sampled_from(Status),
    },
).map(lambda kw: Values(**kw))

TRANSITIONS = Policy.default().transitions


def lawful(before: Values, values: Values) -> Values:
    """`values` made to continue `before` (everything reported so far) under the history rules."""
    changes: dict[str, object] = {}
    for name in COUNTER_FIELDS:
        new, old = getattr(values, name), getattr(before, name)
        if new is not None and old is not None and new < old:
            changes[name] = old
    new_soh, old_soh = values.soh_capacity_cpct, before.soh_capacity_cpct
    if new_soh is not None and old_soh is not None and new_soh > old_soh:
        changes["soh_capacity_cpct"] = old_soh
    status = before.status if before.status is not None else Status.ORIGINAL
    if values.status not in (None, status) and values.status not in TRANSITIONS[status]:
        changes["status"] = None
    return values._replace(**changes)  # type: ignore[arg-type]


@settings(max_examples=40)
@given(
    profile=st.sampled_from(EVICTING_PROFILES),
    steps=st.lists(st.tuples(entry_values, st.booleans()), min_size=1, max_size=14),
)
def test_any_history_round_trips_and_verifies(
    profile: str, steps: list[tuple[Values, bool]]
) -> None:
    pp = passport()
    lab_key, lab_cert = actor(TEST_LAB)
    image = Image.create(pp.birth, profile)
    written: list[SignedRecord] = []
    so_far = Values()
    for drawn, by_lab in steps:
        if by_lab:  # a measurement states a capacity SoH and how it was measured
            soh = drawn.soh_capacity_cpct
            soh = soh if soh is not None else so_far.soh_capacity_cpct or 10_000
            drawn = drawn._replace(soh_capacity_cpct=soh, soh_method=SohMethod.CAPACITY_TEST)
        values = lawful(so_far, drawn)
        so_far = so_far.then(values)
        record = (
            next_entry(image, lab_key, values, kind=Kind.MEASUREMENT, x5t=thumbprint(lab_cert))
            if by_lab
            else next_entry(image, pp.cell, values)
        )
        image, _ = image.append(record, cell_key=pp.cell)
        written.append(record)
    decoded = Image.from_bytes(image.to_bytes())
    assert decoded == image
    assert decoded.entries == tuple(written[-len(decoded.entries) :])
    report = verify_image(decoded, pp.store)
    assert [r.signer for r in report.records][len(decoded.records) - len(decoded.entries) :] == [
        f"tester: {TEST_LAB}" if r.x5t is not None else "cell" for r in decoded.entries
    ]
