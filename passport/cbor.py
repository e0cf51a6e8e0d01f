"""Strict, deterministic CBOR (RFC 8949 section 4.2.1) on top of cbor2.

Everything we sign is encoded with `dumps`, and everything we read back from a cell is decoded
with `loads`, which accepts only the exact bytes `dumps` would produce for the decoded value:
shortest heads, definite lengths, map keys sorted bytewise by their encoding, no duplicate keys,
no tags, no trailing bytes. The fast path is cbor2's C decoder followed by a re-encode and
compare; only when that comparison fails do we scan the bytes in Python to name the exact fault.

cbor2's ``canonical=True`` sorts keys length-first (RFC 7049), which agrees with 4.2.1 only when
every key of a map is an unsigned integer; `dumps` uses it only in that case.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import cbor2

from passport._cbor_scan import TagRefused, classify, explain, skip
from passport.errors import DecodeError

__all__ = [
    "MAX_DEPTH",
    "decode_unchecked",
    "dumps",
    "head",
    "iter_sequence",
    "loads",
    "loads_lenient",
]

#: Deepest nesting any of our structures needs (COSE array -> header map -> CWT map -> array).
MAX_DEPTH = 8

# Tags cbor2 interprets itself; listing them lets us refuse (or keep raw) instead of decoding
# them into datetimes, sets, shared references and the like.
_BUILTIN_TAGS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100)
_BUILTIN_TAGS += (256, 258, 260, 261, 1004, 55799)


def _refuse_semantic(value: object, immutable: bool) -> Any:
    raise TagRefused


def _refuse_tag(tag: cbor2.CBORTag, immutable: bool) -> Any:
    raise TagRefused


def _keep_tag(number: int) -> Any:
    def keep(value: object, immutable: bool) -> cbor2.CBORTag:
        return cbor2.CBORTag(number, value)

    return keep


_STRICT_SEMANTIC = dict.fromkeys(_BUILTIN_TAGS, _refuse_semantic)
# Value sharing (28, 29) and string references (25, 256) change what bytes mean; never allowed.
_LENIENT_SEMANTIC = {
    t: (_refuse_semantic if t in (25, 28, 29, 256) else _keep_tag(t)) for t in _BUILTIN_TAGS
}


# --------------------------------------------------------------------------------------------
# Encoding


def head(major: int, value: int) -> bytes:
    """The shortest initial byte(s) for `major` type with argument `value`."""
    mt = major << 5
    if value < 24:
        return bytes((mt | value,))
    if value < 0x100:
        return bytes((mt | 24, value))
    if value < 0x10000:
        return bytes((mt | 25,)) + value.to_bytes(2, "big")
    if value < 0x1_0000_0000:
        return bytes((mt | 26,)) + value.to_bytes(4, "big")
    if value < 0x1_0000_0000_0000_0000:
        return bytes((mt | 27,)) + value.to_bytes(8, "big")
    raise ValueError(f"CBOR argument out of range: {value}")


def _only_uint_keys(obj: object) -> bool:
    """True when every map key is an unsigned int and no float occurs (cbor2's canonical
    encoder is then 4.2.1-deterministic). Raises ValueError for integers CBOR cannot hold
    without a bignum tag, which we never write."""
    if type(obj) is int:
        if not -(1 << 64) <= obj < 1 << 64:
            raise ValueError(f"integer {obj} does not fit in 64 bits")
        return True
    if isinstance(obj, Mapping):
        return all(type(k) is int and k >= 0 and _only_uint_keys(v) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return all(_only_uint_keys(v) for v in obj)
    if isinstance(obj, cbor2.CBORTag):
        return _only_uint_keys(obj.value)
    return not isinstance(obj, float)


def _encode(obj: object, out: list[bytes]) -> None:
    # bool before int: bool is a subclass of int.
    if obj is False:
        out.append(b"\xf4")
    elif obj is True:
        out.append(b"\xf5")
    elif obj is None:
        out.append(b"\xf6")
    elif isinstance(obj, int):
        out.append(head(0, obj) if obj >= 0 else head(1, -1 - obj))
    elif isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
        out.append(head(2, len(data)))
        out.append(data)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        out.append(head(3, len(data)))
        out.append(data)
    elif isinstance(obj, list | tuple):
        out.append(head(4, len(obj)))
        for item in obj:
            _encode(item, out)
    elif isinstance(obj, Mapping):
        pairs = []
        for k, v in obj.items():
            kb: list[bytes] = []
            _encode(k, kb)
            pairs.append((b"".join(kb), v))
        pairs.sort(key=lambda p: p[0])
        out.append(head(5, len(pairs)))
        for kb_joined, v in pairs:
            out.append(kb_joined)
            _encode(v, out)
    elif isinstance(obj, cbor2.CBORTag):
        out.append(head(6, obj.tag))
        _encode(obj.value, out)
    elif obj is cbor2.undefined:
        out.append(b"\xf7")
    elif isinstance(obj, cbor2.CBORSimpleValue):
        out.append(head(7, obj.value) if obj.value < 24 else bytes((0xF8, obj.value)))
    elif isinstance(obj, float):
        # Deterministic floats: shortest of half/single/double that keeps the value.
        out.append(cbor2.dumps(obj, canonical=True))
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as CBOR")


def dumps(obj: object) -> bytes:
    """Encode `obj` deterministically (RFC 8949 section 4.2.1)."""
    if _only_uint_keys(obj):
        return bytes(cbor2.dumps(obj, canonical=True))
    out: list[bytes] = []
    _encode(obj, out)
    return b"".join(out)


# --------------------------------------------------------------------------------------------
# Decoding


class _OrderProbe:
    """object_hook noting whether every decoded map has strictly increasing unsigned-int keys.

    For such maps numeric order is the bytewise order of their shortest encodings, so an
    order-preserving re-encode that reproduces the input proves full 4.2.1 determinism.
    """

    __slots__ = ("other",)

    def __init__(self) -> None:
        self.other = False

    def __call__(self, value: Mapping[Any, Any], immutable: bool) -> Mapping[Any, Any]:
        if not self.other:
            last = -1
            for k in value:
                if type(k) is not int or k <= last:
                    self.other = True
                    break
                last = k
        return value


def loads(data: bytes, *, max_depth: int = MAX_DEPTH, what: str = "CBOR item") -> Any:
    """Decode one deterministically encoded item; anything else raises `DecodeError`.

    `what` names the item in error messages ("protected header", "payload", ...).
    """
    if not data:
        raise DecodeError(f"{what} is empty", rule="cbor.truncated")
    probe = _OrderProbe()
    try:
        obj = cbor2.loads(
            data,
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            semantic_decoders=_STRICT_SEMANTIC,
            tag_hook=_refuse_tag,
            object_hook=probe,
        )
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on hostile input
        raise explain(data, what, exc) from None
    if not probe.other:
        # Every map has increasing unsigned keys, so cbor2's order-preserving encoder (shortest
        # integer and length heads, floats always as float64) reproduces deterministic input,
        # unless it holds a float64 that has a shorter form: only then is 0xFB in the data.
        if cbor2.dumps(obj) == data and b"\xfb" not in data:
            return obj
        if cbor2.dumps(obj, canonical=True) == data:
            return obj
        raise explain(data, what, None)
    try:
        encoded = dumps(obj)
    except Exception as exc:  # noqa: BLE001 - e.g. an unhashable decoded key
        raise DecodeError(f"{what} cannot be re-encoded: {exc}", rule="cbor.malformed") from None
    if encoded != data:
        raise explain(data, what, None)
    return obj


def decode_unchecked(data: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode refusing tags, duplicate keys and indefinite lengths, but WITHOUT proving the
    bytes deterministic: the caller must do that itself (e.g. by rebuilding them exactly).
    Raises `DecodeError` with the precise fault."""
    try:
        return cbor2.loads(
            data,
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            semantic_decoders=_STRICT_SEMANTIC,
            tag_hook=_refuse_tag,
        )
    except Exception:  # noqa: BLE001 - cbor2 raises many types on hostile input
        loads(data, max_depth=max_depth)  # raises the precise error
        raise DecodeError("malformed CBOR", rule="cbor.malformed") from None


