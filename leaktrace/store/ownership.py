"""Tenant isolation in one place: an account only ever reaches its own rows."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from leaktrace.ids import is_id

Owned = TypeVar("Owned")


def owned(session: Session, model: type[Owned], object_id: Any, *, user_id: str) -> Owned | None:
    """The row with this id if it belongs to the account; None for a malformed, unknown or foreign id."""
    row = session.get(model, object_id) if is_id(object_id) else None
    if row is None or getattr(row, "user_id") != user_id:
        return None
    return row
