"""The error envelope and codes.

Every error body is `{"error": {"error_code": "0x…", "error_message": "…"}}`. Codes are "0x" plus
seven hex digits: a three-digit resource family, then a four-digit code. Input and not-found
errors take their family from the path, so `InvalidInput` raised anywhere under `/v1/jobs/`
becomes `0x0050001`. Register a new resource's family in `FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """The codes of one resource."""

    invalid_input: str
    not_found: str
    not_found_message: str


FAMILIES: dict[str, Family] = {
    "oauth2": Family("0x0010001", "0x0010002", "Resource does not exist"),
    "users": Family("0x0020001", "0x0020002", "User does not exist"),
    "applications": Family("0x0030001", "0x0030002", "Application does not exist"),
    "jobs": Family("0x0050001", "0x0050005", "Job does not exist"),
    "pipelines": Family("0x0170001", "0x0170002", "Pipeline does not exist"),
    "presets": Family("0x0180001", "0x0180002", "Preset does not exist"),
    "codecs": Family("0x0190001", "0x0190002", "Codec does not exist"),
    "files": Family("0x0230001", "0x0230002", "Requested file does not exist"),
    "backtraces": Family("0x0300001", "0x0300007", "Backtrace does not exist"),
}
FAMILIES["playlists"] = FAMILIES["files"]  # playlists deliver files (the reference names no codes of their own)
GENERIC = Family("0x0000009", "0x0000005", "Resource does not exist")

INTERNAL_ERROR = "0x0000001"
AUTHENTICATION_REQUIRED = "0x0000002"
INVALID_ACCESS_TOKEN = "0x0000003"
INSUFFICIENT_SCOPE = "0x0000004"
METHOD_NOT_ALLOWED = "0x0000006"
BODY_TOO_LARGE = "0x0000007"
BODY_TIMEOUT = "0x0000008"
INVALID_CLIENT = "0x0010003"
TOO_MANY_FAILURES = "0x0010004"


def family_for_path(path: str) -> Family:
    """The family of the resource a `/v1/...` path addresses (`/v1/titles/backtraces` too)."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["v1"]:
        parts = parts[1:]
    if parts[:1] == ["titles"]:
        parts = parts[1:]
    return FAMILIES.get(parts[0], GENERIC) if parts else GENERIC


class ApiError(Exception):
    """An error response with an explicit status and code."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def envelope(code: str, message: str) -> dict[str, dict[str, str]]:
    """The error body."""
    return {"error": {"error_code": code, "error_message": message}}
