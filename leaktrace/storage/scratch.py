"""Local working folders for long work (a job's encodes, a backtrace's decoded frames).

`workspace(data_dir, name)` makes `<data dir>/work/<name>/` (0700) and removes it when the block
ends, also on exceptions. Each workspace records its owner (host name and process id) in
`.owner`, so `remove_leftovers` can tell the folders of workers that died (SIGKILL, power loss)
from those of workers still running, and remove only the former.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from leaktrace.storage.base import InvalidKey, check_key

FOLDER_MODE = 0o700
OWNER_FILE = ".owner"
# A folder without an owner record is being set up, or its owner died during set-up: only an old
# one counts as a leftover.
UNOWNED_GRACE_S = 3600


def work_root(data_dir: Path) -> Path:
    """The folder that holds every workspace of this data dir."""
    return data_dir / "work"


@contextlib.contextmanager
def workspace(data_dir: Path, name: str) -> Iterator[Path]:
    """A fresh folder `<data dir>/work/<name>/` for the duration of the block.

    `name` is one path segment (e.g. `job-<id>-<attempt>`). A leftover of a dead worker with the
    same name is replaced; a folder a live process owns raises `FileExistsError`.
    """
    if "/" in check_key(name):
        raise InvalidKey("a workspace name is a single path segment")
    root = work_root(data_dir)
    root.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    folder = root / name
    if folder.exists():
        if _owner_alive(folder):
            raise FileExistsError(f"workspace {name!r} is in use by a running process")
        shutil.rmtree(folder)
    folder.mkdir(mode=FOLDER_MODE)
    os.chmod(folder, FOLDER_MODE)
    try:
        (folder / OWNER_FILE).write_text(_owner_record())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_leftovers(data_dir: Path) -> list[str]:
    """Remove the workspaces of processes that no longer run on this host; returns their names.

    Workspaces of other hosts (a shared data dir) are left to those hosts.
    """
    root = work_root(data_dir)
    if not root.is_dir():
        return []
    removed = []
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or _owner_alive(folder):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def _owner_record() -> str:
    return f"{socket.gethostname()} {os.getpid()}\n"


def _owner_alive(folder: Path) -> bool:
    """True unless the folder's owner is known to be gone (or it is an old folder with no owner)."""
    try:
        host, raw_pid = (folder / OWNER_FILE).read_text().split()
        pid = int(raw_pid)
    except (FileNotFoundError, ValueError):
        return time.time() - folder.stat().st_mtime < UNOWNED_GRACE_S
    if host != socket.gethostname():
        return True
    return pid > 0 and _process_running(pid)


def _process_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True
