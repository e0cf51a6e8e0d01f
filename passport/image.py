"""The on-cell memory image: an NFC Forum Type 5 Tag user memory holding the passport.

Layout, exactly as an NFC phone reads it:

    capability container (4 bytes; 8 when the memory exceeds 2040 bytes)
    NDEF Message TLV (0x03, 1- or 3-byte length) holding one NDEF record:
        TNF 0x02 (media type) "application/vnd.battery-passport+cbor",
        payload = CBOR sequence (RFC 8742): birth, optional checkpoint, entries in order
    Terminator TLV (0xFE)
    zero padding to the memory size

Decoding is strict: any byte that is not exactly what `to_bytes` would write is an error, except
the write-access bits and feature flags of the capability container, which a tag may legitimately
change and which are kept. An append that would overflow evicts the oldest entries behind a
checkpoint signed with the cell key and returns every record it removed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from passport import cbor
from passport.cose import PrivateKey
from passport.errors import CapacityError, DecodeError, InputError
from passport.records import Checkpoint, Entry, Kind, SignedRecord, Values

MEDIA_TYPE = b"application/vnd.battery-passport+cbor"

_NDEF_TLV = 0x03
_TERMINATOR_TLV = 0xFE
_TNF_MEDIA = 0x02
_MB_ME = 0xC0  # message begin + message end: the only record
_SR = 0x10  # short record: payload length in one byte


@dataclass(frozen=True, slots=True)
class Profile:
    """A tag memory: `size` bytes of user memory and how its capability container looks."""

    name: str
    size: int
    description: str

    @property
    def cc_size(self) -> int:
        return 8 if self.size > 2040 else 4

    def capability_container(self, access: int = 0x00, features: int = 0x00) -> bytes:
        """CC for this memory. `access` is the low nibble of byte 1 (read/write conditions)."""
        version = 0x40 | access  # mapping version 1.0
        mlen = self.size // 8
        if self.cc_size == 4:
            return bytes((0xE1, version, mlen, features))
        return bytes((0xE2, version, 0x00, features, 0x00, 0x00)) + mlen.to_bytes(2, "big")


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("st25dv04k", 512, "ST25DV04K, 4 kbit"),
        Profile("ntag216", 888, "NTAG216-class, 888 bytes"),
        Profile("st25dv16k", 2048, "ST25DV16K, 16 kbit"),
        Profile("st25dv64k", 8192, "ST25DV64K, 64 kbit"),
    )
}
DEFAULT_PROFILE = "st25dv16k"


def profile_named(name: str) -> Profile:
    try:
        return PROFILES[name.lower()]
    except KeyError:
        raise InputError(
            f"unknown memory profile {name!r}; choose one of {', '.join(PROFILES)}"
        ) from None


def _profile_for_size(size: int) -> Profile:
    for profile in PROFILES.values():
        if profile.size == size:
            return profile
    if size % 8 or not 64 <= size <= 8 * 0xFFFF:
        raise DecodeError(f"{size} bytes is not a tag memory size", rule="image.size")
    return Profile(f"custom-{size}", size, f"{size}-byte Type 5 memory")


def _overhead(payload_len: int, cc_size: int) -> int:
    """Bytes around a payload of `payload_len`: CC, TLV header, NDEF header, terminator."""
    ndef_header = 2 + (1 if payload_len < 256 else 4) + len(MEDIA_TYPE)
    ndef_len = ndef_header + payload_len
    tlv_header = 2 if ndef_len < 0xFF else 4
    return cc_size + tlv_header + ndef_header + 1


@dataclass(frozen=True, slots=True)
class Image:
    """A decoded passport image. Immutable: `append` returns a new image."""

    profile: Profile
    birth: SignedRecord
    checkpoint: SignedRecord | None = None
    entries: tuple[SignedRecord, ...] = ()
    access: int = 0x00  # CC byte 1 low nibble (read/write access conditions)
    features: int = 0x00  # CC byte 3 (feature flags)

    # ---------------------------------------------------------------------------- building

    @classmethod
    def create(cls, birth: SignedRecord, profile: Profile | str = DEFAULT_PROFILE) -> Image:
        """A fresh image holding only the birth record."""
        if isinstance(profile, str):
            profile = profile_named(profile)
        if birth.kind is not Kind.BIRTH:
            raise InputError("an image must start with a birth record")
        image = cls(profile=profile, birth=birth)
        image._check_fits()
        return image

    @property
    def records(self) -> tuple[SignedRecord, ...]:
        head = (self.birth,) if self.checkpoint is None else (self.birth, self.checkpoint)
        return head + self.entries

    def next_link(self) -> tuple[int, bytes]:
        """(seq, prev) the next history entry must carry."""
        if self.entries:
            last = self.entries[-1]
            assert isinstance(last.body, Entry)
            return last.body.seq + 1, last.digest
        if self.checkpoint is not None:
            assert isinstance(self.checkpoint.body, Checkpoint)
            return self.checkpoint.body.count + 1, self.checkpoint.body.head
        return 1, self.birth.digest

    @property
    def used_bytes(self) -> int:
        payload = sum(len(r.raw) for r in self.records)
        return payload + _overhead(payload, self.profile.cc_size)

    @property
    def free_bytes(self) -> int:
        return self.profile.size - self.used_bytes

    def _check_fits(self) -> None:
        if self.used_bytes > self.profile.size:
            raise CapacityError(
                f"passport needs {self.used_bytes} bytes; {self.profile.name} holds "
                f"{self.profile.size}"
            )

    def append(
        self, record: SignedRecord, *, cell_key: PrivateKey | None = None
    ) -> tuple[Image, tuple[SignedRecord, ...]]:
        """Append a history entry. Returns (new image, records removed from memory).

        When the memory would overflow, the oldest entries are evicted behind a new checkpoint
        signed with `cell_key`; the removed entries (and a replaced checkpoint) are returned so
        they can go to the registry. Nothing is dropped silently.
        """
        if not isinstance(record.body, Entry):
            raise InputError(
                f"only history entries can be appended, not a {record.kind.name.lower()}"
            )
        seq, prev = self.next_link()
        if record.body.seq != seq or record.body.prev != prev:
            raise InputError(
                f"entry does not continue this passport: it has seq {record.body.seq}, "
                f"expected {seq} linked to {prev.hex()[:16]}..."
            )
        image = replace(self, entries=(*self.entries, record))
        if image.used_bytes <= self.profile.size:
            return image, ()
        if cell_key is None:
            raise CapacityError(
                f"{self.profile.name} memory is full ({image.used_bytes} of "
                f"{self.profile.size} bytes needed); evicting old entries needs the cell key "
                "to sign a checkpoint"
            )
        return image._evict(cell_key)

    def _evict(self, cell_key: PrivateKey) -> tuple[Image, tuple[SignedRecord, ...]]:
        evicted: list[SignedRecord] = []
        if self.checkpoint is not None:
            evicted.append(self.checkpoint)
            assert isinstance(self.checkpoint.body, Checkpoint)
            values = self.checkpoint.body.values
        else:
            values = Values()
        entries = list(self.entries)
        while len(entries) > 1:
            gone = entries.pop(0)
            evicted.append(gone)
            assert isinstance(gone.body, Entry)
            values = values.then(gone.body.values)
            checkpoint = SignedRecord.sign(
                Checkpoint(
                    count=gone.body.seq,
                    head=gone.digest,
                    time=gone.body.time,
                    birth=self.birth.digest,
                    values=values,
                ),
                cell_key,
            )
            image = replace(self, checkpoint=checkpoint, entries=tuple(entries))
            if image.used_bytes <= self.profile.size:
                return image, tuple(evicted)
        need = replace(self, checkpoint=None, entries=tuple(entries)).used_bytes
        raise CapacityError(
            f"{self.profile.name} ({self.profile.size} bytes) cannot hold the birth record, a "
            f"checkpoint and this entry together (at least {need} bytes without the checkpoint)"
        )

    # ---------------------------------------------------------------------------- bytes

    def to_bytes(self) -> bytes:
        payload = b"".join(r.raw for r in self.records)
        if len(payload) < 256:
            ndef = bytes((_MB_ME | _SR | _TNF_MEDIA, len(MEDIA_TYPE), len(payload)))
        else:
            ndef = bytes((_MB_ME | _TNF_MEDIA, len(MEDIA_TYPE))) + len(payload).to_bytes(4, "big")
        ndef += MEDIA_TYPE + payload
        if len(ndef) < 0xFF:
            tlv = bytes((_NDEF_TLV, len(ndef)))
        else:
            tlv = bytes((_NDEF_TLV, 0xFF)) + len(ndef).to_bytes(2, "big")
        body = (
            self.profile.capability_container(self.access, self.features)
            + tlv
            + ndef
            + bytes((_TERMINATOR_TLV,))
        )
        if len(body) > self.profile.size:
            raise CapacityError(
                f"passport needs {len(body)} bytes; {self.profile.name} holds {self.profile.size}"
            )
        return body + bytes(self.profile.size - len(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> Image:
        """Decode an image strictly (structure and every record; signatures are not checked)."""
        data = bytes(data)
        profile, access, features = _read_cc(data)
        payload = _read_ndef(data, profile.cc_size)
        raws = list(cbor.iter_sequence(payload, what="NDEF payload"))
        if not raws:
            raise DecodeError("the passport holds no records", rule="image.empty")
        records = []
        for index, raw in enumerate(raws):
            try:
                records.append(SignedRecord.from_bytes(raw))
            except DecodeError as exc:
                exc.reason = f"record {index}: {exc.reason}"
                raise
        birth, rest = records[0], records[1:]
        if birth.kind is not Kind.BIRTH:
            raise DecodeError(
                f"the first record is a {birth.kind.name.lower()}, not a birth record",
                rule="image.order",
            )
        checkpoint = None
        if rest and rest[0].kind is Kind.CHECKPOINT:
            checkpoint, rest = rest[0], rest[1:]
        for index, record in enumerate(rest, start=len(records) - len(rest)):
            if not isinstance(record.body, Entry):
                raise DecodeError(
                    f"record {index} is a {record.kind.name.lower()} where only history entries "
                    "may follow",
                    rule="image.order",
                )
        return cls(profile, birth, checkpoint, tuple(rest), access, features)


def _read_cc(data: bytes) -> tuple[Profile, int, int]:
    if len(data) < 8:
        raise DecodeError(f"{len(data)} bytes is too short for a tag image", rule="image.truncated")
    magic, version = data[0], data[1]
    if magic not in (0xE1, 0xE2):
        raise DecodeError(
            f"not an NFC Type 5 tag image: capability container magic 0x{magic:02X} "
            "(expected E1 or E2)",
            rule="image.cc",
        )
    if version & 0xF0 != 0x40:
        raise DecodeError(
            f"capability container mapping version {version >> 6}.{(version >> 4) & 3} is not 1.0",
            rule="image.cc",
        )
    if version & 0x0C:
        raise DecodeError("the tag's read access is restricted", rule="image.cc")
    if data[2] == 0:
        declared = int.from_bytes(data[6:8], "big") * 8
        if magic != 0xE2 or data[4:6] != b"\x00\x00":
            raise DecodeError("malformed 8-byte capability container", rule="image.cc")
    else:
        declared = data[2] * 8
        if magic != 0xE1:
            raise DecodeError("malformed 4-byte capability container", rule="image.cc")
    if declared != len(data):
        raise DecodeError(
            f"image is {len(data)} bytes but its capability container declares {declared}",
            rule="image.truncated" if declared > len(data) else "image.size",
        )
    profile = _profile_for_size(declared)
    if (data[2] == 0) != (profile.cc_size == 8):
        raise DecodeError(
            f"a {declared}-byte memory needs a {profile.cc_size}-byte capability container",
            rule="image.cc",
        )
    return profile, version & 0x03, data[3]


def _read_ndef(data: bytes, pos: int) -> bytes:
    if data[pos] != _NDEF_TLV:
        raise DecodeError(
            f"expected the NDEF Message TLV (0x03) at offset {pos}, found 0x{data[pos]:02X}",
            rule="image.tlv",
        )
    if data[pos + 1] == 0xFF:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        start = pos + 4
        if length < 0xFF:
            raise DecodeError("NDEF TLV length not in its shortest form", rule="image.tlv")
    else:
        length = data[pos + 1]
        start = pos + 2
    end = start + length
    if end + 1 > len(data):
        raise DecodeError(
            f"NDEF TLV of {length} bytes at offset {pos} runs past the end of memory",
            rule="image.truncated",
        )
    if data[end] != _TERMINATOR_TLV:
        raise DecodeError(f"expected the Terminator TLV at offset {end}", rule="image.tlv")
    if any(data[end + 1 :]):
        raise DecodeError(
            f"non-zero bytes after the Terminator TLV at offset {end}", rule="image.padding"
        )
    ndef = data[start:end]
    if len(ndef) < 3:
        raise DecodeError("NDEF record is truncated", rule="image.ndef")
    header, type_len = ndef[0], ndef[1]
    short = bool(header & _SR)
    if header & ~_SR != _MB_ME | _TNF_MEDIA:
        raise DecodeError(
            f"NDEF record header 0x{header:02X} is not a single media-type record",
            rule="image.ndef",
        )
    if short:
        payload_len, offset = ndef[2], 3
    else:
        payload_len, offset = int.from_bytes(ndef[2:6], "big"), 6
        if payload_len < 256:
            raise DecodeError("NDEF payload length should use the short form", rule="image.ndef")
    media = ndef[offset : offset + type_len]
    if media != MEDIA_TYPE:
        raise DecodeError(
            f"NDEF record type {media!r} is not {MEDIA_TYPE.decode()}", rule="image.ndef"
        )
    payload = ndef[offset + type_len :]
    if len(payload) != payload_len:
        raise DecodeError(
            f"NDEF payload length {payload_len} does not match the TLV ({len(payload)} bytes)",
            rule="image.ndef",
        )
    return payload


__all__ = ["DEFAULT_PROFILE", "MEDIA_TYPE", "PROFILES", "Image", "Profile", "profile_named"]
