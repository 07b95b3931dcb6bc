"""Deleting a file: its record first (in one transaction), then its bytes.

The row goes first so the API never shows a file whose bytes are gone; a blob that cannot be
removed afterwards is logged (an orphan blob costs space, a dangling record would cost
correctness). A storage key that is not a valid key is refused before anything is deleted.
"""

from __future__ import annotations

import logging

from leaktrace.flows.uploads import parts_prefix
from leaktrace.storage import InvalidKey, Storage, check_key
from leaktrace.store import files, jobs
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput

log = logging.getLogger(__name__)


def delete_file(db: Database, storage: Storage, *, user_id: str, file_id: str) -> None:
    """Delete one of the account's files or archives: the record, its bytes, any upload parts."""
    file = files.get(db, user_id=user_id, file_id=file_id)
    if file.storage == "intern" and file.storage_key and file.type != "folder":
        try:
            check_key(file.storage_key)
        except InvalidKey:
            raise InvalidInput("the file's storage key points outside the store") from None
    key = files.delete_file(db, user_id=user_id, file_id=file_id)
    try:
        if key is not None:
            storage.delete(key)
        storage.delete_prefix(parts_prefix(file_id))
    except (OSError, InvalidKey):
        log.exception("file %s: the record is deleted but its stored bytes could not be removed", file_id)


def remove_blobs(storage: Storage, keys: list[str]) -> None:
    """Remove stored blobs, newest first; a key ending in "/" is a prefix (a prepared title's folder).

    A blob that cannot be removed is logged and left (an orphan costs space, not correctness).
    """
    for key in reversed(keys):
        try:
            if key.endswith("/"):
                storage.delete_prefix(key)
            else:
                storage.delete(key)
        except (OSError, InvalidKey):
            log.exception("a stored blob (%s) could not be removed", key)


def delete_job(db: Database, storage: Storage, *, user_id: str, job_id: str) -> None:
    """Delete (or cancel) one of the account's jobs: its records, then the files it produced."""
    remove_blobs(storage, jobs.delete_job(db, user_id=user_id, job_id=job_id))
