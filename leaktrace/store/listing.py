"""Shared list query: count, order, page.

Services build a filtered `select` and name the columns a caller may sort on; `fetch_page` adds the
order (always ending with the id, so paging is stable), counts and slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, func, select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Sort:
    """`key` is a response key (dotted for nested ones); None keeps creation order."""

    key: str | None = None
    descending: bool = False


@dataclass(frozen=True)
class Page:
    total: int
    items: list[Any]


def fetch_page(
    session: Session,
    stmt: Select[Any],
    *,
    id_column: ColumnElement[Any],
    sort_columns: dict[str, ColumnElement[Any]],
    sort: Sort,
    start: int,
    limit: int | None,
) -> Page:
    """Count the rows of `stmt`, then return `limit` of them from `start` in `sort` order."""
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    column = sort_columns.get(sort.key or "created_at", sort_columns["created_at"])
    if isinstance(column.type, String) and session.get_bind().dialect.name == "postgresql":
        # Code-point order, as SQLite and the Python-side sort use, whatever the server's locale.
        column = column.collate("C")
    order = [column.desc(), id_column.desc()] if sort.descending else [column.asc(), id_column.asc()]
    stmt = stmt.order_by(*order).offset(start)
    if limit is not None:
        stmt = stmt.limit(limit)
    return Page(total=total, items=list(session.scalars(stmt)))
