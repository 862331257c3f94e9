"""RFC 6962 / RFC 9162 Merkle trees on SHA-256: hashes, proofs and their checks.

Pure functions over leaf hashes; no files, no logging. The tree is the one of
RFC 9162 section 2.1.1 ("Merkle Tree Hash", MTH)::

    MTH({})      = SHA-256()
    MTH({d0})    = SHA-256(0x00 || d0)                       (leaf_hash)
    MTH(D[n])    = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])) (node_hash)

with ``k`` the largest power of two smaller than ``n``. The one-byte prefixes
separate leaves from interior nodes, so no leaf can pass for a subtree (second
pre-image attacks).

Proofs are generated with the recursive ``PATH`` and ``PROOF``/``SUBPROOF`` of
RFC 6962 section 2.1 and verified with the iterative algorithms of RFC 9162
sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency). Every failed check raises
:class:`~pht.errors.AuditError` saying what was expected and what was found.

:class:`CompactRange` keeps the roots of the perfect subtrees of ``[0, size)`` so an
append-only log gets its new root in O(log n) per append.

Examples
--------
>>> leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
>>> r = root(leaves)
>>> verify_inclusion(2, 3, leaves[2], inclusion_proof(2, leaves), r)
>>> verify_consistency(2, 3, root(leaves[:2]), r, consistency_proof(2, leaves))
>>> root([]).hex()[:16]
'e3b0c44298fc1c14'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pht.errors import AuditError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


# -- hashing -----------------------------------------------------------------------
def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || data)``.

    Examples
    --------
    >>> leaf_hash(b"").hex()[:16]
    '6e340b9cffb37a98'
    """
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH of ``leaves[lo:hi]`` (non-empty) without copying."""
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash of a list of leaf hashes.

    Parameters
    ----------
    leaf_hashes
        ``leaf_hash(d)`` for each entry ``d``, in log order.

    Returns
    -------
    bytes
        The 32-byte root; ``SHA-256(b"")`` for the empty tree.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    return _mth(leaf_hashes, 0, len(leaf_hashes))


# -- proof generation (RFC 6962 section 2.1) ---------------------------------------
def _path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """``PATH(m, D[lo:hi])``, leaf first."""
    if hi - lo == 1:
        return []
    k = _split(hi - lo)
    if m < k:
        return [*_path(m, leaves, lo, lo + k), _mth(leaves, lo + k, hi)]
    return [*_path(m - k, leaves, lo + k, hi), _mth(leaves, lo, lo + k)]


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the audit path of leaf ``index`` in the tree of ``leaf_hashes``.

    Parameters
    ----------
    index
        0-based leaf index, ``0 <= index < len(leaf_hashes)``.
    leaf_hashes
        All leaf hashes of the tree.

    Returns
    -------
    list of bytes
        Sibling hashes from the leaf up to the root (RFC 6962 ``PATH``).

    Raises
    ------
    AuditError
        If ``index`` is outside the tree.
    """
    size = len(leaf_hashes)
    if not 0 <= index < size:
        raise AuditError(
            f"leaf index out of range: expected 0 <= index < {size}, got {index}"
        )
    return _path(index, leaf_hashes, 0, size)


def _subproof(
    m: int, leaves: Sequence[bytes], lo: int, hi: int, complete: bool
) -> list[bytes]:
    """``SUBPROOF(m, D[lo:hi], complete)``."""
    n = hi - lo
    if m == n:
        return [] if complete else [_mth(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, complete), _mth(leaves, lo + k, hi)]
    return [*_subproof(m - k, leaves, lo + k, hi, False), _mth(leaves, lo, lo + k)]


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return the proof that the first ``old_size`` leaves are a prefix of the tree.

    Parameters
    ----------
    old_size
        Size of the earlier tree, ``0 <= old_size <= len(leaf_hashes)``.
    leaf_hashes
        All leaf hashes of the current tree.

    Returns
    -------
    list of bytes
        RFC 6962 ``PROOF(old_size, D[n])``; empty when ``old_size`` is 0 or ``n``.

    Raises
    ------
    AuditError
        If ``old_size`` is outside ``[0, n]``.
    """
    size = len(leaf_hashes)
    if not 0 <= old_size <= size:
        raise AuditError(
            f"old tree size out of range: expected 0 <= old_size <= "
            f"{size}, got {old_size}"
        )
    if old_size in (0, size):
        return []
    return _subproof(old_size, leaf_hashes, 0, size, True)


# -- proof verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2) --------------------
def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise AuditError(
                f"{what} hash {i} has wrong length: expected {HASH_SIZE}, got {len(h)}"
            )


def _inclusion_length(index: int, size: int) -> int:
    """Length of the audit path: the inner part plus the right-border part."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + bin(index >> inner).count("1")


