"""Why a job failed: the documented table of `error_code` / `error_msg` values (docs/api-decisions.md).

Every failure a job can end with is one `Failure` here, so users can act on the code and the
documentation cannot drift from what is reported. Codes are in the jobs family (`0x005…`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One kind of job failure: its code and the sentence that starts its message."""

    code: str
    summary: str


INPUT_NOT_FOUND = Failure("0x0050010", "Input file not found")
UNREADABLE_INPUT = Failure("0x0050011", "Input is not a readable media file")
UNSUPPORTED_CODEC = Failure("0x0050012", "Unsupported codec")
FETCH_FAILED = Failure("0x0050013", "Fetching a file failed")
REFUSED_ADDRESS = Failure("0x0050014", "Refused to fetch from an internal address")
TRANSCODE_FAILED = Failure("0x0050015", "Failed to transcode the file")
OUT_OF_SPACE = Failure("0x0050016", "Out of storage space")
CANCELLED = Failure("0x0050017", "Cancelled")
WORKER_LOST = Failure("0x0050018", "The worker running the job stopped")
AUTOGRAPH_FAILED = Failure("0x0050019", "AutoGraph preparation failed")
INVALID_SETTINGS = Failure("0x0050020", "Invalid job settings")
INTERNAL = Failure("0x0050021", "Internal error while processing")

TABLE = (
    INPUT_NOT_FOUND, UNREADABLE_INPUT, UNSUPPORTED_CODEC, FETCH_FAILED, REFUSED_ADDRESS, TRANSCODE_FAILED,
    OUT_OF_SPACE, CANCELLED, WORKER_LOST, AUTOGRAPH_FAILED, INVALID_SETTINGS, INTERNAL,
)  # fmt: skip


class JobFailed(Exception):
    """Raised inside a flow to end the job with `failure` and a detail the user can act on."""

    def __init__(self, failure: Failure, detail: str = "") -> None:
        self.failure = failure
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.failure.summary}: {self.detail}" if self.detail else self.failure.summary
