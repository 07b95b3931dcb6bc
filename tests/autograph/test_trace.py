"""`trace()` and `leaktrace autograph trace` end to end: a prepared title long enough for a proven
accusation, a leaked copy, and the cases that must accuse nobody (unmarked copy, another clip, noise)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leaktrace.autograph.assemble import write_copy
from leaktrace.autograph.cli import app
from leaktrace.autograph.code import codeword
from leaktrace.autograph.trace import trace

TAGS = ["alice", "bob", "carol"]
KEY = bytes(range(100, 132))


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@dataclass(frozen=True)
class LongTitle:
    outdir: Path
    source: Path
    leak: Path      # alice's copy, re-encoded at CRF 28 and trimmed


@pytest.fixture(scope="module")
def long_title(tmp_path_factory: pytest.TempPathFactory, clip_path) -> LongTitle:
    """45 s of real footage (three clips) at 480x270, 24 fps, 1 s positions: 45 positions."""
    from leaktrace.autograph.embed import prepare

    work = tmp_path_factory.mktemp("trace")
    source = work / "source.mp4"
    clips = [clip_path("bbb_0-30s_720p24.webm"), clip_path("caminandes_360p24_10s.mp4"),
             clip_path("tears_of_steel_360p24_10s.mp4")]
    inputs = [arg for c in clips for arg in ("-i", str(c))]
    scaled = ";".join(f"[{i}:v]scale=480:270,setsar=1,fps=24[v{i}]" for i in range(3))
    _ffmpeg(*inputs, "-filter_complex", f"{scaled};[v0][v1][v2]concat=n=3:v=1[v]", "-map", "[v]",
            "-t", "45", "-c:v", "libx264", "-crf", "16", "-preset", "veryfast", str(source))
    outdir = work / "title"
    prepare(source, outdir, position_seconds=1.0, key=KEY)
    copy = work / "alice.mp4"
    write_copy(outdir, "alice", copy)
    leak = work / "leak.mp4"
    _ffmpeg("-ss", "0.5", "-i", str(copy), "-c:v", "libx264", "-crf", "28", "-an", str(leak))
    return LongTitle(outdir, source, leak)


def test_the_leaker_is_accused_and_nobody_else(long_title: LongTitle) -> None:
    report = trace(long_title.leak, long_title.outdir, TAGS, simulate_tags=1000)
    assert [a.tag for a in report.verdict.accused] == ["alice"]
    accused = report.verdict.accused[0]
    assert accused.bound <= 1e-9 / (len(TAGS) + 1000)
    assert report.verdict.runner_up.tag != "alice"
    assert report.alignment.time_map.offset == pytest.approx(0.5, abs=0.5 / 24)
    assert len(report.detection.observed) >= 42


def test_master_prefetched_during_the_decode_changes_no_observation(long_title: LongTitle, monkeypatch) -> None:
    from leaktrace.autograph import trace as tracing
    from leaktrace.autograph.reference import load_reference

    ref = load_reference(long_title.outdir)
    started = []
    prefetch_master = tracing.prefetch_master
    monkeypatch.setattr(tracing, "prefetch_master", lambda *a: started.append(prefetch_master(*a)) or started[-1])
    monkeypatch.setattr(tracing, "HEAD_SECONDS", 10.0)
    _, with_prefetch, detected, _ = tracing.observe(long_title.leak, ref)
    assert len(started) == 1 and started[0] is not None
    assert started[0].first <= with_prefetch.master_frames[with_prefetch.master_frames >= 0].min()
    monkeypatch.setattr(tracing, "HEAD_SECONDS", 1e9)
    _, without, reference_detection, _ = tracing.observe(long_title.leak, ref)
    assert len(started) == 1
    assert np.array_equal(with_prefetch.master_frames, without.master_frames)
    np.testing.assert_array_equal(detected.z, reference_detection.z)


def test_unmarked_copy_accuses_nobody(long_title: LongTitle, tmp_path: Path) -> None:
    leak = tmp_path / "unmarked.mp4"
    _ffmpeg("-ss", "10", "-i", str(long_title.source), "-t", "20", "-c:v", "libx264", "-crf", "23", "-preset", "ultrafast",
            str(leak))
    report = trace(leak, long_title.outdir, TAGS, simulate_tags=1000)
    assert report.verdict is not None and report.verdict.accused == []
    assert report.alignment.matched
    assert "no position carries a readable mark" in report.reason


def test_another_clip_accuses_nobody(long_title: LongTitle, clip_path, tmp_path: Path) -> None:
    leak = tmp_path / "other.mp4"
    _ffmpeg("-i", str(clip_path("squirrel_720p25_10s.mp4")), "-t", "6", "-vf", "scale=480:270", "-c:v", "libx264",
            "-crf", "23", "-preset", "ultrafast", "-an", str(leak))
    report = trace(leak, long_title.outdir, TAGS)
    assert report.verdict is None
    assert report.reason.startswith("the leak does not match this title")


def test_noise_accuses_nobody(long_title: LongTitle, tmp_path: Path) -> None:
    leak = tmp_path / "noise.mp4"
    _ffmpeg("-f", "lavfi", "-i", "nullsrc=s=480x270:d=6:r=24,geq=lum='random(1)*255':cb=128:cr=128",
            "-c:v", "libx264", "-crf", "23", "-preset", "ultrafast", str(leak))
    report = trace(leak, long_title.outdir, TAGS)
    assert report.verdict is None
    assert report.reason.startswith("the leak does not match this title")


def test_cli_json(long_title: LongTitle) -> None:
    result = CliRunner().invoke(app, ["trace", str(long_title.leak), "--master", str(long_title.outdir),
                                      "--tags", ",".join(TAGS), "--simulate-tags", "100", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [a["tag"] for a in out["accused"]] == ["alice"]
    assert set(out["accused"][0]) >= {"tag", "score", "bound", "log10_bound"}
    assert out["accused"][0]["log10_bound"] < -9
    assert out["positions_observed"] >= 42
    assert out["runner_up"]["tag"] != "alice"
    assert "accused" in out["reason"]
    # per position: what was read, which the benchmark and the service keep
    alice = codeword(KEY, "alice", 64)   # a longer codeword starts with the same bits
    names = {0: "A", 1: "B"}
    assert len(out["positions"]) >= 42
    # the mark rides on each position's intra pictures and fades where the encode turns to intra
    # blocks in P pictures: a position such as a fade from black or flashes may read too faint and
    # be erased, never misread
    read = [entry for entry in out["positions"] if entry["symbol"] != "erased"]
    assert len(read) >= len(out["positions"]) - 2
    for entry in out["positions"]:
        assert set(entry) >= {"position", "zA", "zB", "symbol", "frames"}
    for entry in read:
        assert entry["symbol"] == names[int(alice[entry["position"]])]


def test_cli_needs_candidates(long_title: LongTitle) -> None:
    result = CliRunner().invoke(app, ["trace", str(long_title.leak), "--master", str(long_title.outdir)])
    assert result.exit_code == 2


def test_a_title_held_above_its_target_is_still_traced(clip_path, tmp_path: Path) -> None:
    # sintel is too smooth for `medium`: the mask's limit holds it near 50 dB instead of 44, a
    # weaker mark rather than a visible one. The weaker mark must still name the leaker. Measured
    # (this key, 50 s at 360p, 1 s positions): 50.3 dB; through 270p at CRF 30, 47 of 50 positions
    # read, z 13 at the median, bound 10^-13.8.
    from leaktrace.autograph.embed import prepare

    small = tmp_path / "sintel-360p.mp4"
    _ffmpeg("-i", str(clip_path("sintel_1920x818p30_10s.mp4")), "-vf", "scale=-2:360", "-an", "-c:v", "libx264",
            "-crf", "16", "-preset", "veryfast", str(small))
    source = tmp_path / "source.mp4"
    _ffmpeg("-stream_loop", "4", "-i", str(small), "-c", "copy", str(source))     # 50 s
    outdir = tmp_path / "title"
    manifest = prepare(source, outdir, strength="medium", position_seconds=1.0, key=KEY)
    assert manifest["pattern"]["target_reached"] is False
    assert min(manifest["pattern"]["measured_psnr_db"].values()) > 47.0
    copy = tmp_path / "bob.mp4"
    write_copy(outdir, "bob", copy)
    leak = tmp_path / "leak.mp4"
    _ffmpeg("-ss", "0.5", "-i", str(copy), "-vf", "scale=-2:270", "-c:v", "libx264", "-crf", "30", "-an", str(leak))
    report = trace(leak, outdir, TAGS)
    assert [a.tag for a in report.verdict.accused] == ["bob"]
    assert report.verdict.accused[0].bound <= 1e-9 / len(TAGS)
    bob = codeword(KEY, "bob", len(manifest["positions"]))
    read = report.detection.observed
    assert len(read) >= 35
    np.testing.assert_array_equal(report.detection.symbols[read], bob[read])    # erased at worst, never misread
