"""What every JSON request body must satisfy before any route sees it.

Routes validate their fields with pydantic, each with its own documented range. These rules hold
for every JSON body on top of that, free-form parts included (a job's `playlists`), so no value
can be stored that later breaks a response:

- nesting at most `MAX_JSON_DEPTH` objects/arrays deep (the outermost counts as 1): deeper data
  overflows the serializers' recursion limits when it is read back;
- integers within ±`MAX_JSON_INTEGER` (2⁵³ − 1, the largest integer every JSON client reads
  exactly); a bigger one cannot be written back as JSON by orjson or compared in SQL;
- numbers finite (`NaN`, `Infinity` and overflowing literals such as `1e999` are refused);
- strings and keys without NUL (PostgreSQL cannot store it) and without lone UTF-16 surrogates
  (`"\\ud800"`: not a character, cannot be encoded as UTF-8 for the database or the response).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 32
MAX_JSON_INTEGER = 2**53 - 1
# Decimal digits of MAX_JSON_INTEGER: longer literals are refused before being converted.
_MAX_INTEGER_DIGITS = len(str(MAX_JSON_INTEGER))
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


class BodyRefused(ValueError):
    """A JSON body breaks one of the rules above; the message says which."""


def is_json_body(content_type: str | None) -> bool:
    """True for the bodies FastAPI and the token endpoint decode as JSON (also a missing type)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check_json_body(body: bytes) -> None:
    """Raise `BodyRefused` when `body` is JSON that breaks a rule; malformed JSON passes (the
    route reports it as it always does)."""
    if not body.strip():
        return
    try:
        value = json.loads(body, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise BodyRefused(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, BodyRefused):
            raise
        return
    _check_value(value)


def _bounded_int(literal: str) -> int:
    digits = literal.lstrip("-")
    if len(digits) > _MAX_INTEGER_DIGITS or int(digits) > MAX_JSON_INTEGER:
        raise BodyRefused(f"integers must be within ±{MAX_JSON_INTEGER}")
    return int(literal)


def _no_constant(name: str) -> Any:
    raise BodyRefused(f"{name} is not a number JSON allows")


def _check_value(value: Any) -> None:
    # Iterative, so the check itself has no recursion limit to hit.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise BodyRefused(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            children = item.values() if isinstance(item, dict) else item
            if isinstance(item, dict):
                for key in item:
                    _check_text(key)
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            _check_text(item)
        elif isinstance(item, float) and item in (float("inf"), float("-inf")):
            raise BodyRefused("numbers must be finite")


def _check_text(text: str) -> None:
    if _UNSTORABLE_TEXT.search(text):
        raise BodyRefused("text must not contain NUL characters or lone UTF-16 surrogates")