def _mismatch(what: str, expected: bytes, actual: bytes) -> AuditError:
    return AuditError(f"{what}: expected {expected.hex()}, got {actual.hex()}")


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` and ``root``.

    Follows RFC 9162 section 2.1.3.2 step by step, after checking the proof length.

    Raises
    ------
    AuditError
        If the index is out of range, the proof has the wrong length or does not
        lead to ``root``.
    """
    if not 0 <= index < size:
        raise AuditError(
            f"leaf index out of range: expected 0 <= index < {size}, got {index}"
        )
    _check_hashes("inclusion proof", [leaf_hash, root, *proof])
    expected = _inclusion_length(index, size)
    if len(proof) != expected:
        raise AuditError(
            f"inclusion proof has wrong size: expected {expected}, got {len(proof)}"
        )
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise AuditError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:  # only when fn == sn and LSB(fn) is not set
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise AuditError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise _mismatch("inclusion proof leads to the wrong root", root, r)


def _consistency_length(old_size: int, new_size: int) -> int:
    """Length of a consistency proof for ``0 < old_size < new_size``."""
    shift = (old_size & -old_size).bit_length() - 1  # trailing zero bits
    index = old_size - 1
    inner = (index ^ (new_size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree ``(old_size, old_root)`` is a prefix of the new tree.

    Follows RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. Equal sizes
    need an empty proof and equal roots; ``old_size == 0`` needs an empty proof and
    the empty-tree root (every tree extends the empty tree).

    Raises
    ------
    AuditError
        If the sizes are out of order, the proof has the wrong length, or it does not
        reproduce both roots.
    """
    if not 0 <= old_size <= new_size:
        raise AuditError(
            f"tree sizes out of order: expected 0 <= old size "
            f"<= {new_size}, got old size {old_size}"
        )
    _check_hashes("consistency proof", [old_root, new_root, *proof])
    if old_size in (0, new_size):
        if proof:
            raise AuditError(
                f"consistency proof has wrong size: expected 0, got {len(proof)}"
            )
        want = EMPTY_ROOT if old_size == 0 else new_root
        if old_root != want:
            raise _mismatch("old root does not match", want, old_root)
        return
    expected = _consistency_length(old_size, new_size)
    if len(proof) != expected:
        raise AuditError(
            f"consistency proof has wrong size: expected {expected}, got {len(proof)}"
        )
    # Step 1 is the length check above (an empty path never has the right length).
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2: old_size is a power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1  # step 3
    while fn & 1:  # step 4
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise AuditError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while fn and not fn & 1:  # only when fn == sn and LSB(fn) is not set
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:  # step 7
        raise AuditError("consistency proof is shorter than the path to the root")
    if fr != old_root:
        raise _mismatch("consistency proof does not match the old root", old_root, fr)
    if sr != new_root:
        raise _mismatch("consistency proof does not match the new root", new_root, sr)


# -- incremental root --------------------------------------------------------------
class CompactRange:
    """The frontier of an append-only tree: one subtree root per set bit of ``size``.

    Holds the roots of the perfect subtrees that cover leaves ``[0, size)``, largest
    first (the binary decomposition of ``size``). Appending merges equal-sized
    subtrees like a binary counter; the root folds the frontier right to left. Both
    take O(log n) hashes and the state is O(log n) hashes.

    Examples
    --------
    >>> cr = CompactRange()
    >>> for d in (b"a", b"b", b"c"):
    ...     cr.append(leaf_hash(d))
    >>> cr.root() == root([leaf_hash(d) for d in (b"a", b"b", b"c")])
    True
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._hashes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def copy(self) -> CompactRange:
        """Return an independent copy (to compute a root before committing to it)."""
        other = CompactRange()
        other._hashes = list(self._hashes)
        other._size = self._size
        return other

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at index ``size``."""
        if len(leaf) != HASH_SIZE:
            raise AuditError(
                f"leaf hash has wrong length: expected {HASH_SIZE}, got {len(leaf)}"
            )
        self._hashes.append(leaf)
        carry = self._size
        while carry & 1:
            right = self._hashes.pop()
            self._hashes[-1] = node_hash(self._hashes[-1], right)
            carry >>= 1
        self._size += 1

    def root(self) -> bytes:
        """Return the Merkle Tree Hash of the ``size`` leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc
