"""Turning presented objects into response bodies.

Presenters build each body once, already in its final form for the request: null values are left
out unless `show_null=true` (`RenderContext.obj` for the dicts they build, `RenderContext.blob`
for stored JSON), and references come out in the short `{"id", "href"}` form. Only a reference the
caller asked to embed (`expand`/`expand_all`) stays a `Ref` marker, which `finish` replaces with
the referenced object, presented the same way. `serialize` then writes JSON or XML, compact or
indented for `human=true`. Building the final form directly, instead of building everything and
walking it again, is what keeps a page of 1000 objects within a small multiple of its query.
"""

from __future__ import annotations

from collections.abc import Callable
import re
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import orjson

from leaktrace.store.db import Database


@dataclass(slots=True)
class Ref:
    """A reference the request asked to embed (see `RenderContext.ref`)."""

    kind: str
    id: str
    collection: str
    extra: dict[str, Any] | None = None
    href: bool = True


def _short(ctx: RenderContext, object_id: str, collection: str, extra: dict[str, Any] | None, href: bool) -> dict[str, Any]:
    short: dict[str, Any] = {"id": object_id}
    if extra:
        short.update(ctx.obj(extra))
    if href:
        short["href"] = f"{ctx.base_url}/v1/{collection}/{object_id}"
    return short


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


# kind -> loader(context, id) returning the presented object, or None when it is not visible.
Loader = Callable[["RenderContext", str], dict[str, Any] | None]
LOADERS: dict[str, Loader] = {}


def register_loader(kind: str, loader: Loader) -> None:
    """Make `expand=<kind>` embed objects presented by `loader`."""
    LOADERS[kind] = loader


