"""RFC 6962 (Certificate Transparency) Merkle tree over audit record hashes: roots and inclusion proofs.

Leaf ``i`` is ``SHA-256(0x00 || record_hash_i)``, an inner node ``SHA-256(0x01 || left || right)``; the tree
of ``n`` leaves splits at the largest power of two below ``n``. A signed tree head carries the root, so a single
record can be proven to be in the signed log with ``log2(n)`` hashes, without the rest of the log.
"""

from __future__ import annotations

import hashlib


def _leaf(record_hash: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(record_hash)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def merkle_root(record_hashes: list[str]) -> str:
    """The tree's root hash.

    Args:
        record_hashes: Hex record hashes in log order.

    Returns:
        Hex root (the hash of the empty string for no records).
    """
    return _root([_leaf(h) for h in record_hashes]).hex()


def inclusion_proof(record_hashes: list[str], index: int) -> list[str]:
    """The audit path of leaf ``index`` (RFC 6962 section 2.1.1).

    Args:
        record_hashes: Hex record hashes in log order.
        index: 0-based leaf index.

    Returns:
        Hex sibling hashes, leaf to root.

    Raises:
        IndexError: ``index`` outside the tree.
    """
    if not 0 <= index < len(record_hashes):
        raise IndexError(f"leaf {index} is not in a tree of {len(record_hashes)}")

    def path(leaves: list[bytes], m: int) -> list[bytes]:
        if len(leaves) <= 1:
            return []
        k = _split(len(leaves))
        if m < k:
            return [*path(leaves[:k], m), _root(leaves[k:])]
        return [*path(leaves[k:], m - k), _root(leaves[:k])]

    return [h.hex() for h in path([_leaf(h) for h in record_hashes], index)]


def verify_inclusion(record_hash: str, index: int, size: int, proof: list[str], root: str) -> bool:
    """Check an audit path against a root (RFC 9162 section 2.1.3.2).

    Args:
        record_hash: The record's hex hash.
        index: Its 0-based leaf index.
        size: Leaves in the tree.
        proof: :func:`inclusion_proof` output.
        root: The expected hex root.

    Returns:
        True when the path leads to ``root``.
    """
    if not 0 <= index < size:
        return False
    fn, sn, digest = index, size - 1, _leaf(record_hash)
    try:
        for sibling in (bytes.fromhex(p) for p in proof):
            if sn == 0:
                return False
            if fn & 1 or fn == sn:
                digest = _node(sibling, digest)
                if not fn & 1:
                    while fn and not fn & 1:
                        fn, sn = fn >> 1, sn >> 1
            else:
                digest = _node(digest, sibling)
            fn, sn = fn >> 1, sn >> 1
    except ValueError:
        return False
    return sn == 0 and digest.hex() == root
