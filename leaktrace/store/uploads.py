"""Uploads (the reference's §2.9): the rows of files being brought in through the upload form.

An upload and its file record are created together and share one id. Its status moves
UPLOADING -> COMPLETING (the client said it sent every chunk) -> COMPLETED (the chunks are
assembled into the file) or FAILURE. Bytes are not handled here: `flows.uploads` stores the
chunks and assembles them, and calls these functions for the rows.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from sqlalchemy import select

from leaktrace.ids import is_id, new_id, now_ms
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput, NotFound
from leaktrace.store.models import File, Pipeline, Upload
from leaktrace.store.ownership import owned
from leaktrace.store.pipelines import folder_key, relative_input_path

UPLOADING, COMPLETING, COMPLETED, FAILURE = "UPLOADING", "COMPLETING", "COMPLETED", "FAILURE"
STATUSES = (UPLOADING, COMPLETING, COMPLETED, FAILURE)
DEFAULT_LIFETIME_MS = 7 * 24 * 3600 * 1000  # how long an upload may stay incomplete unless told otherwise


def storage_key_for(pipeline_id: str, object_key: str) -> str:
    """Where an upload's file goes: the pipeline's folder plus the normalised `object_key`.

    InvalidInput when the key would leave the folder (absolute, `..`, backslashes, control
    characters), by the same rule as job input names.
    """
    return folder_key(pipeline_id) + relative_input_path(object_key, label="object_key")


def create(
    db: Database,
    *,
    user_id: str,
    application_id: str | None,
    pipeline_id: str,
    object_key: str,
    storage_key: str,
    expires_at: int | None,
    ip: int | None,
) -> Upload:
    """Store a new UPLOADING upload and its file record; `expires_at` in epoch ms, None = never.

    Refused when another upload that has not failed already targets the same storage key: each
    stored file belongs to one upload record.
    """
    now = now_ms()
    with db.write() as session:
        pipeline = owned(session, Pipeline, pipeline_id, user_id=user_id)
        if pipeline is None:
            raise InvalidInput(f"pipeline {pipeline_id} does not exist")
        holder = session.scalar(
            select(Upload.id).where(Upload.storage_key == storage_key, Upload.status != FAILURE).limit(1)
        )
        if holder is not None:
            raise InvalidInput(f"object_key is already taken by upload {holder}; delete that file first")
        upload_id = new_id()
        session.add(
            File(
                id=upload_id,
                user_id=user_id,
                application_id=application_id,
                pipeline_id=pipeline.id,
                storage="intern",
                storage_key=storage_key,
                name=posixpath.basename(storage_key),
                type="file",
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()  # the upload row references the file row
        upload = Upload(
            id=upload_id,
            user_id=user_id,
            application_id=application_id,
            pipeline_id=pipeline.id,
            object_key=object_key,
            storage_key=storage_key,
            status=UPLOADING,
            nb_chunks=0,
            ip=ip,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        session.add(upload)
    return upload


def get(db: Database, *, user_id: str, upload_id: str) -> Upload:
    """One of the account's uploads; NotFound otherwise."""
    with db.read() as session:
        upload = owned(session, Upload, upload_id, user_id=user_id)
    if upload is None:
        raise NotFound("Upload does not exist")
    return upload


def find(db: Database, *, upload_id: str) -> Upload | None:
    """Any account's upload by id (the upload form authorises by signature, not by account)."""
    if not is_id(upload_id):
        return None
    with db.read() as session:
        return session.get(Upload, upload_id)


def begin_completion(db: Database, *, user_id: str, upload_id: str, nb_chunks: int) -> Upload:
    """UPLOADING -> COMPLETING with the client's chunk count.

    Repeating the same request later is answered with the upload as it is (a client may retry a
    PUT whose answer it lost); another chunk count, or a failed upload, is InvalidInput.
    """
    with db.write() as session:
        upload = owned(session, Upload, upload_id, user_id=user_id)
        if upload is None:
            raise NotFound("Upload does not exist")
        if upload.status == FAILURE:
            raise InvalidInput(f"the upload failed: {upload.error_msg}")
        if upload.status != UPLOADING:
            if upload.nb_chunks != nb_chunks:
                raise InvalidInput(f"the upload is already {upload.status} with nb_chunks {upload.nb_chunks}")
            return upload
        upload.status = COMPLETING
        upload.nb_chunks = nb_chunks
        upload.version += 1
        upload.updated_at = now_ms()
    return upload


def finish(db: Database, *, upload_id: str, size: int, md5_checksum: str) -> bool:
    """COMPLETING -> COMPLETED, recording the file's size and MD5; False if the upload is gone."""
    now = now_ms()
    with db.write() as session:
        upload = session.get(Upload, upload_id)
        file = session.get(File, upload_id)
        if upload is None or file is None or upload.status != COMPLETING:
            return False
        upload.status = COMPLETED
        upload.finished_at = now
        upload.version += 1
        upload.updated_at = now
        file.size = size
        file.size_on_disk = size
        file.md5_checksum = md5_checksum
        file.finished_at = now
        file.version += 1
        file.updated_at = now
    return True


def fail(db: Database, *, upload_id: str, message: str) -> None:
    """Mark an upload FAILURE with a message the client may read (a COMPLETED one stays so)."""
    now = now_ms()
    with db.write() as session:
        upload = session.get(Upload, upload_id)
        if upload is None or upload.status == COMPLETED:
            return
        upload.status = FAILURE
        upload.error_msg = message
        upload.finished_at = now
        upload.version += 1
        upload.updated_at = now


@dataclass(frozen=True)
class Removed:
    """An upload the sweep removed, for the caller to remove its stored parts."""

    upload_id: str
    status: str


def remove_expired(db: Database, *, now: int) -> list[Removed]:
    """Delete every upload that expired (`expires_at` < `now`, epoch ms) without completing.

    Their file records go with them (the upload row cascades from its file row).
    """
    with db.write() as session:
        rows = session.execute(
            select(Upload.id, Upload.status).where(
                Upload.status != COMPLETED, Upload.expires_at.is_not(None), Upload.expires_at < now
            )
        ).all()
        for upload_id, _status in rows:
            file = session.get(File, upload_id)
            if file is not None:
                session.delete(file)
    return [Removed(upload_id=upload_id, status=status) for upload_id, status in rows]


def statuses(db: Database, *, upload_ids: list[str]) -> dict[str, str]:
    """The status of each of these uploads that still exists."""
    if not upload_ids:
        return {}
    with db.read() as session:
        rows = session.execute(select(Upload.id, Upload.status).where(Upload.id.in_(upload_ids))).all()
    return {upload_id: status for upload_id, status in rows}
