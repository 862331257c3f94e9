"""RFC 6962 / 9162 Merkle trees: known vectors, a naive oracle, and broken proofs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pht.errors import AuditError
from pht.station import merkle

# The certificate-transparency reference test data (RFC 6962 test vectors, as also
# pinned by transparency-dev/merkle testonly/constants.go): leaf inputs, the root of
# the first n leaves, and a few proofs.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
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
H_LEAF1 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H_23 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H_4567 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H_LEAF4 = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
H_67 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
H_LEAF5 = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
H_0123 = CT_ROOTS[4]
CT_INCLUSION = {(0, 8): [H_LEAF1, H_23, H_4567], (5, 8): [H_LEAF4, H_67, H_0123]}
CT_CONSISTENCY = {
    (1, 8): [H_LEAF1, H_23, H_4567],
    (6, 8): [H_LEAF5, H_67, H_0123],
    (2, 5): [H_23, H_LEAF4],
}


# -- an independent oracle: RFC 6962 section 2.1 written out naively ---------------
def naive_mth(data: list[bytes]) -> bytes:
    """MTH over raw entries, straight from the RFC's recursive definition."""
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while k * 2 < len(data):
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(data[:k]) + naive_mth(data[k:])).digest()


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() * (i % 3 + 1) for i in range(n)]


def hashes(data: list[bytes]) -> list[bytes]:
    return [merkle.leaf_hash(d) for d in data]


SIZES = range(1, 41)


