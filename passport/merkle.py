"""RFC 9162 (Certificate Transparency v2) Merkle tree: hashes, proofs and their verification.

The registry's transparency log is an append-only Merkle tree over leaf hashes. Storage keeps
only *perfect subtrees*: the node at (level, index) is the hash of leaves
[index * 2**level, (index + 1) * 2**level), level 0 being the leaf hashes, and it exists once all
of those leaves are in the log. Such rows never change after they are written, so a store can add
them on append and never update them (`completed_subtrees`).

Every root and proof the RFC defines over D[0:n] is assembled from at most ~2 * log2(n) of those
rows, and the `*_nodes` functions list them up front so an SQL store can fetch them with one
query and answer `get` from the result.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step, after an exact
proof-length check, so a proof with a missing or an extra hash is refused with a clear message.
Every walk is a loop over at most 64 levels (tree sizes are uint64): no recursion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final, TypeAlias

from passport.errors import InputError, VerificationError

HASH_SIZE: Final = 32
MAX_SIZE: Final = 2**64 - 1
"""Tree sizes and leaf indices are uint64 in RFC 9162 tree heads and proofs."""

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256(): the root of the empty tree."""

INCLUSION_RULE: Final = "log.inclusion-invalid"
CONSISTENCY_RULE: Final = "log.consistency-invalid"

NodeGetter: TypeAlias = Callable[[int, int], bytes]
"""get(level, index): the hash of a perfect subtree that is complete in the stored tree."""

Node: TypeAlias = tuple[int, int]
"""(level, index) address of a perfect subtree."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the prefix keeps a leaf from being passed off as an inner node."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the inner-node hash of RFC 9162 section 2.1.1."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --------------------------------------------------------------------------------------------
# Range arithmetic (no hashing)


def _split(n: int) -> int:
    """k of RFC 9162 2.1.1: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_uint(value: object, limit: int = MAX_SIZE) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _check_uint(name: str, value: int) -> None:
    if not _is_uint(value):
        raise InputError(f"{name} must be an integer in [0, 2**64), got {value!r}")


def _check_range(start: int, end: int) -> None:
    """Only ranges that RFC 9162 splitting produces from some D[0:n] have an O(log n) cover:
    start must be a multiple of the smallest power of two >= end - start."""
    _check_uint("start", start)
    _check_uint("end", end)
    if start >= end:
        raise InputError(f"subtree [{start}, {end}) is empty")
    width = 1 << (end - start - 1).bit_length()
    if start % width:
        raise InputError(
            f"[{start}, {end}) is not a subtree of the log: {start} is not a multiple of {width}"
        )


def _cover(start: int, end: int) -> list[Node]:
    """Perfect subtrees tiling [start, end), left to right.

    RFC 9162 splits D[start:end] into its first k leaves (a perfect subtree) and the rest,
    which is again such a range, so the pieces are the binary digits of end - start, largest
    first; MTH(D[start:end]) is their right fold."""
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs form PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf side first."""
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The ranges whose MTHs form PROOF(size1, D[0:size2]) = SUBPROOF(size1, D[0:size2], true)
    (RFC 9162 2.1.4.1), for 0 < size1 < size2, in proof order."""
    siblings = []
    lo, hi, whole = 0, size2, True
    while size1 != hi:
        k = _split(hi - lo)
        if size1 - lo <= k:
            siblings.append((lo + k, hi))
            hi = lo + k
        else:
            siblings.append((lo, lo + k))
            lo += k
            whole = False
    # SUBPROOF(m, D[m], b) is [] when b is true (the verifier has that root) else [MTH(D[m])].
    head = [] if whole else [(lo, hi)]
    return head + siblings[::-1]


def _nodes(ranges: list[tuple[int, int]]) -> list[Node]:
    return [node for start, end in ranges for node in _cover(start, end)]


def _range_root(start: int, end: int, get: NodeGetter) -> bytes:
    hashes = [get(level, index) for level, index in _cover(start, end)]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


# --------------------------------------------------------------------------------------------
# Roots and proofs from stored perfect subtrees


def completed_subtrees(index: int) -> list[Node]:
    """The perfect subtrees that appending leaf `index` completes, bottom up: exactly the rows
    a store adds on that append (the leaf itself, then one per trailing 1 bit of `index`)."""
    _check_uint("leaf index", index)
    nodes = [(0, index)]
    level = 0
    while index & 1:
        index >>= 1
        level += 1
        nodes.append((level, index))
    return nodes


