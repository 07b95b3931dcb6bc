"""The common query parameters (the reference's §1.3 and §1.4), parsed and checked.

Bad values raise `InvalidInput`, which the error handler turns into the resource's invalid-input
code. Unknown parameters are ignored (and still repeated in paging links).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from leaktrace.store.errors import InvalidInput
from leaktrace.store.listing import Sort

DEFAULT_LIMIT = 1000
MAX_LIMIT = 5000
MAX_START = 2**62  # databases take 64-bit offsets; a bigger one would be a 500, not an empty page
MAX_TIMESTAMP_MS = 2**53 - 1  # date filters (epoch milliseconds) stay within 64-bit columns
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_bool(name: str, raw: str | None) -> bool | None:
    """`true`/`false` (also 1/0, yes/no, any case) or None when absent."""
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false")


def parse_int(name: str, raw: str | None, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    """A base-10 integer within bounds, or None when absent."""
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise InvalidInput(f"{name} must be an integer") from None
    if minimum is not None and value < minimum:
        raise InvalidInput(f"{name} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidInput(f"{name} must be at most {maximum}")
    return value


def parse_choice(name: str, raw: str | None, choices: tuple[str, ...]) -> str | None:
    """One of `choices`, or None when absent."""
    if raw is None:
        return None
    if raw not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}")
    return raw


def wants_xml(request: Request, *, strict: bool) -> bool:
    """`format=` wins over the Accept header; with `strict`, an unknown format is an error."""
    fmt = request.query_params.get("format")
    if fmt is not None:
        if fmt.lower() in ("json", "xml"):
            return fmt.lower() == "xml"
        if strict:
            raise InvalidInput("format must be json or xml")
        return False
    accept = request.headers.get("accept", "")
    return ("application/xml" in accept or "text/xml" in accept) and "application/json" not in accept


@dataclass(frozen=True)
class ViewOptions:
    """How to render: format, indentation, nulls, embedding."""

    xml: bool = False
    human: bool = False
    show_null: bool = False
    expand: frozenset[str] = frozenset()
    expand_all: bool = False
    bin_data: bool = False

    @classmethod
    def from_request(cls, request: Request) -> ViewOptions:
        """Parse and check the rendering parameters of `request`."""
        params = request.query_params
        expand = params.get("expand")
        return cls(
            xml=wants_xml(request, strict=True),
            human=bool(parse_bool("human", params.get("human"))),
            show_null=bool(parse_bool("show_null", params.get("show_null"))),
            expand=frozenset(part.strip() for part in expand.split(",") if part.strip()) if expand else frozenset(),
            expand_all=bool(parse_bool("expand_all", params.get("expand_all"))),
            bin_data=bool(parse_bool("bin_data", params.get("bin_data"))),
        )


@dataclass(frozen=True)
class ListOptions:
    """Which page, in which order."""

    start: int = 0
    limit: int = DEFAULT_LIMIT
    sort: Sort = Sort()

    @classmethod
    def from_request(cls, request: Request) -> ListOptions:
        """Parse and check `start`, `limit`, `sort` and `direction`."""
        params = request.query_params
        start = parse_int("start", params.get("start"), minimum=0, maximum=MAX_START)
        limit = parse_int("limit", params.get("limit"), minimum=1, maximum=MAX_LIMIT)
        direction = parse_choice("direction", params.get("direction"), ("1", "-1"))
        sort_key = params.get("sort")
        if sort_key is not None and not sort_key.strip():
            raise InvalidInput("sort must name a key")
        return cls(
            start=start if start is not None else 0,
            limit=limit if limit is not None else DEFAULT_LIMIT,
            sort=Sort(key=sort_key, descending=direction == "-1"),
        )
