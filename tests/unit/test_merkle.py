"""The Merkle tree (adapters/merkle.py) against a reference written here straight from the
recursive definitions of RFC 9162 §2.1 (MTH, PATH, PROOF/SUBPROOF) and against RFC 6962's
published test vectors: roots, proofs and both verifiers agree, and tampering is caught."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import merkle

# -- the reference: the RFC's definitions, transcribed, and nothing from adapters/merkle ----


def ref_hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return ref_hash(b"")
    if n == 1:
        return ref_hash(b"\x00" + d[0])
    k = ref_k(n)
    return ref_hash(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def ref_node(left: bytes, right: bytes) -> bytes:
    return ref_hash(b"\x01" + left + right)


def ref_root_from_path(m: int, n: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """Undo PATH's recursion: its last hash is the top sibling."""
    if n == 1:
        return leaf if not path else None
    if not path:
        return None
    k = ref_k(n)
    if m < k:
        left = ref_root_from_path(m, k, leaf, path[:-1])
        return None if left is None else ref_node(left, path[-1])
    right = ref_root_from_path(m - k, n - k, leaf, path[:-1])
    return None if right is None else ref_node(path[-1], right)


def ref_verify_inclusion(leaf: bytes, m: int, n: int, path: list[bytes], root: bytes) -> bool:
    return 0 <= m < n and ref_root_from_path(m, n, leaf, path) == root


def ref_roots_from_subproof(
    m: int, n: int, b: bool, proof: list[bytes], first: bytes
) -> tuple[bytes, bytes] | None:
    """Undo SUBPROOF's recursion: (the old subtree's hash, the new one's)."""
    if m == n:
        if b:
            return (first, first) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = ref_k(n)
    if m <= k:
        inner = ref_roots_from_subproof(m, k, b, proof[:-1], first)
        return None if inner is None else (inner[0], ref_node(inner[1], proof[-1]))
    inner = ref_roots_from_subproof(m - k, n - k, False, proof[:-1], first)
    if inner is None:
        return None
    return ref_node(proof[-1], inner[0]), ref_node(proof[-1], inner[1])


def ref_verify_consistency(m: int, n: int, first: bytes, second: bytes, proof: list[bytes]) -> bool:
    if not 0 < m <= n:
        return False
    return ref_roots_from_subproof(m, n, True, proof, first) == (first, second)


# -- helpers --------------------------------------------------------------------------------


def entries(seed: int, n: int) -> list[bytes]:
    """n distinct 32-byte entries, as event hashes are."""
    return [ref_hash(f"{seed}/{i}".encode()) for i in range(n)]


def source(d: Sequence[bytes]) -> merkle.SubtreeSource:
    """Our subtree source over an in-memory tree of these entries."""
    return merkle.levels_source(merkle.levels([merkle.leaf_hash(e) for e in d]))


def flip(h: bytes, at: int) -> bytes:
    return h[:at] + bytes([h[at] ^ 1]) + h[at + 1 :]


def ours_and_reference_agree_on_inclusion(
    leaf: bytes, m: int, n: int, path: list[bytes], root: bytes
) -> bool:
    ours = merkle.verify_inclusion(leaf, m, n, path, root)
    assert ours == ref_verify_inclusion(leaf, m, n, path, root), (m, n)
    return ours


def ours_and_reference_agree_on_consistency(
    m: int, n: int, first: bytes, second: bytes, path: list[bytes]
) -> bool:
    ours = merkle.verify_consistency(m, n, first, second, path)
    assert ours == ref_verify_consistency(m, n, first, second, path), (m, n)
    return ours


# -- RFC 6962's test vectors (certificate-transparency's reference tests) --------------------