@dataclass
class RenderContext:
    """Everything rendering needs for one request."""

    base_url: str
    db: Database
    user_id: str | None
    show_null: bool = False
    expand: frozenset[str] = frozenset()
    expand_all: bool = False
    _cache: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    _shorts: dict[tuple[str, str, bool], dict[str, Any]] = field(default_factory=dict)

    def href(self, collection: str, object_id: str | None = None) -> str:
        """The public URL of a collection or of one object in it."""
        return f"{self.base_url}/v1/{collection}/{object_id}" if object_id else f"{self.base_url}/v1/{collection}/"

    @property
    def expanding(self) -> bool:
        """True when this request embeds referenced objects."""
        return self.expand_all or bool(self.expand)

    def ref(
        self, kind: str, object_id: str | None, collection: str | None = None, *,
        extra: dict[str, Any] | None = None, href: bool = True,
    ) -> Ref | dict[str, Any] | None:
        """A reference to another object: short form, a `Ref` to embed, or None when unset.

        `kind` is the name `expand=` uses (`pipeline`, `file`, …), `collection` the URL segment of
        its href (default `<kind>s`); `extra` adds keys next to the id (a job's input file shows
        its `name`); `href=False` leaves the href out (backtraces reference jobs by id only).
        """
        if object_id is None:
            return None
        collection = collection or kind + "s"
        if self.expand_all or kind in self.expand:
            return Ref(kind, object_id, collection, extra, href)
        if extra:
            return _short(self, object_id, collection, extra, href)
        # A page names the same few objects (its pipeline, application, user, presets) on every
        # item: each short reference is built once per request and shared, which is safe because
        # presented bodies are only ever read after they are built.
        key = (collection, object_id, href)
        short = self._shorts.get(key)
        if short is None:
            short = self._shorts[key] = _short(self, object_id, collection, None, href)
        return short

    def obj(self, mapping: dict[str, Any]) -> dict[str, Any]:
        """A dict a presenter built, without its null values unless `show_null`."""
        if self.show_null:
            return mapping
        return {key: value for key, value in mapping.items() if value is not None}

    def blob(self, value: Any) -> Any:
        """A stored JSON value (settings, options, …) without nulls at any depth unless `show_null`."""
        if self.show_null or value is None:
            return value
        return _drop_nulls(value)

    def load(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """The presented object for a reference, loaded once per request."""
        key = (kind, object_id)
        if key not in self._cache:
            loader = LOADERS.get(kind)
            self._cache[key] = loader(self, object_id) if loader else None
        return self._cache[key]


_LEAVES = (str, int, float, bool)


def finish(value: Any, ctx: RenderContext, _path: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """Replace every `Ref` marker in a presented body with the embedded object (or short form)."""
    if isinstance(value, dict):
        return {key: item if isinstance(item, _LEAVES) else finish(item, ctx, _path) for key, item in value.items()}
    if isinstance(value, list):
        return [item if isinstance(item, _LEAVES) else finish(item, ctx, _path) for item in value]
    if isinstance(value, Ref):
        return _resolve(value, ctx, _path)
    return value


def _resolve(reference: Ref, ctx: RenderContext, path: frozenset[tuple[str, str]]) -> Any:
    key = (reference.kind, reference.id)
    wanted = ctx.expand_all or reference.kind in ctx.expand
    # `path` holds the objects being embedded above this point, so cycles stay short references.
    if wanted and key not in path:
        embedded = ctx.load(reference.kind, reference.id)
        if embedded is not None:
            inner = ctx if ctx.expand_all else _without_expansion(ctx)
            return finish(embedded, inner, path | {key})
    return _short(ctx, reference.id, reference.collection, reference.extra, reference.href)


def _without_expansion(ctx: RenderContext) -> RenderContext:
    # `expand=file` embeds the file itself but not the objects that file references in turn.
    return RenderContext(base_url=ctx.base_url, db=ctx.db, user_id=ctx.user_id, show_null=ctx.show_null, _cache=ctx._cache)


# ---- serialization ---------------------------------------------------------------------------

JSON_TYPE = "application/json"
XML_TYPE = "application/xml"


def serialize(body: dict[str, Any], *, xml: bool, human: bool) -> bytes:
    """The response bytes for `body`."""
    if xml:
        return to_xml(body, human=human)
    # orjson: a page of 1000 jobs is about a megabyte, and the standard encoder takes several
    # times longer than the database query for it.
    return orjson.dumps(body, option=orjson.OPT_INDENT_2 if human else 0)


def to_xml(body: dict[str, Any], *, human: bool = False) -> bytes:
    """XML for a response body, always well formed.

    The root is `<response>`; each key becomes an element; a list becomes an element with
    `type="array"` whose items are `<item>` elements; null is `nil="true"`; booleans are
    `true`/`false`. The mapping is reversible, so tests compare XML and JSON bodies directly.
    Keys that are not XML names are encoded by `xml_name`; characters XML 1.0 cannot carry in
    text are replaced by `xml_text`.
    """
    root = ElementTree.Element("response")
    _xml_children(root, body)
    if human:
        ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)


def _xml_children(parent: ElementTree.Element, mapping: dict[str, Any]) -> None:
    for key, value in mapping.items():
        _xml_value(ElementTree.SubElement(parent, xml_name(key)), value)


def _xml_value(element: ElementTree.Element, value: Any) -> None:
    if value is None:
        element.set("nil", "true")
    elif isinstance(value, dict):
        _xml_children(element, value)
    elif isinstance(value, list):
        element.set("type", "array")
        for item in value:
            _xml_value(ElementTree.SubElement(element, "item"), item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    else:
        element.text = xml_text(str(value))


# Outside XML 1.0's Char production.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# XML 1.0 (5th ed.) NameStartChar and NameChar, without ":" (names stay namespace-well-formed).
_NAME_START = "A-Z_a-z\xc0-\xd6\xd8-\xf6\xf8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
_NAME_CHAR = _NAME_START + "\\-.0-9\xb7\u0300-\u036f\u203f-\u2040"
_PLAIN_NAME = re.compile(f"[{_NAME_START}][{_NAME_CHAR}]*")
_NAME_CHAR_ONE = re.compile(f"[{_NAME_CHAR}]")
_NAME_START_ONE = re.compile(f"[{_NAME_START}]")
# "_x" followed by a hex digit or "_" would read as an escape: its "_" is escaped itself.
_ESCAPE_LIKE = re.compile("_(?=x[0-9A-Fa-f_])")
EMPTY_NAME = "_x_"


def xml_text(text: str) -> str:
    """`text` with every character XML 1.0 cannot carry (controls other than tab, newline and
    CR; lone surrogates; U+FFFE, U+FFFF) replaced by U+FFFD; the JSON body keeps them exact."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def xml_name(key: str) -> str:
    """The element name for a key: itself when it is an XML name without ":" and without an
    escape-like "_x", else each offending character as `_xHHHH_` (`_xHHHHHHHH_` beyond U+FFFF),
    the encoding of .NET's XmlConvert.EncodeName; the empty key is `_x_`. Reversible."""
    if _PLAIN_NAME.fullmatch(key) and "_x" not in key:
        return key
    if not key:
        return EMPTY_NAME
    out = []
    for position, char in enumerate(key):
        allowed = _NAME_START_ONE if position == 0 else _NAME_CHAR_ONE
        if allowed.fullmatch(char) and not (char == "_" and _ESCAPE_LIKE.match(key, position)):
            out.append(char)
        else:
            code = ord(char)
            out.append(f"_x{code:04X}_" if code <= 0xFFFF else f"_x{code:08X}_")
    return "".join(out)
