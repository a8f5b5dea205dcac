"""The Merkle tree of RFC 9162 §2.1, as plain functions: leaf and node hashes, the
root of a growing tree, inclusion and consistency proofs. Storage-free: a proof asks
`subtree(start, end)` for the hashes it needs (renkei/access_log/tree.py serves them from
stored tiles). docs/ARCHITECTURE.md, "The access log", says how the log uses it."""

import hashlib

EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}) = SHA-256 of the empty string


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 9162 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_root(hashes: list[bytes]) -> bytes:
    """The root over a power-of-two number of hashes of one level."""
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def subtrees(size: int) -> list[tuple[int, int]]:
    """The perfect subtrees a tree of `size` leaves is made of, left to right, as
    (level, index): one per set bit of size (6 leaves: [0,4) and [4,6))."""
    return [(level, (size >> level) - 1) for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]


def fold(hashes: list[bytes]) -> bytes:
    """The root of a tree from its perfect subtrees' roots, left to right."""
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


class Frontier:
    """The right edge of a growing tree (its perfect subtrees' roots): append leaf
    hashes one at a time, read the root at any size, in O(log n) memory."""

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None):
        self.size, self.hashes = size, list(hashes or [])

    def append(self, leaf: bytes):
        self.extend([leaf])

    def extend(self, leaves: list[bytes]):
        n, hashes, sha256 = self.size, self.hashes, hashlib.sha256
        for h in leaves:
            n += 1
            carry = n
            while not carry & 1:  # merge equal-sized subtrees, as a binary counter carries
                h = sha256(b"\x01" + hashes.pop() + h).digest()  # node_hash, inlined: the hot path
                carry >>= 1
            hashes.append(h)
        self.size = n

    def root(self) -> bytes:
        return fold(self.hashes)


def inclusion_path(index: int, size: int, subtree) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1; subtree(start, end) gives MTH(D[start:end])."""
    path, start, end = [], 0, size
    while end - start > 1:
        k = split(end - start)
        if index < start + k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start += k
    return path[::-1]  # the RFC lists the path from the leaf up


def consistency_proof(first: int, second: int, subtree) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 for 0 < m <= n."""
    proof, start, end, m, whole = [], 0, second, first, True
    while m != end - start:
        k = split(end - start)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(subtree(start, end))
    return proof[::-1]


def range_hash(start: int, end: int, node) -> bytes:
    """MTH(D[start:end]) from node(level, index), the root of a perfect subtree, for the
    ranges the proofs above ask for (start is a multiple of the split that made it)."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        return node(n.bit_length() - 1, start // n)
    k = split(n)
    return node_hash(range_hash(start, start + k, node), range_hash(start + k, end, node))
