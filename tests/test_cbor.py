"""passport.cbor: deterministic encoding (RFC 8949 section 4.2.1) and the strict decoder's rules.

Everything we sign goes through `dumps` and everything read back from a cell through `loads`, so
the encoder must match the RFC byte for byte and the decoder must refuse, with a stable rule id,
every input that `dumps` would not have produced.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import cbor2
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from passport import cbor
from passport.errors import DecodeError

# --------------------------------------------------------------------------------------------
# Helpers


def _h(text: str) -> bytes:
    """Hex with spaces allowed, so vectors can be split at item boundaries for reading."""
    return bytes.fromhex(text.replace(" ", ""))


def _same(a: Any, b: Any) -> bool:
    """Equality that also compares types: in Python True == 1 and 1.0 == 1, in CBOR they differ."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if {(type(k), k) for k in a} != {(type(k), k) for k in b}:
            return False
        return all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _decode_error(data: bytes, *, lenient: bool = False) -> DecodeError:
    """Run the decoder on `data` and return the DecodeError it must raise."""
    with pytest.raises(DecodeError) as info:
        (cbor.loads_lenient if lenient else cbor.loads)(data)
    return info.value


# --------------------------------------------------------------------------------------------
# Deterministic encoding: RFC 8949 Appendix A (the deterministic examples) and key order

RFC8949_APPENDIX_A: list[tuple[Any, str]] = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"),
    (0.00006103515625, "f90400"),
    (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"),
    (math.inf, "f97c00"),
    (-math.inf, "f9fc00"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (cbor2.undefined, "f7"),
    (cbor2.CBORSimpleValue(16), "f0"),
    (cbor2.CBORSimpleValue(255), "f8ff"),
    (b"", "40"),
    (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
]


@pytest.mark.parametrize(("value", "expected"), RFC8949_APPENDIX_A, ids=lambda v: repr(v)[:40])
def test_dumps_rfc8949_appendix_a(value: Any, expected: str) -> None:
    """The deterministic examples of RFC 8949 Appendix A encode exactly and decode back."""
    assert cbor.dumps(value).hex() == expected
    assert _same(cbor.loads(bytes.fromhex(expected)), value)


def test_nan_encodes_as_canonical_half() -> None:
    """NaN is encoded as the half-precision quiet NaN f97e00 (and reads back as NaN)."""
    assert cbor.dumps(math.nan).hex() == "f97e00"
    assert math.isnan(cbor.loads(bytes.fromhex("f97e00")))


# (name, value, expected hex, what cbor2 canonical=True (length-first, RFC 7049) would emit)
MIXED_KEY_MAPS: list[tuple[str, dict[Any, Any], str, str | None]] = [
    # 32 is 0x1820 and -1 is 0x20: bytewise 0x18 < 0x20, so 32 goes first.
    ("uint32-before-neg1", {-1: 1, 32: 2}, "a2 1820 02 20 01", "a2 20 01 1820 02"),
    # 24 is 0x1818 (2 bytes), -1 is 0x20 (1 byte): length-first would put -1 first.
    ("uint24-before-neg1", {-1: 0, 24: 0}, "a2 1818 00 20 00", "a2 20 00 1818 00"),
    # 1000 is 0x1903e8 (3 bytes), "a" is 0x6161 (2 bytes).
    ("uint1000-before-text", {"a": 0, 1000: 0}, "a2 1903e8 00 6161 00", "a2 6161 00 1903e8 00"),
    ("four-kinds", {"a": 1, 1: 2, -1: 3, b"a": 4}, "a4 01 02 20 03 4161 04 6161 01", None),
    (
        "ints-of-every-sign",
        {-1000: 0, 100: 0, -1: 0, 0: 0},
        "a4 00 00 1864 00 20 00 3903e7 00",
        "a4 00 00 20 00 1864 00 3903e7 00",
    ),
    ("bytes-before-text", {"": 0, b"": 0}, "a2 40 00 60 00", None),
    ("nested-map", {1: {"z": 0, -24: 0}}, "a1 01 a2 37 00 617a 00", None),
    ("map-in-array", [{"b": 0, -1: 0, 255: 0}], "81 a3 18ff 00 20 00 6162 00", None),
]


@pytest.mark.parametrize(
    ("value", "expected", "length_first"),
    [pytest.param(v, e, lf, id=name) for name, v, e, lf in MIXED_KEY_MAPS],
)
def test_dumps_sorts_mixed_keys_bytewise(
    value: dict[Any, Any], expected: str, length_first: str | None
) -> None:
    """Keys are ordered by their encoded bytes (4.2.1), not length-first as in cbor2 canonical."""
    assert cbor.dumps(value) == _h(expected)
    if length_first is not None:
        # The case really distinguishes the two orders: cbor2's canonical output differs.
        assert bytes(cbor2.dumps(value, canonical=True)) == _h(length_first)
        assert _decode_error(_h(length_first)).rule == "cbor.unsorted-keys"
    decoded = cbor.loads(_h(expected))
    assert _same(decoded, value)


def test_dumps_ignores_insertion_order() -> None:
    """Two dicts with the same items in a different order encode to the same bytes."""
    a = {"x": 1, -5: 2, 7: 3, b"k": 4}
    b = dict(reversed(list(a.items())))
    assert cbor.dumps(a) == cbor.dumps(b)


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**64) - 1, [2**64], {1: 2**64}, {"a": 2**64}, [{"a": -(2**64) - 1}]],
    ids=["uint-2^64", "nint-2^64-1", "in-array", "in-uint-map", "in-text-map", "in-nested-map"],
)
def test_dumps_out_of_range_int_is_never_written_unreadable(value: Any) -> None:
    """Integers outside the 64-bit heads must be refused by `dumps` (ValueError), as they are
    when a map has a text key; `dumps` must never emit bytes (a bignum tag) that `loads` refuses.
    """
    try:
        encoded = cbor.dumps(value)
    except ValueError:
        return
    try:
        decoded = cbor.loads(encoded)
    except DecodeError as error:
        pytest.fail(f"dumps wrote {encoded.hex()}, which loads refuses: {error}")
    assert _same(decoded, value)


