"""The one error media functions raise, with a code from the job error table.

The job flow copies `code` into the job's `error_code` and `message` into `error_msg`, so a message
says what a user can act on (which file, which stream, which setting) and never carries a URI with
credentials or a server path outside the job's own scratch folder.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Literal

ErrorCode = Literal["unreadable_input", "unsupported_codec", "encode_failed", "cancelled", "out_of_space"]
ERROR_CODES: tuple[ErrorCode, ...] = ("unreadable_input", "unsupported_codec", "encode_failed", "cancelled", "out_of_space")


class MediaError(Exception):
    """A media operation failed; `code` is one of ERROR_CODES, `message` is safe to show.

    - unreadable_input: not media, corrupt or truncated, or no audio/video stream;
    - unsupported_codec: a stream no decoder handles, or a preset codec we cannot encode;
    - encode_failed: ffmpeg failed for another reason (its last error line is in the message);
    - cancelled: the caller asked to stop; the partial output was removed;
    - out_of_space: the disk filled up while writing (ENOSPC).
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown media error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"MediaError({self.code!r}, {self.message!r})"


def from_os_error(error: OSError, path: Path) -> MediaError:
    """The MediaError for a file system error while writing `path` (named by file name only)."""
    if error.errno == errno.ENOSPC:
        return MediaError("out_of_space", f"no space left on the device while writing {path.name}")
    return MediaError("encode_failed", f"could not write {path.name}: {error.strerror or error}")
