"""Codewords: which variant (A=0, B=1) each tag receives at each position.

A tag's codeword is derived from the title key alone, so nothing per viewer needs storing and a
copy is byte-identical every time it is assembled for the same tag.
"""

from __future__ import annotations

import hashlib

import numpy as np

_DOMAIN = b"leaktrace/codeword/v1\x00"


def codeword(key: bytes, tag: str, n_positions: int) -> np.ndarray:
    """Return the tag's codeword as a uint8 array of 0 (variant A) / 1 (variant B), shape (n_positions,)."""
    n_bytes = (n_positions + 7) // 8
    stream = hashlib.shake_256(_DOMAIN + key + b"\x00" + tag.encode("utf-8")).digest(n_bytes)
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8), bitorder="little")
    return bits[:n_positions].copy()