def test_head_shortest_forms() -> None:
    """`head` is shared with the COSE layer; each size boundary picks the next longer head."""
    assert cbor.head(0, 23) == b"\x17"
    assert cbor.head(0, 24) == b"\x18\x18"
    assert cbor.head(2, 255) == b"\x58\xff"
    assert cbor.head(2, 256) == b"\x59\x01\x00"
    assert cbor.head(4, 0xFFFF) == b"\x99\xff\xff"
    assert cbor.head(4, 0x10000) == b"\x9a\x00\x01\x00\x00"
    assert cbor.head(1, 2**32) == b"\x3b\x00\x00\x00\x01\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="out of range"):
        cbor.head(0, 2**64)


# --------------------------------------------------------------------------------------------
# The strict decoder's rule table

INVALID: list[tuple[str, str, str]] = [
    # duplicate keys
    ("dup-uint-key", "a2 01 00 01 00", "cbor.duplicate-key"),
    ("dup-text-key", "a2 6161 00 6161 01", "cbor.duplicate-key"),
    ("dup-neg-key", "a2 20 00 20 00", "cbor.duplicate-key"),
    ("dup-key-nested", "81 a2 01 00 01 00", "cbor.duplicate-key"),
    # indefinite lengths
    ("indefinite-array", "9f 01 ff", "cbor.indefinite-length"),
    ("indefinite-map", "bf 01 02 ff", "cbor.indefinite-length"),
    ("indefinite-bytes", "5f 4101 ff", "cbor.indefinite-length"),
    ("indefinite-text", "7f 6161 ff", "cbor.indefinite-length"),
    ("indefinite-empty-array", "9f ff", "cbor.indefinite-length"),
    # a lone "break" (0xff) has additional info 31 too; the rule names that.
    ("lone-break", "ff", "cbor.indefinite-length"),
    # non-shortest heads of each size
    ("uint-1byte-head-for-23", "18 17", "cbor.non-shortest"),
    ("uint-2byte-head-for-23", "19 0017", "cbor.non-shortest"),
    ("uint-2byte-head-for-255", "19 00ff", "cbor.non-shortest"),
    ("uint-4byte-head-for-65535", "1a 0000ffff", "cbor.non-shortest"),
    ("uint-8byte-head-for-2^32-1", "1b 00000000ffffffff", "cbor.non-shortest"),
    ("uint-8byte-head-for-0", "1b 0000000000000000", "cbor.non-shortest"),
    ("nint-1byte-head", "38 17", "cbor.non-shortest"),
    ("nint-2byte-head", "39 00ff", "cbor.non-shortest"),
    ("bytes-length-1byte-head", "58 00", "cbor.non-shortest"),
    ("text-length-2byte-head", "79 0001 61", "cbor.non-shortest"),
    ("array-length-1byte-head", "98 00", "cbor.non-shortest"),
    ("map-length-4byte-head", "ba 00000000", "cbor.non-shortest"),
    ("non-shortest-in-map-value", "a1 01 18 05", "cbor.non-shortest"),
    # a tag with a non-shortest head is named by the first fault found: the head.
    ("tag-non-shortest-head", "d8 00 00", "cbor.non-shortest"),
    # unsorted keys
    ("unsorted-uint-keys", "a2 02 00 01 00", "cbor.unsorted-keys"),
    ("unsorted-text-keys", "a2 6162 00 6161 00", "cbor.unsorted-keys"),
    ("unsorted-length-first-order", "a2 20 00 1820 00", "cbor.unsorted-keys"),
    ("unsorted-text-before-uint", "a2 6161 00 01 00", "cbor.unsorted-keys"),
    ("unsorted-text-before-bytes", "a2 6161 00 4161 00", "cbor.unsorted-keys"),
    ("unsorted-nested", "a1 00 a2 02 00 01 00", "cbor.unsorted-keys"),
    # trailing bytes
    ("trailing-byte", "00 00", "cbor.trailing-bytes"),
    ("trailing-after-map", "a0 ff", "cbor.trailing-bytes"),
    ("two-items", "6161 6162", "cbor.trailing-bytes"),
    # truncated / empty
    ("empty", "", "cbor.truncated"),
    ("head-cut-1byte", "18", "cbor.truncated"),
    ("head-cut-8byte", "1b 000000", "cbor.truncated"),
    ("bytes-cut", "44 0102", "cbor.truncated"),
    ("text-cut", "62 61", "cbor.truncated"),
    ("array-cut", "82 01", "cbor.truncated"),
    ("map-missing-value", "a1 01", "cbor.truncated"),
    ("float-cut", "fa 3f80", "cbor.truncated"),
    # tags, including the ones cbor2 would interpret itself
    ("tag0-datetime", "c0 74 323031332d30332d32315432303a30343a30305a", "cbor.tag"),
    ("tag1-epoch", "c1 1a514b67b0", "cbor.tag"),
    ("tag2-bignum", "c2 49 010000000000000000", "cbor.tag"),
    ("tag24-embedded-cbor", "d8 18 43 010203", "cbor.tag"),
    ("tag55799-self-describe", "d9 d9f7 00", "cbor.tag"),
    ("tag18-cose-sign1", "d2 80", "cbor.tag"),
    ("tag258-set", "d9 0102 82 01 02", "cbor.tag"),
    ("tag28-shareable", "d8 1c 00", "cbor.tag"),
    ("tag-unknown-65534", "d9 fffe 00", "cbor.tag"),
    ("tag-inside-array", "81 c1 00", "cbor.tag"),
    ("tag-as-map-key", "a1 c1 00 00", "cbor.tag"),
    # nesting
    ("too-deep-arrays", "81" * (cbor.MAX_DEPTH + 1) + "00", "cbor.too-deep"),
    ("too-deep-maps", "a1 00" * (cbor.MAX_DEPTH + 1) + "00", "cbor.too-deep"),
    ("too-deep-500", "81" * 500 + "00", "cbor.too-deep"),
    # malformed
    ("utf8-continuation-only", "61 80", "cbor.malformed"),
    ("utf8-bad-second-byte", "62 c3 28", "cbor.malformed"),
    ("utf8-encoded-surrogate", "63 eda080", "cbor.malformed"),
    ("utf8-overlong-slash", "62 c0af", "cbor.malformed"),
    ("utf8-invalid-byte-ff", "61 ff", "cbor.malformed"),
    ("reserved-ai-28", "1c", "cbor.malformed"),
    ("reserved-ai-29", "1d", "cbor.malformed"),
    ("reserved-ai-30", "1e", "cbor.malformed"),
    ("reserved-ai-28-bytes", "5c", "cbor.malformed"),
    ("reserved-ai-30-simple", "fe", "cbor.malformed"),
    ("simple-value-below-32-in-2-bytes", "f8 0a", "cbor.malformed"),
    # non-shortest floats
    ("float32-for-half-1.0", "fa 3f800000", "cbor.non-shortest"),
    ("float64-for-half-1.0", "fb 3ff0000000000000", "cbor.non-shortest"),
    ("float64-for-single-100000", "fb 40f86a0000000000", "cbor.non-shortest"),
    ("float64-nan", "fb 7ff8000000000000", "cbor.non-shortest"),
    ("float32-inf", "fa 7f800000", "cbor.non-shortest"),
    ("float-non-shortest-in-array", "81 fa 3f800000", "cbor.non-shortest"),
    # a NaN with a payload is as short as it gets but not the one NaN dumps writes; the
    # scanner finds no named fault and the decoder falls back to its generic rule.
    ("nan-with-payload", "f9 7e01", "cbor.non-deterministic"),
]