VECTOR_ENTRIES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
VECTOR_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
MTH_2_4 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
MTH_4_8 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
LEAF_1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
LEAF_4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
MTH_6_8 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_rfc_6962_test_vectors(size: int) -> None:
    assert merkle.mth(VECTOR_ENTRIES[:size]).hex() == VECTOR_ROOTS[size]
    assert ref_mth(VECTOR_ENTRIES[:size]).hex() == VECTOR_ROOTS[size]


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, [LEAF_1, MTH_2_4, MTH_4_8]), (5, [LEAF_4, MTH_6_8, VECTOR_ROOTS[4]])],
)
def test_inclusion_proofs_match_the_rfc_6962_test_vectors(index: int, expected: list[str]) -> None:
    proof = merkle.inclusion_proof(index, 8, source(VECTOR_ENTRIES))
    assert [h.hex() for h in proof] == expected
    leaf = merkle.leaf_hash(VECTOR_ENTRIES[index])
    assert merkle.verify_inclusion(leaf, index, 8, proof, bytes.fromhex(VECTOR_ROOTS[8]))


@pytest.mark.parametrize(
    ("m", "expected"),
    [(1, [LEAF_1, MTH_2_4, MTH_4_8]), (2, [MTH_2_4, MTH_4_8]), (4, [MTH_4_8])],
)
def test_consistency_proofs_to_size_8_match_the_rfc_6962_test_vectors(
    m: int, expected: list[str]
) -> None:
    proof = merkle.consistency_proof(m, 8, source(VECTOR_ENTRIES))
    assert [h.hex() for h in proof] == expected
    first, second = (bytes.fromhex(VECTOR_ROOTS[s]) for s in (m, 8))
    assert merkle.verify_consistency(m, 8, first, second, proof)


def test_the_empty_tree_is_the_hash_of_nothing() -> None:
    assert merkle.mth([]) == merkle.EMPTY_ROOT == ref_mth([])


# -- against the reference, at random ------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 2000), st.data())
def test_roots_and_proofs_of_random_trees_equal_the_reference(
    seed: int, n: int, data: st.DataObject
) -> None:
    d = entries(seed, n)
    subtree = source(d)
    root = merkle.mth(d)
    assert root == ref_mth(d)
    for m in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3)):
        proof = merkle.inclusion_proof(m, n, subtree)
        assert proof == ref_path(m, d)
        leaf = merkle.leaf_hash(d[m])
        assert ours_and_reference_agree_on_inclusion(leaf, m, n, proof, root)
    for m in data.draw(st.lists(st.integers(1, n), min_size=1, max_size=3)):
        proof = merkle.consistency_proof(m, n, subtree)
        assert proof == ref_proof(m, d)
        assert ours_and_reference_agree_on_consistency(m, n, ref_mth(d[:m]), root, proof)


@pytest.mark.parametrize("n", range(1, 65))
def test_every_leaf_and_every_earlier_size_of_small_trees_prove_as_the_reference(n: int) -> None:
    d = entries(n, n)
    subtree = source(d)
    root = merkle.mth(d)
    assert root == ref_mth(d)
    for m in range(n):
        proof = merkle.inclusion_proof(m, n, subtree)
        assert proof == ref_path(m, d)
        assert ours_and_reference_agree_on_inclusion(merkle.leaf_hash(d[m]), m, n, proof, root)
    for m in range(1, n + 1):
        proof = merkle.consistency_proof(m, n, subtree)
        assert proof == ref_proof(m, d)
        assert ours_and_reference_agree_on_consistency(m, n, ref_mth(d[:m]), root, proof)


# -- what must be rejected ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 300), st.data())
def test_a_tampered_inclusion_proof_or_another_leaf_or_root_is_rejected(
    seed: int, n: int, data: st.DataObject
) -> None:
    d = entries(seed, n)
    root = ref_mth(d)
    m = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(m, n, source(d))
    leaf = merkle.leaf_hash(d[m])
    i = data.draw(st.integers(0, len(proof) - 1))
    tampered = [*proof[:i], flip(proof[i], data.draw(st.integers(0, 31))), *proof[i + 1 :]]
    assert not ours_and_reference_agree_on_inclusion(leaf, m, n, tampered, root)
    assert not ours_and_reference_agree_on_inclusion(leaf, m, n, proof[:-1], root)
    assert not ours_and_reference_agree_on_inclusion(leaf, m, n, [*proof, root], root)
    assert not ours_and_reference_agree_on_inclusion(leaf, m, n, proof, flip(root, 0))
    assert not ours_and_reference_agree_on_inclusion(d[m], m, n, proof, root)  # not leaf-hashed
    other = data.draw(st.integers(0, n - 1).filter(lambda j: j != m))
    assert not ours_and_reference_agree_on_inclusion(merkle.leaf_hash(d[other]), m, n, proof, root)
    assert not ours_and_reference_agree_on_inclusion(leaf, other, n, proof, root)
    assert not merkle.verify_inclusion(leaf, m, m, proof, root)  # index beyond the size
    assert not merkle.verify_inclusion(leaf, -1, n, proof, root)
    assert not merkle.verify_inclusion(leaf, m, n, [*proof[:i], proof[i][:31]], root)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 300), st.data())
