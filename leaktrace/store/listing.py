"""Shared list query: count, order, page.

Services build a filtered `select` and name the columns a caller may sort on; `fetch_page` adds the
order (always ending with the id, so paging is stable), counts and slices.

A service may select the model's table (`select(Job.__table__)`) instead of the model: the page
then holds records (named tuples) with the same attribute names, which presenters read like model
objects. Big lists do this, because building a thousand ORM objects costs more than the query
itself; and records rather than SQLAlchemy rows, because a presenter reads some thirty attributes
per object and a row's attribute lookup costs about ten times a named tuple's.
"""

from __future__ import annotations

import functools
from collections import namedtuple
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
    count: Select[Any] | None = None,
) -> Page:
    """`limit` rows of `stmt` from `start` in `sort` order, with the number of all matching rows.

    The number comes from `count` when the service has a cheaper statement for it, otherwise from
    counting the rows of `stmt`.
    """
    column = sort_columns.get(sort.key or "created_at", sort_columns["created_at"])
    if isinstance(column.type, String) and session.get_bind().dialect.name == "postgresql":
        # Code-point order, as SQLite and the Python-side sort use, whatever the server's locale.
        column = column.collate("C")
    order = [column.desc(), id_column.desc()] if sort.descending else [column.asc(), id_column.asc()]
    page = stmt.order_by(*order).offset(start)
    if limit is not None:
        page = page.limit(limit)
    result = session.execute(page)
    described = page.column_descriptions
    if len(described) == 1 and described[0]["expr"] is described[0]["entity"]:
        items = list(result.scalars())  # `select(Model)`: model objects
    else:
        record = record_type(tuple(result.keys()))
        items = list(map(record._make, result))
    if limit is None or 0 < len(items) < limit or (start == 0 and not items):
        # The last page tells the total by itself; only a full or empty later page needs a count.
        return Page(total=start + len(items), items=items)
    if count is None:
        count = select(func.count()).select_from(stmt.order_by(None).subquery())
    return Page(total=session.scalar(count) or 0, items=items)


@functools.lru_cache(maxsize=64)
def record_type(fields: tuple[str, ...]) -> type:
    """The named tuple type for rows of these columns, made once per set of columns."""
    return namedtuple("Record", fields)
