"""Single-object and list responses, including the paging envelope."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import Request
from starlette.responses import Response

from leaktrace.api.query import ListOptions, ViewOptions
from leaktrace.api.render import JSON_TYPE, XML_TYPE, Ref, RenderContext, finish, serialize
from leaktrace.store.listing import Page, Sort

# Never echo credentials into links the response hands out.
_NOT_REPEATED = {"start", "limit", "access_token"}
SUCCESS_RESULT = {"result": {"status": "SUCCESS"}}  # the body of a successful DELETE


def respond(view: ViewOptions, body: dict[str, Any], status: int = 200) -> Response:
    """Serialize a finished body in the requested format."""
    return Response(
        serialize(body, xml=view.xml, human=view.human),
        status_code=status,
        media_type=XML_TYPE if view.xml else JSON_TYPE,
    )


def one(ctx: RenderContext, view: ViewOptions, key: str, presented: dict[str, Any], status: int = 200) -> Response:
    """`{"<key>": {...}}` for one presented object; `key` is also its kind for expansion."""
    body = finish(presented, ctx, _root(key, presented)) if ctx.expanding else presented
    return respond(view, {key: body}, status)


def _root(kind: str, presented: dict[str, Any]) -> frozenset[tuple[str, str]]:
    # Counts the object itself as embedded, so `expand_all` never embeds it inside itself.
    return frozenset({(kind, presented.get("id", ""))})


def last_start(total: int, limit: int) -> int:
    """Start of the last page: the largest multiple of `limit` below `total` (0 when empty).

    Both spec examples follow it: total 115, limit 2 -> 114; total 1054, limit 2 -> 1052.
    """
    return ((total - 1) // limit) * limit if total > 0 else 0


def page_links(request: Request, ctx: RenderContext, collection: str, *, start: int, limit: int, total: int) -> dict[str, Any]:
    """`first`, `last`, `next`, `prev`: start and limit first, then the caller's query as sent."""
    kept = [
        part
        for part in request.url.query.split("&")
        if part and unquote_plus(part.split("=", 1)[0]) not in _NOT_REPEATED
    ]
    base = ctx.href(collection)
    final = last_start(total, limit)

    def link(page_start: int) -> dict[str, str]:
        return {"href": base + "?" + "&".join([f"start={page_start}", f"limit={limit}", *kept])}

    return {
        "first": link(0),
        "last": link(final),
        "next": link(min(start + limit, max(final, start))),
        "prev": link(max(start - limit, 0)),
    }


def lookup(obj: Any, dotted: str) -> Any:
    """The value at a dotted key of a presented object (through references), or None."""
    for part in dotted.split("."):
        if isinstance(obj, Ref):
            obj = obj.id if part == "id" else (obj.extra or {}).get(part)
        elif isinstance(obj, dict):
            obj = obj.get(part)
        else:
            return None
    return obj.id if isinstance(obj, Ref) else obj


def _sort_key(value: Any) -> tuple[int, str, Any]:
    if value is None:
        return (0, "", 0)
    if isinstance(value, bool | int | float):
        return (1, "number", value)
    if isinstance(value, str):
        return (2, "string", value)
    return (3, "other", repr(value))


def many(
    request: Request,
    ctx: RenderContext,
    view: ViewOptions,
    options: ListOptions,
    *,
    kind: str,
    plural: str,
    collection: str,
    sort_columns: Sequence[str],
    fetch: Callable[[Sort, int, int | None], Page],
    present: Callable[[list[Any]], list[dict[str, Any]]],
) -> Response:
    """The list envelope for one page.

    Keys with a database column sort and page in SQL. Any other key, dotted or not, is still
    sortable: every matching row is presented and sorted here, which costs time on big lists.
    """
    sort = options.sort
    if sort.key is None or sort.key in sort_columns:
        page = fetch(sort, options.start, options.limit)
        total, items = page.total, present(page.items)
    else:
        page = fetch(Sort(), 0, None)
        everything = present(page.items)
        everything.sort(key=lambda item: _sort_key(lookup(item, sort.key or "")), reverse=sort.descending)
        total, items = page.total, everything[options.start : options.start + options.limit]
    body = {
        plural: [finish(item, ctx, _root(kind, item)) for item in items] if ctx.expanding else items,
        "total": total,
        "start": options.start,
        "limit": options.limit,
        **page_links(request, ctx, collection, start=options.start, limit=options.limit, total=total),
    }
    return respond(view, body)


def context(request: Request, view: ViewOptions, user_id: str | None) -> RenderContext:
    """The rendering context of a request made by `user_id`."""
    state = request.app.state
    return RenderContext(
        base_url=state.settings.base_url,
        db=state.db,
        user_id=user_id,
        show_null=view.show_null,
        expand=view.expand,
        expand_all=view.expand_all,
    )
