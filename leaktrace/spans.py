"""Byte spans: half-open `(start, end)` offsets, and unions of them (shared by delivery and store)."""

from __future__ import annotations

from collections.abc import Iterable

Span = tuple[int, int]


def union(spans: Iterable[Span]) -> list[Span]:
    """The sorted, disjoint spans covering exactly the bytes of `spans` (touching spans merge)."""
    merged: list[Span] = []
    for start, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(spans: Iterable[Span]) -> int:
    """How many distinct bytes `spans` cover."""
    return sum(end - start for start, end in union(spans))
