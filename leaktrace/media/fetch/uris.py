"""URIs of server-side fetches: hiding their secrets, and joining relative names onto a base.

`redact` is for anything a person may read (logs, error messages, API echoes): it drops the
user and password (an S3 URI's access key and secret key) and the values of query parameters
that look like credentials (pre-signed URLs). `resolve` turns a job's `input_name` or a logo's
`logo_image` into the URI to fetch, with the same path rules as submission
(`store.pipelines.relative_input_path`): a name is a literal path (spaces, `#` and `?` are
part of it), percent-encoded when joined onto the base.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from leaktrace.media.fetch.policy import FetchError
from leaktrace.store.errors import InvalidInput
from leaktrace.store.pipelines import relative_input_path

FETCH_SCHEMES = ("https", "http", "s3", "sftp", "file")
REDACTED = "***"
MASKED_PASSWORD = "*******"  # as the users API masks passwords
# Query parameters whose values are credentials: X-Amz-Signature, X-Amz-Credential, token, key…
_SECRET_PARAM = re.compile(r"signature|credential|token|secret|password|key|auth", re.IGNORECASE)
# Shorter user names or passwords are not scrubbed from free text (they would mangle it).
MIN_SCRUBBED_CHARS = 3


def redact(uri: str) -> str:
    """`uri` without user, password and credential-like query values; unparsable text -> `***`."""
    try:
        parts = urlsplit(uri)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return REDACTED
    netloc = f"{REDACTED}@{host}" if "@" in parts.netloc else host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(name, REDACTED if _SECRET_PARAM.search(name) else value) for name, value in pairs], safe="*:/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def mask_password(uri: str | None) -> str | None:
    """`uri` as the API shows it: the password masked (the user name kept, so an operator can tell
    which key is set), credential-like query values redacted; None stays None."""
    if uri is None or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return REDACTED
    shown = redact(uri)
    if password is None or parts.username is None:
        return shown
    return shown.replace(f"{REDACTED}@", f"{parts.username}:{MASKED_PASSWORD}@", 1)


def scrub(text: str, uri: str) -> str:
    """`text` with `uri` redacted and its user and password removed wherever they appear."""
    text = text.replace(uri, redact(uri))
    try:
        parts = urlsplit(uri)
        secrets = [parts.username, parts.password]
    except ValueError:
        return text
    for secret in secrets:
        for form in {secret, unquote(secret)} if secret else ():
            if len(form) >= MIN_SCRUBBED_CHARS:
                text = text.replace(form, REDACTED)
    return text


def check_fetch_uri(uri: str, *, field: str) -> None:
    """FetchError(invalid_uri) unless `uri` has a fetchable scheme and, except file://, a host."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError:
        raise FetchError("invalid_uri", f"{field} is not a valid URI") from None
    if parts.scheme.lower() not in FETCH_SCHEMES:
        raise FetchError("invalid_uri", f"{field} must use one of the schemes {', '.join(FETCH_SCHEMES)}")
    if parts.scheme.lower() != "file" and not parts.hostname:
        raise FetchError("invalid_uri", f"{field} must name a host")


def join(base_uri: str, relative_path: str) -> str:
    """`relative_path` (already checked, literal) appended to the path of `base_uri`; the base's
    query (e.g. an S3 `endpoint`) is kept and its fragment dropped."""
    parts = urlsplit(base_uri)
    path = parts.path.rstrip("/") + "/" + quote(relative_path, safe="/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def resolve(base_dir: str | None, name: str, *, field: str = "input_name") -> str | None:
    """The URI to fetch for `name`: itself when absolute, else joined onto `base_dir`; None when
    relative without a base (the caller reads the pipeline's internal store).

    FetchError `path_escape` when a relative name would leave its base (absolute path, `..`,
    also percent-encoded), `invalid_uri` for unusable URIs; the API maps both to 400.
    """
    if "://" in name:
        check_fetch_uri(name, field=field)
        return name
    try:
        path = relative_input_path(name)
    except InvalidInput as exc:
        raise FetchError("path_escape", str(exc).replace("input_name", field)) from None
    if base_dir is None:
        return None
    check_fetch_uri(base_dir, field="the pipeline's download folder")
    return join(base_dir, path)


def resolve_logo(image_download_dir: str | None, logo_image: str) -> str | None:
    """The URI of a logo image: `resolve` against the pipeline's `image_download_dir`."""
    return resolve(image_download_dir, logo_image, field="logo_image")
