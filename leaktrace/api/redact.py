"""Keeping secrets out of the access log.

Clients may send secrets in the URL: a bearer token as `access_token`, a client secret in the
token endpoint's query, a signed link's `signature`, or credentials inside a URI
(`s3://KEY:SECRET@bucket/…`). The access log writes each request's target, so `redact_target`
replaces those values with `REDACTED` before a line is written; everything else stays as sent.
`access_log_config()` is uvicorn's logging configuration with that filter on the access log.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import quote, unquote_plus

SECRET_PARAMETERS = frozenset({"access_token", "client_secret", "signature"})
REDACTED = "REDACTED"
# "scheme://user:password@" or "scheme://token@": the part between "//" and "@" is a credential.
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
_WITHOUT_CREDENTIALS = rf"\g<scheme>{REDACTED}@"


def redact_target(target: str) -> str:
    """A request target (path and query) without secret query values or URI credentials."""
    path, separator, query = target.partition("?")
    path = _URI_CREDENTIALS.sub(_WITHOUT_CREDENTIALS, path)
    if not separator:
        return path
    return f"{path}?{'&'.join(_redact_pair(pair) for pair in query.split('&'))}"


def _redact_pair(pair: str) -> str:
    name, equals, value = pair.partition("=")
    if unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
        return f"{name}={REDACTED}"
    decoded = unquote_plus(value)
    if _URI_CREDENTIALS.search(decoded):
        return f"{name}{equals}{quote(_URI_CREDENTIALS.sub(_WITHOUT_CREDENTIALS, decoded), safe='/:@')}"
    return pair


class RedactSecrets(logging.Filter):
    """For uvicorn's access logger, whose records carry (client, method, target, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_target(args[2]), *args[3:])
        return True


def access_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, with `RedactSecrets` on the access log."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    config["handlers"]["access"].setdefault("filters", []).append("redact_secrets")
    return config
