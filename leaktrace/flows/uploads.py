"""Bringing a file in through the upload form: chunks in, one file out, abandoned uploads swept.

Each chunk the client POSTs is stored as its own part, `upload-parts/<upload id>/<chunk index>`,
through `Storage.writer`, so a chunk that is cut off (client gone, size limit, bad form) leaves no
part. Completing an upload checks that parts 0..N-1 are all there, then (on the queue,
`complete`) streams them in order into the upload's storage key, computing size and MD5 on the
way, records them and deletes the parts. The assembled file appears at its key only when whole.

Uploads that expire without completing are removed with their parts and file record by
`sweep_abandoned`, which runs whenever an upload is created and from the completion task.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from leaktrace.ids import now_ms
from leaktrace.storage import BlobNotFound, InvalidKey, Storage, check_key
from leaktrace.store import uploads
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput
from leaktrace.store.models import Upload

log = logging.getLogger(__name__)

PARTS_ROOT = "upload-parts"
MAX_CHUNKS = 10_000  # as many parts as an S3 multipart upload may have
# A temporary object older than this belongs to a writer that was killed: no chunk takes a day.
STALE_WRITE_S = 24 * 3600


class UploadTooLarge(Exception):
    """The upload would exceed `LEAKTRACE_MAX_UPLOAD_BYTES`."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"an upload may hold at most {limit_bytes} bytes (LEAKTRACE_MAX_UPLOAD_BYTES)")
        self.limit_bytes = limit_bytes


def parts_prefix(upload_id: str) -> str:
    """The storage prefix of an upload's parts."""
    return f"{PARTS_ROOT}/{upload_id}"


def part_key(upload_id: str, chunk: int) -> str:
    """The storage key of one chunk (zero-padded so keys sort in chunk order)."""
    return f"{parts_prefix(upload_id)}/{chunk:06d}"


# ---- creating ------------------------------------------------------------------------------------


def create_upload(
    db: Database,
    storage: Storage,
    *,
    user_id: str,
    application_id: str | None,
    pipeline_id: str,
    object_key: str,
    expires_at: int | None,
    ip: int | None,
) -> Upload:
    """Sweep abandoned uploads, then create an UPLOADING upload and its file record.

    `expires_at` is epoch ms (None: never); InvalidInput for an `object_key` that leaves the
    pipeline's folder or is not a valid storage key.
    """
    sweep_abandoned(db, storage)
    storage_key = uploads.storage_key_for(pipeline_id, object_key)
    try:
        check_key(storage_key)
    except InvalidKey as exc:
        raise InvalidInput(f"object_key: {exc}") from None
    return uploads.create(
        db, user_id=user_id, application_id=application_id, pipeline_id=pipeline_id, object_key=object_key,
        storage_key=storage_key, expires_at=expires_at, ip=ip,
    )  # fmt: skip


# ---- receiving chunks ----------------------------------------------------------------------------


def check_chunk(upload: Upload, *, chunk: int, chunks: int, now: int) -> None:
    """InvalidInput unless the upload still takes chunks and `chunk` of `chunks` is a valid index."""
    if upload.status != uploads.UPLOADING:
        raise InvalidInput(f"the upload is {upload.status} and takes no more chunks")
    if upload.expires_at is not None and upload.expires_at < now:
        raise InvalidInput("the upload has expired")
    if not 1 <= chunks <= MAX_CHUNKS:
        raise InvalidInput(f"chunks must be between 1 and {MAX_CHUNKS}")
    if not 0 <= chunk < chunks:
        raise InvalidInput(f"chunk must be between 0 and chunks - 1 ({chunks - 1})")


@dataclass
class ChunkSink:
    """Where one chunk's bytes go: a storage writer that refuses to grow past `allowance_bytes`."""

    handle: BinaryIO
    allowance_bytes: int  # what this chunk may add: the limit minus the other stored parts
    limit_bytes: int  # LEAKTRACE_MAX_UPLOAD_BYTES, for the error message
    written_bytes: int = 0

    def write(self, data: bytes) -> None:
        """Append `data`; `UploadTooLarge` (and nothing kept) once the allowance is exceeded."""
        self.written_bytes += len(data)
        if self.written_bytes > self.allowance_bytes:
            raise UploadTooLarge(self.limit_bytes)
        self.handle.write(data)


@contextlib.contextmanager
def chunk_sink(storage: Storage, *, upload: Upload, chunk: int, max_upload_bytes: int) -> Iterator[ChunkSink]:
    """Receive one chunk; its part appears only if the block exits cleanly.

    The allowance is the size limit minus the parts already stored (other than this chunk's, which
    a retried chunk replaces), so chunks sent one after another never exceed the limit in total;
    chunks sent in parallel are checked again on completion.
    """
    key = part_key(upload.id, chunk)
    stored = sum(
        info.size for other in storage.keys(parts_prefix(upload.id)) if other != key and (info := storage.stat(other))
    )
    with storage.writer(key) as handle:
        yield ChunkSink(handle, allowance_bytes=max_upload_bytes - stored, limit_bytes=max_upload_bytes)


