"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and their verification: pure, no I/O.

The tree over entries d(0) … d(n-1) (here: the events' 32-byte hashes, in commit order):

    MTH({})    = SHA-256()
    MTH({d0})  = SHA-256(0x00 || d0)                                     the leaf hash
    MTH(D[n])  = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))             k: the largest
                                                                         power of 2 < n

Every subtree the recursion visits spans [start, end) with `start` a multiple of a power of
two at least `end - start`; a *perfect* one (end - start = 2^level) is stored as node
(level, start >> level). Any other is folded from the perfect ones its length's binary
digits name (`perfect_parts`), so a stored tree answers any root or proof from O(log n)
perfect nodes. Proofs are lists of subtree hashes in the RFC's order (bottom up); which
subtrees they hold depends only on the sizes (`inclusion_ranges`, `consistency_ranges`).

Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 step by step, so a third party can
check it against the text (docs/audit.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH of the empty tree

Range = tuple[int, int]  # a subtree's leaves: [start, end)
Node = tuple[int, int]  # a perfect subtree: (level, index on that level)
SubtreeSource = Callable[[int, int], bytes]  # MTH(D[start:end]) from wherever it is kept


def leaf_hash(entry: bytes) -> bytes:
    """The leaf hash of one entry: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An inner node's hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """k of the RFC: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree's hash, level by level: levels[0] = the leaf hashes, levels[l][i]
    = the perfect subtree over leaves [i * 2^l, (i + 1) * 2^l)."""
    out = [list(leaf_hashes)]
    while len(out[-1]) > 1:
        below = out[-1]
        out.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return out


def perfect_parts(start: int, end: int) -> list[Node]:
    """The perfect subtrees that make up the subtree [start, end), left to right."""
    if not 0 <= start < end:
        raise ValueError(f"not a subtree: [{start}, {end})")
    parts: list[Node] = []
    at, length = start, end - start
    for level in range(length.bit_length() - 1, -1, -1):
        if length >> level & 1:
            if at % (1 << level):
                raise ValueError(f"[{start}, {end}) is not a subtree of the tree")
            parts.append((level, at >> level))
            at += 1 << level
    return parts


def fold(parts: Sequence[bytes]) -> bytes:
    """A subtree's hash from its perfect parts' hashes (left to right): the RFC recursion
    splits off the biggest perfect part on the left each time, so fold from the right."""
    result = parts[-1]
    for part in reversed(parts[:-1]):
        result = node_hash(part, result)
    return result


def mth(entries: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of entries (RFC 9162 §2.1.1)."""
    if not entries:
        return EMPTY_ROOT
    return root_of_levels(levels([leaf_hash(e) for e in entries]), len(entries))


def root_of_levels(tree: Sequence[Sequence[bytes]], size: int) -> bytes:
    """The root of the tree's first `size` leaves, from its perfect subtrees (`levels`)."""
    return levels_source(tree)(0, size) if size else EMPTY_ROOT


def levels_source(tree: Sequence[Sequence[bytes]]) -> SubtreeSource:
    """Subtree hashes of a tree held in memory as its perfect subtrees (`levels`)."""

    def subtree(start: int, end: int) -> bytes:
        return fold([tree[level][idx] for level, idx in perfect_parts(start, end)])

    return subtree


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes make PATH(index, D[size]) (RFC 9162 §2.1.3.1), in order."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    return _path(index, 0, size)


def _path(m: int, start: int, end: int) -> list[Range]:
    n = end - start
    if n == 1:
        return []
    k = split(n)
    if m < k:
        return [*_path(m, start, start + k), (start + k, end)]
    return [*_path(m - k, start + k, end), (start, start + k)]


def consistency_ranges(m: int, n: int) -> list[Range]:
    """The subtrees whose hashes make PROOF(m, D[n]) (RFC 9162 §2.1.4.1), in order; empty
    when m == n (a tree is consistent with itself). m = 0 has no proof."""
    if not 0 < m <= n:
        raise ValueError(f"no consistency proof from size {m} to size {n}")
    return _subproof(m, 0, n, True)


def _subproof(m: int, start: int, end: int, whole: bool) -> list[Range]:
    n = end - start
    if m == n:
        return [] if whole else [(start, end)]
    k = split(n)
    if m <= k:
        return [*_subproof(m, start, start + k, whole), (start + k, end)]
    return [*_subproof(m - k, start + k, end, False), (start, start + k)]


def inclusion_proof(index: int, size: int, subtree: SubtreeSource) -> list[bytes]:
    """PATH(index, D[size]): the inclusion proof of leaf `index` in the tree of `size`."""
    return [subtree(start, end) for start, end in inclusion_ranges(index, size)]


def consistency_proof(m: int, n: int, subtree: SubtreeSource) -> list[bytes]:
    """PROOF(m, D[n]): the proof that the tree of size n extends the tree of size m."""
    return [subtree(start, end) for start, end in consistency_ranges(m, n)]


def _hashes_ok(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `path` prove the leaf hash `leaf` at `index` in the tree of
    `size` with `root`? (`leaf` is leaf_hash(entry), not the entry.)"""
    if not _hashes_ok(leaf, root, *path) or not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    m: int, n: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does `path` prove the tree of size n with `second_root` extends
    the tree of size m with `first_root`? Equal sizes need an empty path and equal roots;
    size 0 (the empty tree) is refused, as it has no proof."""
    if not _hashes_ok(first_root, second_root, *path) or not 0 < m <= n:
        return False
    if m == n:
        return not path and first_root == second_root
    if not path:
        return False
    steps = list(path)
    if m & (m - 1) == 0:  # m is a power of two: its root is a node of the bigger tree
        steps.insert(0, first_root)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = steps[0]
    for c in steps[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0