@pytest.mark.parametrize(
    ("data", "rule"), [pytest.param(_h(h), r, id=name) for name, h, r in INVALID]
)
def test_loads_refuses(data: bytes, rule: str) -> None:
    """Each non-deterministic or malformed input is refused with the rule that names its fault."""
    error = _decode_error(data)
    assert error.rule == rule, str(error)


def test_loads_accepts_exactly_max_depth() -> None:
    """MAX_DEPTH nested containers are allowed; the refusal above is not an off-by-one."""
    data = _h("81" * cbor.MAX_DEPTH + "00")
    value: Any = 0
    for _ in range(cbor.MAX_DEPTH):
        value = [value]
    assert cbor.loads(data) == value


def test_loads_max_depth_argument() -> None:
    """A caller may lower the depth limit for a narrower structure."""
    assert cbor.loads(_h("8100"), max_depth=1) == [0]
    with pytest.raises(DecodeError) as info:
        cbor.loads(_h("818100"), max_depth=1)
    assert info.value.rule == "cbor.too-deep"


def test_decode_error_names_the_item() -> None:
    """`what` appears in the message so a CLI user knows which part of a record is bad."""
    with pytest.raises(DecodeError, match="payload"):
        cbor.loads(b"\x18\x17", what="payload")


# --------------------------------------------------------------------------------------------
# Properties

