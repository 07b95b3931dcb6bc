"""The upload form: signed `form_post_params`, and a streaming reader for the posted body.

`form_post_params` are opaque to clients. Two of them authorise the POST in place of a bearer
token: `policy`, base64url (unpadded) of the JSON `{"upload_id", "key", "expires_at"}`
(`expires_at` epoch seconds, or null when the upload never expires), and `signature`, the
lowercase hex HMAC-SHA256 of the policy text under the server's `upload-form` signing key
(`Settings.signing_key`). A policy is good for one upload only, until it expires.

`FormReader` parses `multipart/form-data` as it arrives (python-multipart's streaming parser):
the small text fields are kept, and the `file` field's bytes go straight to a sink opened when
that part starts, so a file is never held in memory nor copied twice. Like S3's POST form, every
other field must come before `file`; fields after it are ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from leaktrace.api import errors
from leaktrace.store.errors import InvalidInput

SIGNING_PURPOSE = "upload-form"
FILE_FIELD = "file"
SIGNED_FIELDS = ("policy", "signature")
MAX_FIELD_BYTES = 8 * 1024  # a policy is about 150 bytes; no form field needs more
MAX_FIELDS = 64
# Bytes a form adds around its file (boundaries, part headers, the small fields): a body that
# declares more than the size limit plus this cannot fit.
FORM_OVERHEAD_BYTES = 64 * 1024
_HEX_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")


class Sink(Protocol):
    """Where the `file` field's bytes go."""

    def write(self, data: bytes) -> object: ...


# ---- the signed parameters -----------------------------------------------------------------------


def _sign(policy: str, key: bytes) -> str:
    return hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()


def form_post_params(*, upload_id: str, storage_key: str, name: str, expires_at_s: int | None, key: bytes) -> dict[str, str]:
    """The fields a client sends with every chunk (`chunk` and `chunks` it sets per request)."""
    document = {"upload_id": upload_id, "key": storage_key, "expires_at": expires_at_s}
    policy = base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":"), sort_keys=True).encode()).decode().rstrip("=")
    return {
        "name": name,
        "key": storage_key,
        "success_action_status": "201",
        "filename": "",
        "chunk": "0",
        "chunks": "1",
        "policy": policy,
        "signature": _sign(policy, key),
    }


def forbidden(reason: str) -> errors.ApiError:
    """403 with the invalid-credentials code: the form's parameters do not authorise this POST."""
    return errors.ApiError(403, errors.INVALID_ACCESS_TOKEN, f"Invalid upload form: {reason}")


def verify(fields: dict[str, str], *, upload_id: str, key: bytes, now_s: float) -> str:
    """Check the form's `policy` and `signature` authorise a POST to `upload_id`; 403 otherwise.

    Returns the storage key the policy binds. The signature is compared in constant time before
    the policy is even decoded.
    """
    policy, signature = fields.get("policy"), fields.get("signature")
    if not policy or not signature:
        raise forbidden("policy and signature are required (send every form_post_params field before file)")
    if not _HEX_SIGNATURE.match(signature) or not hmac.compare_digest(_sign(policy, key), signature.lower()):
        raise forbidden("the signature does not match the policy")
    try:
        document: Any = json.loads(base64.urlsafe_b64decode(policy + "=" * (-len(policy) % 4)))
    except (binascii.Error, ValueError):
        raise forbidden("the policy cannot be read") from None
    if not isinstance(document, dict) or document.get("upload_id") != upload_id:
        raise forbidden("these form parameters belong to another upload")
    signed_key = document.get("key")
    if not isinstance(signed_key, str) or fields.get("key", signed_key) != signed_key:
        raise forbidden("key does not match the signed policy")
    expires_at = document.get("expires_at")
    if expires_at is not None and (not isinstance(expires_at, int) or expires_at < now_s):
        raise forbidden("the upload form has expired")
    return signed_key


def chunk_numbers(fields: dict[str, str]) -> tuple[int, int]:
    """`chunk` (index from 0, default 0) and `chunks` (total, default 1) of a form."""

    def number(name: str, default: int) -> int:
        raw = fields.get(name, "").strip()
        if not raw:
            return default
        if not raw.isdigit():
            raise InvalidInput(f"{name} must be a non-negative integer")
        return int(raw)

    return number("chunk", 0), number("chunks", 1)


def success_status(fields: dict[str, str]) -> int:
    """The status to answer with: `success_action_status` 200, 201 (default) or 204."""
    raw = fields.get("success_action_status", "201")
    if raw not in ("200", "201", "204"):
        raise InvalidInput("success_action_status must be 200, 201 or 204")
    return int(raw)


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a `Content-Type`; InvalidInput unless it is multipart/form-data."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput("the upload form must be sent as multipart/form-data with a boundary")
    return boundary


# ---- the body, as it streams in ------------------------------------------------------------------


class FormReader:
    """Feeds a multipart body through python-multipart, piece by piece.

    `open_file(fields)` is called when the `file` part starts, with every field read so far; it
    authorises the upload and returns the sink for the file's bytes (any exception it raises stops
    the parse). After the last piece, `finished` says whether the closing boundary arrived and
    `fields` holds the text fields.
    """

    def __init__(self, boundary: bytes, *, open_file: Callable[[dict[str, str]], Sink]) -> None:
        self.fields: dict[str, str] = {}
        self.finished = False
        self.file_received = False
        self._open_file = open_file
        self._sink: Sink | None = None
        self._file_done = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._value = bytearray()
        self._receiving: str | None = None  # the field whose data arrives: FILE_FIELD, a text field, or None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda data, start, end: self._header_name.extend(data[start:end]),
                "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, data: bytes) -> None:
        """Parse the next piece of the body; InvalidInput for malformed multipart."""
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise InvalidInput(f"malformed multipart body: {exc}") from None

    def _part_begin(self) -> None:
        self._disposition = b""
        self._value.clear()
        self._receiving = None

    def _header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._file_done or not name:
            self._receiving = None  # fields after the file, a second file, unnamed parts
        elif name == FILE_FIELD:
            self._sink = self._open_file(dict(self.fields))
            self._receiving = FILE_FIELD
        else:
            if len(self.fields) >= MAX_FIELDS and name not in self.fields:
                raise InvalidInput(f"the form has more than {MAX_FIELDS} fields")
            self._receiving = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._receiving == FILE_FIELD:
            assert self._sink is not None
            self._sink.write(data[start:end])
        elif self._receiving is not None:
            self._value.extend(data[start:end])
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {self._receiving} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._receiving == FILE_FIELD:
            self._file_done = self.file_received = True
        elif self._receiving is not None:
            try:
                value = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {self._receiving} is not UTF-8") from None
            if self._receiving in SIGNED_FIELDS and self.fields.get(self._receiving, value) != value:
                raise InvalidInput(f"form field {self._receiving} is repeated with another value")
            self.fields[self._receiving] = value  # later values win, as in plupload's own fields
        self._receiving = None

    def _end(self) -> None:
        self.finished = True