def subtree_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees `subtree_root(start, end, get)` reads (at most log2(end-start)+1)."""
    _check_range(start, end)
    return _cover(start, end)


def subtree_root(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) from perfect-subtree hashes only, in O(log n) `get` calls.

    [start, end) must be a range that RFC 9162 splitting produces (start a multiple of the
    smallest power of two >= end - start); any other range would need O(n) reads."""
    _check_range(start, end)
    return _range_root(start, end, get)


def root(size: int, get: NodeGetter) -> bytes:
    """MTH(D[0:size]); EMPTY_ROOT for the empty tree."""
    _check_uint("tree size", size)
    return _range_root(0, size, get) if size else EMPTY_ROOT


def _check_inclusion_args(index: int, size: int) -> None:
    _check_uint("leaf index", index)
    _check_uint("tree size", size)
    if index >= size:
        raise InputError(f"leaf {index} is not in a tree of {size} leaves")


def _check_consistency_args(size1: int, size2: int) -> None:
    _check_uint("size1", size1)
    _check_uint("size2", size2)
    if size1 > size2:
        raise InputError(f"size1 {size1} > size2 {size2}: a log only grows")


def inclusion_proof_nodes(index: int, size: int) -> list[Node]:
    """The perfect subtrees `inclusion_proof(index, size, get)` reads, for one batch fetch."""
    _check_inclusion_args(index, size)
    return _nodes(_inclusion_ranges(index, size))


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 2.1.3.1: sibling hashes from the leaf up."""
    _check_inclusion_args(index, size)
    return [_range_root(start, end, get) for start, end in _inclusion_ranges(index, size)]


def consistency_proof_nodes(size1: int, size2: int) -> list[Node]:
    """The perfect subtrees `consistency_proof(size1, size2, get)` reads, for one batch fetch."""
    _check_consistency_args(size1, size2)
    if size1 in (0, size2):
        return []
    return _nodes(_consistency_ranges(size1, size2))


def consistency_proof(size1: int, size2: int, get: NodeGetter) -> list[bytes]:
    """PROOF(size1, D[0:size2]) of RFC 9162 2.1.4.1.

    Empty when size1 == size2 (nothing to prove) or size1 == 0 (the RFC defines proofs for
    0 < size1 < size2 only; `verify_consistency` refuses size1 == 0 rather than accept it)."""
    _check_consistency_args(size1, size2)
    if size1 in (0, size2):
        return []
    return [_range_root(start, end, get) for start, end in _consistency_ranges(size1, size2)]


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 2.1.3.2 and 2.1.4.2)


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _check_hashes(rule: str, named: Sequence[tuple[str, object]], proof: Sequence[bytes]) -> None:
    for name, value in named:
        if not _is_hash(value):
            raise VerificationError(f"{name} is not a {HASH_SIZE}-byte SHA-256 hash", rule=rule)
    for position, value in enumerate(proof):
        if not _is_hash(value):
            raise VerificationError(
                f"proof hash {position} is not a {HASH_SIZE}-byte SHA-256 hash", rule=rule
            )


def _check_sizes(rule: str, named: Sequence[tuple[str, int]]) -> None:
    for name, value in named:
        if not _is_uint(value):
            raise VerificationError(f"{name} {value!r} is not a uint64", rule=rule)


def _inclusion_proof_length(index: int, size: int) -> int:
    """Length of PATH(index, D[0:size]): the levels below the point where the paths to `index`
    and to the last leaf part, plus one left sibling per 1 bit of `index` above it."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_length(size1: int, size2: int) -> int:
    """Length of PROOF(size1, D[0:size2]) for 0 < size1 < size2: the inclusion path of leaf
    size1 - 1, minus the levels inside the perfect subtree that ends D[0:size1], plus that
    subtree's hash unless it is the whole old tree (then the verifier already has it)."""
    shift = (size1 & -size1).bit_length() - 1
    seed = 0 if size1 == 1 << shift else 1
    return seed + _inclusion_proof_length(size1 - 1, size2) - shift


