"""Errors services raise; the API turns them into MediaHub error envelopes."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: `message` is safe to show to the caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServiceError):
    """The request is well-formed JSON but its content is not acceptable."""


class NotFound(ServiceError):
    """The addressed object does not exist or belongs to another account."""
