"""Scratch workspaces: made 0700, removed on exit and on errors, leftovers of dead workers swept."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from leaktrace.storage import InvalidKey
from leaktrace.storage.scratch import remove_leftovers, work_root, workspace


def test_workspace_is_private_and_removed(tmp_path: Path) -> None:
    with workspace(tmp_path, "job-1") as folder:
        assert folder == tmp_path / "work" / "job-1"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        (folder / "sub").mkdir()
        (folder / "sub" / "encode.mp4").write_bytes(b"x")
    assert not folder.exists()
    with pytest.raises(RuntimeError), workspace(tmp_path, "job-2") as folder:
        (folder / "partial.mp4").write_bytes(b"x")
        raise RuntimeError("encode failed")
    assert not folder.exists()


def test_a_live_workspace_is_not_taken_over(tmp_path: Path) -> None:
    with workspace(tmp_path, "job-1"):
        with pytest.raises(FileExistsError), workspace(tmp_path, "job-1"):
            pass
        assert remove_leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["", "a/b", "..", "/abs", "x\x00"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidKey), workspace(tmp_path, name):
        pass


def test_leftovers_of_dead_workers_are_removed(tmp_path: Path) -> None:
    # A worker process that made a workspace and was killed before it could clean up.
    script = (
        "import os, sys; from pathlib import Path; from leaktrace.storage.scratch import workspace\n"
        "with workspace(Path(sys.argv[1]), 'job-dead') as f:\n"
        "    (f / 'half.mp4').write_bytes(b'x'); os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    assert (work_root(tmp_path) / "job-dead" / "half.mp4").exists()
    with workspace(tmp_path, "job-alive") as alive:
        assert remove_leftovers(tmp_path) == ["job-dead"]
        assert alive.exists()
    assert not (work_root(tmp_path) / "job-dead").exists()
    # The same name can be used again after its owner died.
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    with workspace(tmp_path, "job-dead") as again:
        assert list(again.iterdir()) == [again / ".owner"]
