"""HTTP byte ranges (RFC 9110 §14): reading `Range` and `If-Range`, and unions of sent bytes.

Ranges are half-open `(start, end)` byte offsets into a representation of `size` bytes. A header
the server cannot use (another unit, bad syntax, too many ranges) is ignored, as the RFC allows:
the whole representation is sent. Ranges that all start past the end are unsatisfiable (416).
"""

from __future__ import annotations

import re

from leaktrace.spans import Span, union

MAX_RANGES = 32  # more parts than any player asks for; a longer list is served whole (RFC 9110 §14.2)
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class Unsatisfiable(Exception):
    """No requested range overlaps the representation: answer 416 with `Content-Range: bytes */size`."""


def parse_range(header: str | None, size: int) -> list[Span] | None:
    """The spans a `Range` header asks of `size` bytes, or None to send the whole representation.

    `bytes=0-99` is (0, 100); `bytes=500-` runs to the end; `bytes=-500` is the last 500 bytes; an
    end past the size is clipped. Spans that overlap or touch are merged (in offset order), so a
    client never receives a byte twice in one response; otherwise the requested order is kept.
    """
    if header is None:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    spans: list[Span] = []
    for part in parts:
        match = _SPEC.match(part)
        if match is None or match.group(1) == match.group(2) == "":
            return None
        first, last = match.group(1), match.group(2)
        if first == "":
            suffix = int(last)
            if suffix > 0 and size > 0:
                spans.append((max(size - suffix, 0), size))
            continue
        start = int(first)
        if last != "" and int(last) < start:
            return None  # syntactically invalid: the whole header is ignored
        if start < size:
            spans.append((start, size if last == "" else min(int(last) + 1, size)))
    if not spans:
        raise Unsatisfiable
    ordered = sorted(spans)
    if any(later[0] <= earlier[1] for earlier, later in zip(ordered, ordered[1:])):
        return union(spans)
    return spans


def if_range_allows(if_range: str | None, *, etag: str, last_modified: str) -> bool:
    """True when a `Range` may be honoured: no `If-Range`, or it names the current representation.

    An entity tag must match strongly (a weak one never does); a date must equal `Last-Modified`
    exactly, since our dates have one-second resolution.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    return value == last_modified
