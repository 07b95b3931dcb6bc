"""Codecs: the seeded system codecs with their capabilities (read-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select

from leaktrace.ids import is_id
from leaktrace.store.db import Database
from leaktrace.store.errors import NotFound
from leaktrace.store.listing import Page, Sort, fetch_page
from leaktrace.store.models import Codec

TYPES = ("video", "audio")

SORT_COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Codec.id,
    "created_at": Codec.created_at,
    "updated_at": Codec.updated_at,
    "version": Codec.version,
    "name": Codec.name,
    "description": Codec.description,
    "type": Codec.type,
}


def get(db: Database, *, codec_id: str) -> Codec:
    """One codec; NotFound otherwise."""
    with db.read() as session:
        codec = session.get(Codec, codec_id) if is_id(codec_id) else None
    if codec is None:
        raise NotFound("Codec does not exist")
    return codec


def list_codecs(db: Database, *, codec_type: str | None, sort: Sort, start: int, limit: int | None) -> Page:
    """The codecs, optionally of one type, one page in `sort` order."""
    stmt = select(Codec)
    if codec_type is not None:
        stmt = stmt.where(Codec.type == codec_type)
    with db.read() as session:
        return fetch_page(session, stmt, id_column=Codec.id, sort_columns=SORT_COLUMNS, sort=sort, start=start, limit=limit)
