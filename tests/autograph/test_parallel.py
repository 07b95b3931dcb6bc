"""prepare() in chunks on worker processes: the same bytes whatever the number of workers, prompt
cancellation, and the same position grid for every rendition of a title."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from leaktrace.autograph.embed import PrepareCancelled, PrepareError, prepare
from leaktrace.autograph.plan import plan_chunks, plan_positions

CLIP = "caminandes_360p24_10s.mp4"
# 6 s at 1 s positions in chunks of 2 s: three chunks, so three workers each get one
SMALL = {"height": 144, "duration": 6.0, "position_seconds": 1.0, "chunk_seconds": 2.0, "key": bytes(range(32))}
TIMING_FIELDS = ("prepare_seconds", "worker_cpu_seconds")


def _folder_bytes(outdir: Path) -> dict[str, bytes]:
    """Every file of a prepared title by relative path; the manifest without its timing fields."""
    files = {str(p.relative_to(outdir)): p.read_bytes() for p in sorted(outdir.rglob("*")) if p.is_file()}
    manifest = json.loads(files.pop("manifest.json"))
    for name in TIMING_FIELDS:
        manifest.pop(name)
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


def _engine_workers() -> set[int]:
    """Pids of the worker processes this process has running (children of its fork server)."""
    def parent(pid: str) -> int:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return -1

    servers = {pid for pid in os.listdir("/proc") if pid.isdigit() and parent(pid) == os.getpid()
               and b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()}
    return {int(pid) for pid in os.listdir("/proc") if pid.isdigit() and str(parent(pid)) in servers}


def test_the_chunk_plan_depends_on_the_title_only():
    positions = plan_positions(150, 25, 25)
    chunks = plan_chunks(positions, position_duration_s=1.0, chunk_seconds=2.0)
    assert [[p["index"] for p in c.positions] for c in chunks] == [[0, 1], [2, 3], [4, 5]]
    assert [(c.first_frame, c.frame_count) for c in chunks] == [(0, 50), (50, 50), (100, 50)]


def test_one_two_and_three_workers_write_the_same_bytes(clip_path, tmp_path):
    folders = {}
    for workers in (1, 2, 3):
        manifest = prepare(clip_path(CLIP), tmp_path / f"w{workers}", workers=workers, **SMALL)
        assert manifest["chunks"] == [[0, 2], [2, 2], [4, 2]]
        folders[workers] = _folder_bytes(tmp_path / f"w{workers}")
    assert sorted(folders[1]) == ["A.m4s", "B.m4s", "index.json", "init.mp4", "key.json", "manifest.json",
                                  "reference/fingerprints.npy", "reference/luma.mkv", "reference/meta.json",
                                  "reference/template_scales.npy", "reference/templates.npy"]
    for workers in (2, 3):
        for name, data in folders[1].items():
            assert folders[workers][name] == data, (workers, name)


def test_cancelling_stops_the_workers_and_leaves_an_empty_folder(clip_path, tmp_path):
    done = []
    outdir = tmp_path / "title"
    with pytest.raises(PrepareCancelled) as raised:
        prepare(clip_path(CLIP), outdir, workers=2, progress=lambda d, total: done.append(d),
                cancelled=lambda: bool(done), **SMALL)
    assert isinstance(raised.value, PrepareError)
    assert done and done[-1] < 144          # it stopped after the first chunk came back
    assert outdir.is_dir() and list(outdir.iterdir()) == []
    assert _engine_workers() == set()
    # inline (one worker) it stops before the next position
    positions_seen = []
    with pytest.raises(PrepareCancelled):
        prepare(clip_path(CLIP), outdir, workers=1, progress=lambda d, total: positions_seen.append(d),
                cancelled=lambda: len(positions_seen) >= 1, **SMALL)
    assert positions_seen == [24] and list(outdir.iterdir()) == []


def test_renditions_of_a_title_share_its_position_grid(clip_path, tmp_path):
    grids = []
    for height in (144, 96):
        manifest = prepare(clip_path(CLIP), tmp_path / f"h{height}", height=height, duration=3.0, position_seconds=1.0,
                           key=bytes(32), workers=1)
        grids.append((manifest["frames_per_position"], manifest["rendition"]["fps"],
                      [(p["first_frame"], p["frame_count"], p["start_s"], p["end_s"]) for p in manifest["positions"]]))
    assert grids[0] == grids[1] and len(grids[0][2]) == 3


def test_bad_worker_counts_are_refused(clip_path, tmp_path):
    with pytest.raises(PrepareError, match="workers"):
        prepare(clip_path(CLIP), tmp_path / "title", workers=0, duration=1.0)