def loads_lenient(data: bytes, *, max_depth: int = 64, what: str = "CBOR item") -> Any:
    """Decode one well-formed item as found in other systems' COSE messages.

    Preferred serialization is not required, but duplicate map keys, trailing bytes, shared
    values and string references are refused; other tags are kept as raw `CBORTag` objects.
    """
    if not data:
        raise DecodeError(f"{what} is empty", rule="cbor.truncated")
    fp = io.BytesIO(data)
    try:
        decoder = cbor2.CBORDecoder(
            fp,
            max_depth=max_depth,
            allow_duplicate_keys=False,
            semantic_decoders=_LENIENT_SEMANTIC,
            tag_hook=lambda tag, _immutable: tag,
        )
        obj = decoder.decode()
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on hostile input
        raise classify(what, exc) from None
    if fp.tell() != len(data):
        raise DecodeError(
            f"{what} has {len(data) - fp.tell()} trailing bytes after the item at offset "
            f"{fp.tell()}",
            rule="cbor.trailing-bytes",
        )
    return obj


def iter_sequence(data: bytes, *, what: str = "CBOR sequence") -> Iterator[bytes]:
    """Split an RFC 8742 CBOR sequence into the exact bytes of each item (not decoded)."""
    offset = 0
    while offset < len(data):
        end = skip(data, offset, 0, what)
        yield data[offset:end]
        offset = end
