"""Running the ffmpeg and ffprobe binaries: process group, progress, cancellation, error mapping.

Every run gets its own process group (`start_new_session`), so cancelling kills ffmpeg and any
helper it started, never the worker; and ffmpeg is killed by the kernel when the thread that
started it dies (`PR_SET_PDEATHSIG`), so a worker killed outright leaves no encoder running on. ffmpeg reports progress on stdout (`-progress pipe:1`,
`key=value` lines, `out_time_us` in microseconds); the caller's thread polls `cancelled` every
POLL_S while reading it, so a cancel takes effect within POLL_S plus the kill.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from leaktrace.media.errors import MediaError

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
POLL_S = 0.2  # how often `cancelled` is asked while ffmpeg runs (the brief: at least twice a second)
KILL_WAIT_S = 5.0  # how long to wait for a killed process group's leader to be reaped
STDERR_LINES_KEPT = 20  # the tail of ffmpeg's stderr kept to explain a failure
PROBE_TIMEOUT_S = 120.0  # ffprobe reads headers (and, for the packet pass, the whole file once)

Progress = Callable[[float], None]
Cancelled = Callable[[], bool]

# Substrings of ffmpeg's error lines, in the order they are checked, and the code they mean.
_STDERR_CODES: tuple[tuple[str, str], ...] = (
    ("No space left on device", "out_of_space"),
    ("Decoder (codec", "unsupported_codec"),
    ("no decoder found", "unsupported_codec"),
    ("Unknown encoder", "unsupported_codec"),
    ("Invalid data found when processing input", "unreadable_input"),
    ("moov atom not found", "unreadable_input"),
)


def probe_json(path: Path, *extra: str) -> dict[str, Any]:
    """ffprobe's JSON for `path` (`-show_format -show_streams` plus `extra` options).

    Raises MediaError("unreadable_input") when ffprobe cannot open the file as media.
    """
    command = [FFPROBE, "-v", "error", "-of", "json", "-show_format", "-show_streams", *extra, str(path)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise MediaError("unreadable_input", f"{path.name}: reading its headers took longer than {PROBE_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise MediaError("unreadable_input", f"{path.name} is not a media file ffmpeg can read ({_last_line(done.stderr, path)})")
    return json.loads(done.stdout or b"{}")


def packet_lines(path: Path) -> list[str]:
    """`stream_index,pts_time,duration_time,size` of every packet, demuxed (not decoded) once."""
    command = [
        FFPROBE, "-v", "error", "-of", "csv=p=0",
        "-show_entries", "packet=stream_index,pts_time,duration_time,size", str(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False, text=True)
    except subprocess.TimeoutExpired:
        raise MediaError("unreadable_input", f"{path.name}: reading its packets took longer than {PROBE_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise MediaError("unreadable_input", f"{path.name} could not be read to its end ({_last_line(done.stderr.encode(), path)})")
    return done.stdout.splitlines()


def run(
    arguments: Sequence[str],
    *,
    duration_s: float | None,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
    redact: Sequence[Path] = (),
) -> None:
    """Run `ffmpeg <arguments>` to completion, reporting progress in 0..1 of `duration_s`.

    Raises MediaError: "cancelled" when `cancelled()` turns true (the process group is killed
    first), otherwise a code read from ffmpeg's error output on a non-zero exit. Paths in
    `redact` appear in messages by file name only, so a message never shows the server's folders.
    Removing partial outputs is the caller's job (it knows which files it asked for).
    """
    command = [FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-progress", "pipe:1", "-y", *arguments]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=_die_with_parent,
    )  # fmt: skip
    times: queue.Queue[float | None] = queue.Queue()
    errors: deque[bytes] = deque(maxlen=STDERR_LINES_KEPT)
    readers = [
        threading.Thread(target=_read_progress, args=(process.stdout, times), daemon=True),
        threading.Thread(target=errors.extend, args=(process.stderr,), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        _follow(process, times, duration_s=duration_s, progress=progress, cancelled=cancelled)
    except BaseException:
        kill_group(process)
        raise
    finally:
        for reader in readers:
            reader.join(timeout=KILL_WAIT_S)
    if process.returncode != 0:
        stderr = b"".join(errors)
        raise MediaError(_code_for(stderr), f"ffmpeg failed: {_last_line(stderr, *redact)}")
    if progress is not None:
        progress(1.0)


PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a child gets when its parent thread exits
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the forked child before exec: ask the kernel for SIGKILL when the parent goes away."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _follow(
    process: subprocess.Popen[bytes],
    times: queue.Queue[float | None],
    *,
    duration_s: float | None,
    progress: Progress | None,
    cancelled: Cancelled | None,
) -> None:
    """Wait for `process`, passing progress on and checking `cancelled` every POLL_S."""
    while True:
        if cancelled is not None and cancelled():
            raise MediaError("cancelled", "the job was cancelled")
        try:
            seconds = times.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if seconds is None:  # stdout closed: ffmpeg is exiting
            process.wait()
            return
        if progress is not None and duration_s:
            progress(min(max(seconds / duration_s, 0.0), 1.0))


def _read_progress(stream: Any, times: queue.Queue[float | None]) -> None:
    """Put each `out_time_us` (as seconds) on `times`, then None at end of stream."""
    for line in stream:
        key, _, value = line.partition(b"=")
        if key == b"out_time_us" and value.strip().lstrip(b"-").isdigit():
            times.put(int(value) / 1e6)
    times.put(None)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group `process` leads, and reap the leader."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=KILL_WAIT_S)
    except subprocess.TimeoutExpired:
        pass


def _code_for(stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    for needle, code in _STDERR_CODES:
        if needle in text:
            return code
    return "encode_failed"


def _last_line(stderr: bytes, *redact: Path) -> str:
    """The last non-empty line of ffmpeg's stderr, with `redact` paths shown by name only."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else "no error message"
    for path in redact:
        last = last.replace(str(path), path.name)
    return last