# ---- completing ----------------------------------------------------------------------------------


def request_completion(
    db: Database, storage: Storage, *, user_id: str, upload_id: str, nb_chunks: int, max_upload_bytes: int
) -> tuple[Upload, bool]:
    """Check that parts 0..nb_chunks-1 are stored and mark the upload COMPLETING.

    Returns the upload and whether the caller must queue `complete` (False when a repeated
    request finds it already COMPLETING or COMPLETED). InvalidInput for a missing or extra part;
    `UploadTooLarge` when the parts together exceed the limit (the upload then fails).
    """
    upload = uploads.get(db, user_id=user_id, upload_id=upload_id)
    if upload.status != uploads.UPLOADING:
        return uploads.begin_completion(db, user_id=user_id, upload_id=upload_id, nb_chunks=nb_chunks), False
    if not 1 <= nb_chunks <= MAX_CHUNKS:
        raise InvalidInput(f"nb_chunks must be between 1 and {MAX_CHUNKS}")
    stored = set(storage.keys(parts_prefix(upload_id)))
    missing = [chunk for chunk in range(nb_chunks) if part_key(upload_id, chunk) not in stored]
    if missing:
        shown = ", ".join(str(chunk) for chunk in missing[:10])
        raise InvalidInput(f"{len(missing)} of {nb_chunks} chunks are missing (chunk {shown})")
    extra = len(stored) - nb_chunks
    if extra > 0:
        raise InvalidInput(f"{extra} chunk(s) beyond nb_chunks {nb_chunks} were uploaded")
    total = sum(info.size for key in stored if (info := storage.stat(key)))
    if total > max_upload_bytes:
        error = UploadTooLarge(max_upload_bytes)
        uploads.fail(db, upload_id=upload_id, message=str(error))
        storage.delete_prefix(parts_prefix(upload_id))
        raise error
    return uploads.begin_completion(db, user_id=user_id, upload_id=upload_id, nb_chunks=nb_chunks), True


def complete(db: Database, storage: Storage, *, upload_id: str) -> None:
    """Assemble a COMPLETING upload's parts into its file (the queue task).

    Streams the parts in chunk order into one storage writer, hashing as it goes; records size
    and MD5 and marks the upload COMPLETED, or FAILURE with the reason. Parts are deleted either
    way. If the upload was deleted meanwhile, the assembled file is removed again. A duplicated
    task finds the upload COMPLETED and does nothing, or, running alongside, writes the same bytes
    and cannot turn the COMPLETED upload into a FAILURE.
    """
    upload = uploads.find(db, upload_id=upload_id)
    if upload is None or upload.status != uploads.COMPLETING:
        return
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with storage.writer(upload.storage_key) as out:
            for chunk in range(upload.nb_chunks):
                for block in storage.read_range(part_key(upload_id, chunk)):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
    except (BlobNotFound, OSError) as exc:
        log.warning("upload %s could not be assembled: %s", upload_id, exc)
        reason = "a chunk disappeared" if isinstance(exc, BlobNotFound) else "the file could not be stored"
        uploads.fail(db, upload_id=upload_id, message=f"assembly failed: {reason}")
        storage.delete_prefix(parts_prefix(upload_id))
        return
    recorded = uploads.finish(db, upload_id=upload_id, size=size, md5_checksum=digest.hexdigest())
    if not recorded and uploads.find(db, upload_id=upload_id) is None:
        storage.delete(upload.storage_key)  # deleted while it was assembled: its file goes too
    storage.delete_prefix(parts_prefix(upload_id))


# ---- sweeping ------------------------------------------------------------------------------------


def sweep_abandoned(db: Database, storage: Storage, *, now: int | None = None) -> int:
    """Remove expired incomplete uploads (rows and parts), and parts no live upload owns.

    Parts are orphaned when a chunk finishes after its upload was deleted or completed, or a
    process died between recording an upload's end and deleting its parts. Returns how many
    uploads were removed. Safe to run at any time, from any process.
    """
    removed = uploads.remove_expired(db, now=now_ms() if now is None else now)
    for upload in removed:
        _delete_parts(storage, upload.upload_id)
    owners = sorted({key.split("/")[1] for key in storage.keys(PARTS_ROOT)})
    live = uploads.statuses(db, upload_ids=owners)
    for upload_id in owners:
        if live.get(upload_id) not in (uploads.UPLOADING, uploads.COMPLETING):
            _delete_parts(storage, upload_id)
    storage.discard_incomplete(older_than_s=STALE_WRITE_S)
    return len(removed)


def _delete_parts(storage: Storage, upload_id: str) -> None:
    try:
        storage.delete_prefix(parts_prefix(upload_id))
    except OSError:
        log.exception("could not delete the parts of upload %s", upload_id)