def test_an_inclusion_proof_under_another_tree_size_is_rejected_unless_its_shape_fits(
    seed: int, n: int, data: st.DataObject
) -> None:
    """A proof holds only hashes: a size whose proof has the same shape (leaf 0 of 3 and of
    4) cannot be told apart, which is why checkpoints sign the size with the root."""
    d = entries(seed, n)
    root = ref_mth(d)
    m = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(m, n, source(d))
    wrong = data.draw(st.integers(1, 2 * n).filter(lambda s: s != n))
    verdict = ours_and_reference_agree_on_inclusion(merkle.leaf_hash(d[m]), m, wrong, proof, root)
    if m >= wrong or len(merkle.inclusion_ranges(m, wrong)) != len(proof):
        assert not verdict


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.integers(2, 300), st.data())
def test_a_tampered_consistency_proof_or_another_root_or_size_is_rejected(
    seed: int, n: int, data: st.DataObject
) -> None:
    d = entries(seed, n)
    m = data.draw(st.integers(1, n - 1))
    first, second = ref_mth(d[:m]), ref_mth(d)
    proof = merkle.consistency_proof(m, n, source(d))
    i = data.draw(st.integers(0, len(proof) - 1))
    tampered = [*proof[:i], flip(proof[i], data.draw(st.integers(0, 31))), *proof[i + 1 :]]
    assert not ours_and_reference_agree_on_consistency(m, n, first, second, tampered)
    assert not ours_and_reference_agree_on_consistency(m, n, first, second, proof[:-1])
    assert not ours_and_reference_agree_on_consistency(m, n, first, second, [*proof, second])
    assert not ours_and_reference_agree_on_consistency(m, n, flip(first, 5), second, proof)
    assert not ours_and_reference_agree_on_consistency(m, n, first, flip(second, 5), proof)
    assert not ours_and_reference_agree_on_consistency(m, n, second, first, proof)
    assert not ours_and_reference_agree_on_consistency(m, n, first, second, [])
    other = data.draw(st.integers(1, 2 * n).filter(lambda s: s != m))
    other_first = ref_mth(d[:other]) if other <= n else first
    verdict = ours_and_reference_agree_on_consistency(other, n, other_first, second, proof)
    if other > n or len(merkle.consistency_ranges(other, n)) != len(proof):
        assert not verdict
    assert not merkle.verify_consistency(0, n, merkle.EMPTY_ROOT, second, proof)


def test_a_tree_is_consistent_with_itself_only_by_an_empty_proof_and_equal_roots() -> None:
    d = entries(7, 5)
    root = merkle.mth(d)
    assert merkle.consistency_proof(5, 5, source(d)) == []
    assert merkle.verify_consistency(5, 5, root, root, [])
    assert not merkle.verify_consistency(5, 5, root, flip(root, 0), [])
    assert not merkle.verify_consistency(5, 5, root, root, [root])


def test_proofs_outside_the_tree_are_refused() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(5, 5)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(0, 5)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(6, 5)


def test_a_stored_tree_answers_any_root_or_proof_from_at_most_two_nodes_per_level() -> None:
    for n in range(1, 300):
        budget = 2 * n.bit_length()
        assert len(merkle.perfect_parts(0, n)) <= n.bit_length()
        for m in range(n):
            ranges = merkle.inclusion_ranges(m, n)
            assert sum(len(merkle.perfect_parts(s, e)) for s, e in ranges) <= budget
        for m in range(1, n + 1):
            ranges = merkle.consistency_ranges(m, n)
            assert sum(len(merkle.perfect_parts(s, e)) for s, e in ranges) <= budget