# -- roots ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", range(len(CT_ROOTS)))
def test_root_matches_rfc6962_vectors(n: int) -> None:
    assert naive_mth(CT_LEAVES[:n]).hex() == CT_ROOTS[n]  # the oracle is right
    assert merkle.root(hashes(CT_LEAVES[:n])).hex() == CT_ROOTS[n]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle.root([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.CompactRange().root() == merkle.EMPTY_ROOT


def test_leaves_and_nodes_are_domain_separated() -> None:
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    assert merkle.root([a, b]) != merkle.leaf_hash(a + b)
    assert merkle.node_hash(a, b) != hashlib.sha256(a + b).digest()


def test_root_and_compact_range_agree_with_naive_mth_up_to_40() -> None:
    data = entries(40)
    tree = merkle.CompactRange()
    for n in range(41):
        expected = naive_mth(data[:n])
        assert merkle.root(hashes(data[:n])) == expected
        assert tree.size == n and tree.root() == expected
        if n < 40:
            tree.append(merkle.leaf_hash(data[n]))


def test_compact_range_keeps_one_hash_per_set_bit() -> None:
    tree = merkle.CompactRange()
    for i in range(1000):
        tree.append(merkle.leaf_hash(b"%d" % i))
    assert len(tree._hashes) == bin(1000).count("1")


# -- inclusion -----------------------------------------------------------------------
@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_inclusion_proof_matches_rfc6962_vectors(index: int, size: int) -> None:
    leaves = hashes(CT_LEAVES[:size])
    proof = merkle.inclusion_proof(index, leaves)
    assert [p.hex() for p in proof] == CT_INCLUSION[(index, size)]
    root = bytes.fromhex(CT_ROOTS[size])
    merkle.verify_inclusion(index, size, leaves[index], proof, root)


def test_inclusion_proofs_verify_for_all_sizes_and_indices() -> None:
    data = entries(40)
    for size in SIZES:
        leaves = hashes(data[:size])
        root = naive_mth(data[:size])
        for index in range(size):
            proof = merkle.inclusion_proof(index, leaves)
            merkle.verify_inclusion(index, size, leaves[index], proof, root)


def test_wrong_inclusion_proofs_fail_for_all_sizes_and_indices() -> None:
    data = entries(40)
    for size in SIZES:
        leaves = hashes(data[:size])
        root = merkle.root(leaves)
        for index in range(size):
            proof = merkle.inclusion_proof(index, leaves)
            for i in range(len(proof)):  # any sibling changed
                bad = [*proof]
                bad[i] = merkle.leaf_hash(b"forged")
                with pytest.raises(AuditError, match="wrong root"):
                    merkle.verify_inclusion(index, size, leaves[index], bad, root)
            other = leaves[(index + 1) % size] if size > 1 else merkle.leaf_hash(b"x")
            with pytest.raises(AuditError):  # another leaf
                merkle.verify_inclusion(index, size, other, proof, root)
            with pytest.raises(AuditError, match="wrong size"):  # one hash too many
                merkle.verify_inclusion(
                    index, size, leaves[index], [*proof, root], root
                )
            if proof:
                with pytest.raises(AuditError, match="wrong size"):
                    merkle.verify_inclusion(index, size, leaves[index], proof[1:], root)


def test_inclusion_errors_say_expected_and_actual() -> None:
    leaves = hashes(CT_LEAVES)
    proof = merkle.inclusion_proof(2, leaves)
    root = merkle.root(leaves)
    with pytest.raises(
        AuditError, match="inclusion proof has wrong size: expected 3, got 4"
    ):
        merkle.verify_inclusion(2, 8, leaves[2], [*proof, root], root)
    with pytest.raises(AuditError, match=f"expected {root.hex()}, got "):
        merkle.verify_inclusion(2, 8, leaves[3], proof, root)
    with pytest.raises(AuditError, match="expected 0 <= index < 8, got 8"):
        merkle.verify_inclusion(8, 8, leaves[2], proof, root)
    with pytest.raises(AuditError, match="wrong length: expected 32, got 31"):
        merkle.verify_inclusion(2, 8, leaves[2], [proof[0][:31], *proof[1:]], root)
    with pytest.raises(AuditError, match="expected 0 <= index < 8, got 9"):
        merkle.inclusion_proof(9, leaves)


# -- consistency ---------------------------------------------------------------------
@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_consistency_proof_matches_rfc6962_vectors(old: int, new: int) -> None:
    leaves = hashes(CT_LEAVES[:new])
    proof = merkle.consistency_proof(old, leaves)
    assert [p.hex() for p in proof] == CT_CONSISTENCY[(old, new)]
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    merkle.verify_consistency(old, new, old_root, new_root, proof)


def test_consistency_proofs_verify_for_all_pairs_up_to_40() -> None:
    data = entries(40)
    roots = [naive_mth(data[:n]) for n in range(41)]
    for new in SIZES:
        leaves = hashes(data[:new])
        for old in range(new + 1):
            proof = merkle.consistency_proof(old, leaves)
            merkle.verify_consistency(old, new, roots[old], roots[new], proof)


def test_wrong_consistency_proofs_fail_for_all_pairs_up_to_40() -> None:
    data = entries(40)
    roots = [merkle.root(hashes(data[:n])) for n in range(41)]
    forged = merkle.leaf_hash(b"forged")
    for new in range(2, 41):
        leaves = hashes(data[:new])
        for old in range(1, new):
            proof = merkle.consistency_proof(old, leaves)
            r_old, r_new = roots[old], roots[new]
            for i in range(len(proof)):
                bad = [*proof]
                bad[i] = forged
                with pytest.raises(
                    AuditError, match="does not match the (old|new) root"
                ):
                    merkle.verify_consistency(old, new, r_old, r_new, bad)
            with pytest.raises(AuditError):  # a rewritten old tree
                merkle.verify_consistency(old, new, forged, r_new, proof)
            with pytest.raises(AuditError, match="does not match the new root"):
                merkle.verify_consistency(old, new, r_old, forged, proof)
            with pytest.raises(AuditError, match="wrong size"):
                merkle.verify_consistency(old, new, r_old, r_new, proof[:-1])
            with pytest.raises(AuditError, match="wrong size"):
                merkle.verify_consistency(old, new, r_old, r_new, [*proof, forged])


def test_consistency_edge_cases() -> None:
    leaves = hashes(CT_LEAVES)
    r3, r8 = merkle.root(leaves[:3]), merkle.root(leaves)
    merkle.verify_consistency(8, 8, r8, r8, [])
    merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, r8, [])
    with pytest.raises(AuditError, match=f"expected {r8.hex()}, got {r3.hex()}"):
        merkle.verify_consistency(8, 8, r3, r8, [])
    with pytest.raises(AuditError, match="wrong size: expected 0, got 1"):
        merkle.verify_consistency(0, 8, merkle.EMPTY_ROOT, r8, [r3])
    with pytest.raises(AuditError, match="old root does not match"):
        merkle.verify_consistency(0, 8, r3, r8, [])
    with pytest.raises(AuditError, match="got old size 9"):
        merkle.verify_consistency(9, 8, r8, r8, [])
    with pytest.raises(AuditError, match="consistency proof has wrong size: expected"):
        merkle.verify_consistency(3, 8, r3, r8, [])  # RFC 9162 step 1: empty path
    with pytest.raises(AuditError, match="got 9"):
        merkle.consistency_proof(9, leaves)


# -- a property: one flipped bit anywhere in a proof is caught -----------------------
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_flipped_bit_in_a_proof_fails(data: st.DataObject) -> None:
    size = data.draw(st.integers(2, 40), label="size")
    leaves = hashes(entries(size))
    old = data.draw(st.integers(1, size - 1), label="old")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = merkle.root(leaves)
    inclusion = merkle.inclusion_proof(index, leaves)
    consistency = merkle.consistency_proof(old, leaves)
    for proof, check in (
        (
            inclusion,
            lambda p: merkle.verify_inclusion(index, size, leaves[index], p, root),
        ),
        (
            consistency,
            lambda p: merkle.verify_consistency(
                old, size, merkle.root(leaves[:old]), root, p
            ),
        ),
    ):
        if not proof:
            continue
        i = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        flipped = bytearray(proof[i])
        flipped[bit // 8] ^= 1 << (bit % 8)
        check(proof)
        with pytest.raises(AuditError):
            check([*proof[:i], bytes(flipped), *proof[i + 1 :]])