MAX_INT = 2**64 - 1
MIN_INT = -(2**64)

_leaves = (
    st.integers(MIN_INT, MAX_INT)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
_keys = st.integers(MIN_INT, MAX_INT) | st.text(max_size=8) | st.binary(max_size=8)


def _values(containers: int) -> st.SearchStrategy[Any]:
    """Values with at most `containers` levels of nested arrays/maps."""
    if containers == 0:
        return _leaves
    inner = _values(containers - 1)
    return _leaves | st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4)


VALUES = _values(cbor.MAX_DEPTH)


@given(VALUES)
def test_round_trip(value: Any) -> None:
    """Whatever we encode decodes to the same value, with the same types."""
    encoded = cbor.dumps(value)
    assert _same(cbor.loads(encoded), value)
    assert cbor.dumps(cbor.loads(encoded)) == encoded


@given(st.dictionaries(_keys, _leaves, max_size=8))
def test_map_keys_in_bytewise_order(value: dict[Any, Any]) -> None:
    """Encoded keys appear in strictly increasing bytewise order whatever the insertion order
    (decoded dicts keep wire order, so the order is read back from the bytes)."""
    encoded = cbor.dumps(value)
    assert cbor.dumps(dict(reversed(list(value.items())))) == encoded
    key_bytes = [cbor.dumps(k) for k in cbor.loads(encoded)]
    assert all(a < b for a, b in itertools.pairwise(key_bytes))


