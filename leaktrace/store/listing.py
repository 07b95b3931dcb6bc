"""Shared list query: count, order, page.

Services build a filtered `select` and name the columns a caller may sort on; `fetch_page` adds the
order (always ending with the id, so paging is stable), counts and slices.

A service may select the model's table (`select(Job.__table__)`) instead of the model: the page
then holds plain rows with the same attribute names, which presenters read like model objects.
Big lists do this, because building a thousand ORM objects costs more than the query itself.
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
    """`limit` rows of `stmt` from `start` in `sort` order, with the number of all matching rows."""
    count = select(func.count()).select_from(stmt.order_by(None).subquery())
    column = sort_columns.get(sort.key or "created_at", sort_columns["created_at"])
    if isinstance(column.type, String) and session.get_bind().dialect.name == "postgresql":
        # Code-point order, as SQLite and the Python-side sort use, whatever the server's locale.
        column = column.collate("C")
    order = [column.desc(), id_column.desc()] if sort.descending else [column.asc(), id_column.asc()]
    stmt = stmt.order_by(*order).offset(start)
    if limit is not None:
        stmt = stmt.limit(limit)
    result = session.execute(stmt)
    described = stmt.column_descriptions
    if len(described) == 1 and described[0]["expr"] is described[0]["entity"]:
        items = list(result.scalars())  # `select(Model)`: model objects
    else:
        items = list(result)
    if limit is None or 0 < len(items) < limit or (start == 0 and not items):
        # The last page tells the total by itself; only a full or empty later page needs a count.
        return Page(total=start + len(items), items=items)
    return Page(total=session.scalar(count) or 0, items=items)