def root_from_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` leads to from leaf `index` of a tree of `size` leaves (RFC 9162
    2.1.3.2 steps 1-4); raises VerificationError if the proof cannot be one for that leaf."""
    rule = INCLUSION_RULE
    _check_sizes(rule, [("leaf index", index), ("tree size", size)])
    if index >= size:
        raise VerificationError(f"leaf index {index} is not below tree size {size}", rule=rule)
    _check_hashes(rule, [("leaf hash", leaf_hash)], proof)
    want = _inclusion_proof_length(index, size)
    if len(proof) != want:
        raise VerificationError(
            f"inclusion proof has {len(proof)} hashes; leaf {index} of a tree of {size} "
            f"needs exactly {want}",
            rule=rule,
        )
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof is longer than the path", rule=rule)
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof is shorter than the path", rule=rule)
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with this `root`
    (RFC 9162 2.1.3.2); raises VerificationError (rule log.inclusion-invalid) otherwise."""
    _check_hashes(INCLUSION_RULE, [("root", root)], ())
    computed = root_from_inclusion(leaf_hash, index, size, proof)
    if computed != root:
        raise VerificationError(
            f"inclusion proof for leaf {index} of {size} leads to root {computed.hex()}, "
            f"not {root.hex()}",
            rule=INCLUSION_RULE,
        )


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `size1` leaves with `root1` is a prefix of the tree of `size2`
    leaves with `root2` (RFC 9162 2.1.4.2); raises VerificationError (rule
    log.consistency-invalid) otherwise.

    Equal sizes need an empty proof and equal roots. size1 == 0 is refused: every tree extends
    the empty one, so such a check proves nothing and a caller relying on it has a bug (this is
    also what the transparency-dev reference verifier and its vectors do)."""
    rule = CONSISTENCY_RULE
    _check_sizes(rule, [("size1", size1), ("size2", size2)])
    if size1 > size2:
        raise VerificationError(f"size1 {size1} > size2 {size2}: a log only grows", rule=rule)
    if size1 == 0:
        raise VerificationError("a consistency proof from the empty tree proves nothing", rule=rule)
    if size1 == size2:
        if proof:
            raise VerificationError(
                f"sizes are equal but the proof has {len(proof)} hashes", rule=rule
            )
        if root1 != root2:
            raise VerificationError(f"two different roots for tree size {size1}", rule=rule)
        return
    _check_hashes(rule, [("root1", root1), ("root2", root2)], proof)
    want = _consistency_proof_length(size1, size2)
    if len(proof) != want:
        raise VerificationError(
            f"consistency proof has {len(proof)} hashes; {size1} -> {size2} needs exactly {want}",
            rule=rule,
        )
    # Step 2: a power-of-two old tree is itself the seed subtree.
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof is longer than the path", rule=rule)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof is shorter than the path", rule=rule)
    if fr != root1:
        raise VerificationError(
            f"consistency proof leads to old root {fr.hex()}, not {root1.hex()}", rule=rule
        )
    if sr != root2:
        raise VerificationError(
            f"consistency proof leads to new root {sr.hex()}, not {root2.hex()}", rule=rule
        )


# --------------------------------------------------------------------------------------------
# In-memory tree


class MemoryTree:
    """Append-only tree keeping every complete perfect-subtree hash, per level.

    The in-memory twin of the SQL store (same (level, index, hash) rows): the simulator for
    tests and the reference the store is checked against."""

    def __init__(self) -> None:
        # _levels[level][index]; len(_levels[level]) == size >> level at all times.
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> int:
        """Add a leaf hash and the perfect subtrees it completes; return its 0-based index.

        Hashes only the subtrees this leaf completes (one per trailing 1 bit of the index):
        amortized one hash per append, at most log2(n)."""
        if not _is_hash(leaf_hash):
            raise InputError(f"a leaf hash must be {HASH_SIZE} bytes")
        index = self.size
        if index >= MAX_SIZE:
            raise InputError("the tree is full (2**64 - 1 leaves)")
        self._levels[0].append(leaf_hash)
        level, position, value = 0, index, leaf_hash
        while position & 1:
            value = node_hash(self._levels[level][position - 1], value)
            level += 1
            position >>= 1
            if level == len(self._levels):
                self._levels.append([])
            self._levels[level].append(value)
        return index

    def get(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree at (level, index); InputError if it is not complete."""
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise InputError(
            f"no complete subtree at level {level}, index {index} in a tree of {self.size}"
        )

    def root(self, size: int | None = None) -> bytes:
        """Root of the current tree, or of its first `size` leaves."""
        return root(self._size(size), self.get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Inclusion proof of leaf `index` in the current tree or its first `size` leaves."""
        return inclusion_proof(index, self._size(size), self.get)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Consistency proof from the first `size1` leaves to the current tree (or `size2`)."""
        return consistency_proof(size1, self._size(size2), self.get)

    def _size(self, size: int | None) -> int:
        if size is None:
            return self.size
        _check_uint("tree size", size)
        if size > self.size:
            raise InputError(f"tree size {size} is beyond the {self.size} leaves stored")
        return size