@given(st.binary(max_size=300))
@example(_h("a2 1820 00 20 00"))
@example(_h("a2 20 00 1820 00"))
@example(_h("a1 80 00"))
@example(_h("a1 a1 6161 00 00"))
@example(_h("f9 7e00"))
@example(_h("81" * 600 + "00"))
@example(_h("9b ffffffffffffffff"))
@example(_h("5b ffffffffffffffff"))
def test_loads_arbitrary_bytes(data: bytes) -> None:
    """Any bytes either decode (to a value `dumps` re-encodes to the same bytes) or raise
    DecodeError; no cbor2, Unicode or recursion error escapes."""
    try:
        value = cbor.loads(data)
    except DecodeError as exc:
        rule = exc.rule
    else:
        assert cbor.dumps(value) == data
        return
    assert rule.startswith("cbor."), rule


@given(st.binary(max_size=300))
def test_loads_lenient_arbitrary_bytes(data: bytes) -> None:
    """The lenient decoder has the same contract: a value or DecodeError, nothing else."""
    try:
        cbor.loads_lenient(data)
    except DecodeError as exc:
        rule = exc.rule
    else:
        return
    assert rule.startswith("cbor."), rule


# --------------------------------------------------------------------------------------------
# iter_sequence (RFC 8742)


@given(st.lists(VALUES, max_size=6))
def test_iter_sequence_splits_items(values: list[Any]) -> None:
    """Concatenated items come back as exactly the bytes of each item, in order."""
    items = [cbor.dumps(v) for v in values]
    assert list(cbor.iter_sequence(b"".join(items))) == items


@given(st.lists(VALUES, min_size=1, max_size=6), st.data())
def test_iter_sequence_truncated(values: list[Any], data: st.DataObject) -> None:
    """Cutting the last item anywhere raises DecodeError (CBOR items are prefix-free)."""
    items = [cbor.dumps(v) for v in values]
    assume(len(items[-1]) >= 2)
    cut = data.draw(st.integers(1, len(items[-1]) - 1), label="bytes cut from the end")
    sequence = b"".join(items)[:-cut]
    with pytest.raises(DecodeError) as info:
        list(cbor.iter_sequence(sequence))
    assert info.value.rule == "cbor.truncated"


def test_iter_sequence_examples() -> None:
    """Items are split, not decoded: tags are passed through as raw bytes."""
    assert list(cbor.iter_sequence(b"")) == []
    assert list(cbor.iter_sequence(_h("00 c1 00 6161 81 02"))) == [
        b"\x00",
        _h("c100"),
        _h("6161"),
        _h("8102"),
    ]
    with pytest.raises(DecodeError):
        list(cbor.iter_sequence(_h("00 82 01")))


def test_iter_sequence_yields_before_the_fault() -> None:
    """The items before a bad one are still produced (a reader can report where it broke)."""
    iterator = cbor.iter_sequence(_h("01 02 1b 00"))
    assert next(iterator) == b"\x01"
    assert next(iterator) == b"\x02"
    with pytest.raises(DecodeError):
        next(iterator)


