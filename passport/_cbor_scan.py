"""The byte-level CBOR scanner behind `passport.cbor`: item boundaries and exact faults.

cbor2 decodes fast but says little about *why* input is not deterministic; this walks the
heads in Python, only on error paths and to split CBOR sequences, and names the first fault
with its offset and rule.
"""

from __future__ import annotations

import struct

import cbor2

from passport.errors import DecodeError


class TagRefused(Exception):
    """Raised by the strict decoder's tag hooks; classified as `cbor.tag`."""


_FLOAT_SIZES = {25: 2, 26: 4, 27: 8}


class _Fault(Exception):
    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def _read_head(data: bytes, pos: int) -> tuple[int, int, int, int]:
    """Return (major, additional info, argument, position after the head); strict."""
    if pos >= len(data):
        raise _Fault("cbor.truncated", f"data ends at offset {pos} where an item should start")
    ib = data[pos]
    major, ai = ib >> 5, ib & 0x1F
    if ai < 24:
        return major, ai, ai, pos + 1
    if ai == 31:
        raise _Fault("cbor.indefinite-length", f"indefinite-length item at offset {pos}")
    if ai > 27:
        raise _Fault("cbor.malformed", f"reserved additional information {ai} at offset {pos}")
    size = 1 << (ai - 24)
    if pos + 1 + size > len(data):
        raise _Fault("cbor.truncated", f"head at offset {pos} is cut off")
    arg = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
    if major != 7:
        minimum = 24 if ai == 24 else 1 << (8 * (size >> 1))
        if arg < minimum:
            raise _Fault(
                "cbor.non-shortest",
                f"argument {arg} at offset {pos} is not in its shortest form",
            )
    return major, ai, arg, pos + 1 + size


def skip(data: bytes, pos: int, depth: int, what: str) -> int:
    try:
        return _walk(data, pos, depth, strict=False)
    except _Fault as fault:
        raise DecodeError(f"{what}: {fault.reason}", rule=fault.rule) from None


def _walk(data: bytes, pos: int, depth: int, *, strict: bool) -> int:
    """Return the end offset of the item at `pos`; with `strict`, apply 4.2.1 rules."""
    if depth > 400:
        raise _Fault("cbor.too-deep", f"nesting deeper than 400 at offset {pos}")
    start = pos
    major, ai, arg, pos = _read_head(data, pos)
    if major in (2, 3):
        end = pos + arg
        if end > len(data):
            raise _Fault("cbor.truncated", f"string at offset {start} runs past the end")
        if major == 3:
            try:
                data[pos:end].decode("utf-8")
            except UnicodeDecodeError:
                raise _Fault("cbor.malformed", f"invalid UTF-8 in text at offset {start}") from None
        return end
    if major == 4:
        for _ in range(arg):
            pos = _walk(data, pos, depth + 1, strict=strict)
        return pos
    if major == 5:
        previous: bytes | None = None
        for _ in range(arg):
            key_start = pos
            pos = _walk(data, pos, depth + 1, strict=strict)
            key = data[key_start:pos]
            if strict and previous is not None:
                if key == previous:
                    raise _Fault("cbor.duplicate-key", f"duplicate map key at offset {key_start}")
                if key < previous:
                    raise _Fault(
                        "cbor.unsorted-keys",
                        f"map key at offset {key_start} is out of deterministic order",
                    )
            previous = key
            pos = _walk(data, pos, depth + 1, strict=strict)
        return pos
    if major == 6:
        if strict:
            raise _Fault("cbor.tag", f"tag {arg} at offset {start} is not allowed here")
        return _walk(data, pos, depth + 1, strict=strict)
    if major == 7:
        if ai in _FLOAT_SIZES:
            if strict:
                _check_float(data, start, ai, arg)
            return pos
        if ai == 24 and arg < 32:
            raise _Fault("cbor.malformed", f"simple value {arg} in two bytes at offset {start}")
        return pos
    return pos  # major 0 and 1: integers


def _check_float(data: bytes, start: int, ai: int, bits: int) -> None:
    size = _FLOAT_SIZES[ai]
    value = struct.unpack({2: ">e", 4: ">f", 8: ">d"}[size], bits.to_bytes(size, "big"))[0]
    shortest = bytes(cbor2.dumps(value, canonical=True))
    if len(shortest) != 1 + size:
        raise _Fault("cbor.non-shortest", f"float at offset {start} is not in its shortest form")


def explain(data: bytes, what: str, exc: Exception | None) -> DecodeError:
    """Name the first deterministic-encoding fault in `data`, or fall back to `exc`."""
    try:
        end = _walk(data, 0, 0, strict=True)
        if end != len(data):
            return DecodeError(
                f"{what} has {len(data) - end} trailing bytes after the item at offset {end}",
                rule="cbor.trailing-bytes",
            )
    except _Fault as fault:
        return DecodeError(f"{what}: {fault.reason}", rule=fault.rule)
    except RecursionError:
        return DecodeError(f"{what}: nesting too deep", rule="cbor.too-deep")
    if isinstance(exc, cbor2.CBORDecodeError) and "depth" in str(exc):
        return DecodeError(f"{what}: nesting too deep", rule="cbor.too-deep")
    if isinstance(exc, cbor2.CBORDecodeError) and "uplicate" in str(exc):
        return DecodeError(f"{what}: duplicate map key", rule="cbor.duplicate-key")
    if exc is not None:
        return DecodeError(f"{what} is not valid CBOR: {_short(exc)}", rule="cbor.malformed")
    return DecodeError(f"{what} is not deterministically encoded", rule="cbor.non-deterministic")


def classify(what: str, exc: Exception) -> DecodeError:
    """Name a decoding failure from cbor2's exception alone (lenient decoding has no stricter
    rules to scan for)."""
    text = str(exc)
    if isinstance(exc, cbor2.CBORDecodeEOF) or "premature end" in text:
        return DecodeError(f"{what} is truncated", rule="cbor.truncated")
    if "uplicate" in text:
        return DecodeError(f"{what}: duplicate map key", rule="cbor.duplicate-key")
    if "depth" in text or isinstance(exc, RecursionError):
        return DecodeError(f"{what}: nesting too deep", rule="cbor.too-deep")
    if isinstance(exc, TagRefused) or "semantic tag" in text or "reference" in text:
        return DecodeError(f"{what}: a tag that is not allowed here", rule="cbor.tag")
    return DecodeError(f"{what} is not valid CBOR: {_short(exc)}", rule="cbor.malformed")


def _short(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