# --------------------------------------------------------------------------------------------
# loads_lenient: other systems' COSE messages


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(_h("a2 02 00 01 00"), {2: 0, 1: 0}, id="unsorted-keys"),
        pytest.param(_h("a2 20 00 1820 00"), {-1: 0, 32: 0}, id="length-first-keys"),
        pytest.param(_h("18 17"), 23, id="non-shortest-int"),
        pytest.param(_h("58 01 ff"), b"\xff", id="non-shortest-length"),
        pytest.param(_h("fa 3f800000"), 1.0, id="non-shortest-float"),
        pytest.param(_h("a1 01 26"), {1: -7}, id="deterministic-too"),
    ],
)
def test_loads_lenient_accepts_non_preferred(data: bytes, expected: Any) -> None:
    """Valid but non-preferred encodings are accepted (and the strict decoder refuses them)."""
    assert _same(cbor.loads_lenient(data), expected)
    if data != cbor.dumps(expected):
        _decode_error(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_h("a2 01 00 01 00"), id="sorted-duplicates"),
        pytest.param(_h("a2 6161 00 6161 01"), id="text-duplicates"),
        pytest.param(_h("a3 02 00 01 00 02 00"), id="unsorted-duplicates"),
        pytest.param(_h("a2 1801 00 01 00"), id="duplicates-one-non-shortest"),
    ],
)
def test_loads_lenient_rejects_duplicate_keys(data: bytes) -> None:
    """Duplicate keys are refused, and named as such even when the map is also unsorted or a
    key is non-shortest (the lenient decoder accepts both, so naming them is the wrong reason)."""
    assert _decode_error(data, lenient=True).rule == "cbor.duplicate-key"


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        pytest.param(_h("00 00"), "cbor.trailing-bytes", id="trailing-byte"),
        pytest.param(_h("a0 ff"), "cbor.trailing-bytes", id="trailing-break"),
        pytest.param(_h("18 17 00"), "cbor.trailing-bytes", id="trailing-after-non-shortest"),
        pytest.param(b"", "cbor.truncated", id="empty"),
        pytest.param(_h("82 01"), "cbor.truncated", id="truncated-array"),
        pytest.param(_h("82 18 17"), "cbor.truncated", id="truncated-after-non-shortest"),
        pytest.param(_h("61 80"), "cbor.malformed", id="invalid-utf8"),
        pytest.param(_h("1c"), "cbor.malformed", id="reserved-ai"),
    ],
)
def test_loads_lenient_rejects(data: bytes, rule: str) -> None:
    """Leniency is about preferred serialization only: the rule names the fault the lenient
    decoder actually refuses, not a strict-mode rule it does not apply."""
    assert _decode_error(data, lenient=True).rule == rule


@pytest.mark.parametrize(
    ("data", "tag", "value"),
    [
        pytest.param(_h("c1 1a514b67b0"), 1, 1363896240, id="tag1-epoch"),
        pytest.param(_h("c2 49 010000000000000000"), 2, _h("010000000000000000"), id="tag2"),
        pytest.param(_h("d8 18 43 010203"), 24, _h("010203"), id="tag24"),
        pytest.param(_h("d9 d9f7 00"), 55799, 0, id="tag55799"),
        pytest.param(_h("d9 0102 82 01 02"), 258, [1, 2], id="tag258-set"),
        pytest.param(_h("d9 fffe 00"), 65534, 0, id="tag-unknown"),
        pytest.param(_h("d8 62 40"), 98, b"", id="tag98-cose-sign"),
    ],
)
def test_loads_lenient_keeps_tags_raw(data: bytes, tag: int, value: Any) -> None:
    """Tags come back as cbor2.CBORTag, never interpreted into datetimes, ints or sets."""
    decoded = cbor.loads_lenient(data)
    assert isinstance(decoded, cbor2.CBORTag)
    assert decoded.tag == tag
    assert _same(decoded.value, value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_h("d8 19 00"), id="tag25-stringref"),
        pytest.param(_h("d8 1c 00"), id="tag28-shareable"),
        pytest.param(_h("82 d8 1c 6161 d8 1d 00"), id="tag29-sharedref"),
        pytest.param(_h("d9 0100 80"), id="tag256-stringref-namespace"),
    ],
)
def test_loads_lenient_refuses_sharing_tags(data: bytes) -> None:
    """Value sharing and string references change what bytes mean; refused even leniently."""
    assert _decode_error(data, lenient=True).rule == "cbor.tag"
