"""Smoke tests of the benchmarks: each bench script's `--quick` run, checked on what it measured.

The full runs (minutes to an hour) write BENCHMARKS.md; here every script runs on tiny inputs and
the tests read its JSON output: a tag accused, ratios computed, table rows present. The attack
machinery and the report writer are checked directly on small real encodes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import engine, media, peers, report

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_quick(module: str, tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `python -m bench.<module> --quick --json-out ...` from the repo root; return it and its JSON."""
    out = tmp_path / f"{module}.json"
    cmd = [sys.executable, "-m", f"bench.{module}", "--quick", "--json-out", str(out), *extra]
    # Own session, so a timeout ends the script's ffmpeg and leaktrace children too.
    with subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            raise
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    assert out.exists(), f"bench.{module} wrote no results (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def testdata() -> Path:
    if not media.TESTDATA.is_dir():
        pytest.skip(f"shared test clips missing at {media.TESTDATA}")
    return media.TESTDATA


@pytest.fixture(scope="module")
def engine_ready() -> None:
    missing = engine.missing_commands()
    if missing:
        pytest.skip(f"`leaktrace autograph {'|'.join(missing)}` not available yet")


# ------------------------------------------------------------------------------------------ report


def test_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    table = report.markdown_table(["attack", "z"], [["H.264 CRF 23", 41.5], ["a|b", 2]])
    assert table.splitlines()[3] == "| a\\|b | 2 |"
    report.write_section("speed", title="Speed", body=table, command="cmd one", path=path)
    report.write_section("robustness", title="Robustness", body="first", command="cmd two", path=path)
    report.write_section("speed", title="Speed", body="| new |", command="cmd three", path=path)
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert text.count("<!-- bench:speed:start -->") == 1
    assert "cmd one" not in text and "cmd three" in text and "| new |" in text
    assert text.index("bench:speed:start") < text.index("bench:robustness:start")  # kept in place
    machine = report.machine_description()
    assert set(machine) == {"CPU", "cores", "RAM", "OS", "Python", "ffmpeg", "PyAV"}
    assert int(machine["cores"]) >= 1 and "GiB" in machine["RAM"]


# ------------------------------------------------------------------------------------------ attacks


def _solid_clip(path: Path, colour: str, seconds: float) -> Path:
    cmd = [media.FFMPEG, "-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
           "-i", f"color=c={colour}:s=64x64:r=25:d={seconds}", "-c:v", "libx264", "-qp", "0",
           "-pix_fmt", "yuv420p", str(path)]
    media.run(cmd)
    return path


def test_mixing_alternates_whole_segments_and_averaging_takes_the_mean(tmp_path: Path) -> None:
    black = _solid_clip(tmp_path / "black.mp4", "black", 4.0)
    white = _solid_clip(tmp_path / "white.mp4", "white", 4.0)
    lossless = ("-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p")
    mix = media.Attack("mix", codec=lossless, copies=2, combine="mix", segment_seconds=(1.0, 1.5, 1.5))
    leak, _ = media.apply_attack(mix, [black, white], tmp_path / "mix")
    levels = [float(f.mean()) for f in media.read_frames(leak, gray=True)]
    assert len(levels) == 100
    # 0-1 s from the first copy, 1-2.5 s from the second, then the first again.
    assert max(levels[:25]) < 20 and min(levels[25:62]) > 230 and max(levels[63:]) < 20
    average = media.Attack("avg", codec=lossless, copies=2, combine="average")
    leak, _ = media.apply_attack(average, [black, white], tmp_path / "avg")
    levels = [float(f.mean()) for f in media.read_frames(leak, gray=True)]
    assert len(levels) == 100 and all(120 < v < 140 for v in levels)


def test_the_suite_holds_every_attack_the_issue_lists() -> None:
    names = [a.name for a in media.attack_suite()] + [a.name for a in media.collusion_suite(184.0)]
    for expected in ("H.264 CRF 23", "H.264 CRF 30", "H.264 CRF 35", "H.265 CRF 32", "VP9", "352p", "360p",
                     "crop 10 %", "brightness +20", "gamma 0.8", "25 -> 30 fps", "average of 2",
                     "mix of 2", "mix of 3"):
        assert any(expected in name for name in names), expected
    segments = media.mixing_segments(184.0, seed=3)
    assert sum(segments) >= 184.0 and all(10.0 <= s < 20.0 for s in segments)


def test_a_master_longer_than_the_clips_repeats_them_flipped_never_verbatim(tmp_path: Path, testdata: Path) -> None:
    spec = media.MasterSpec(width=96, height=54, fps=25, seconds=14.0, crf=10, clips=("plane_clouds_720p30_6s.mp4",))
    assert media.master_passes(spec) == 3  # 5.9 s of clips: as shot, mirrored, upside down
    master = tmp_path / "master.mp4"
    media.run(media.master_command(spec, master))
    assert abs(media.probe(master).duration - 14.0) < 0.1
    clip_seconds = media.probe(testdata / spec.clips[0]).duration
    first, mirrored, flipped = (f.astype(np.float64) for f in media.read_frames(
        master, times=[1.0, clip_seconds + 1.0, 2 * clip_seconds + 1.0], gray=True))
    # Each later pass shows the same picture flipped, so it differs from the first pass as it is.
    for later, undo in ((mirrored, first[:, ::-1]), (flipped, first[::-1, :])):
        assert np.abs(later - undo).mean() < 0.2 * np.abs(later - first).mean()


def test_collusion_runs_on_a_title_with_enough_positions_for_mixing_of_three(testdata: Path) -> None:
    from bench import robustness

    config = robustness.full_config()
    title = config.collusion_profile
    # 10^6 candidates: mixing of three needs ~360 positions of 1 s (`python -m bench.scoring --plan`).
    assert title.position_seconds == 1.0 and title.master.seconds >= 360
    assert {a.copies for a in config.collusion} == {2, 3}
    assert all(sum(a.segment_seconds) >= title.master.seconds for a in config.collusion if a.combine == "mix")
    # The single-leaker master stays the 184 s one, built as before (as shot, then mirrored).
    assert config.master.seconds == 184.0 and media.master_passes(config.master) == 2
    groups = robustness.collusion_colluders(config)
    assert [len(g) for g in groups] == [2, 2, 3] and len({t for g in groups for t in g}) == 7


def test_a_merged_report_keeps_the_plan_and_sets_aside_an_earlier_plan_s_cases() -> None:
    from bench.robustness import Case, merge_cases

    plan = [Case("single", "2 s", "CRF 23", ["v0"], error="not run: planned"),
            Case("collusion", "long 1 s", "mix", ["v1", "v2"], error="not run: planned")]
    earlier = [Case("collusion", "2 s", "mix", ["v3", "v4"], ok=False),  # the old collusion title
               Case("single", "2 s", "CRF 23", ["v0"], error="not run: time budget exhausted")]
    later = [Case("single", "2 s", "CRF 23", ["v0"], ok=True),
             Case("collusion", "long 1 s", "mix", ["v1", "v2"], ok=True)]
    merged, outside = merge_cases(plan, [earlier, later])
    assert [(c.kind, c.profile, c.ok) for c in merged] == [("single", "2 s", True), ("collusion", "long 1 s", True)]
    assert [(c.profile, c.attack) for c in outside] == [("2 s", "mix")]


# ------------------------------------------------------------------------------------------ scripts


def test_robustness_quick_accuses_the_leaker_and_no_innocent(tmp_path: Path, testdata: Path,
                                                              engine_ready: None) -> None:
    proc, result = run_quick("robustness", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cases = result["cases"]
    single = [c for c in cases if c["kind"] == "single"]
    assert single and all(c["ok"] for c in single)
    assert single[0]["accused"][0]["tag"] == single[0]["true_tags"][0]
    assert single[0]["accused"][0]["log10_bound"] < -12  # 1e-9 / (1000 simulated + 3 real)
    assert single[0]["positions_observed"] > 30
    null = [c for c in cases if c["kind"] == "null"]
    assert len(null) == 2 and all(c["accused"] == [] and not c["error"] for c in null)
    assert result["failures"] == []
    assert any(row[0].startswith("marked leak") for row in result["null_distribution"])
    assert "| single |" in proc.stdout and "H.264 CRF 30" in proc.stdout
    if peers.available()[0]:
        methods = result["peer"]["methods"]
        assert set(methods) == {"dwtDctSvd", "rivaGan"}
        for stats in methods.values():
            accuracy, _ = stats["attacks"]["no attack (distribution encode)"]
            assert 0.0 <= accuracy <= 1.0 and stats["psnr_y"] > 35


def test_speed_quick_computes_every_ratio(tmp_path: Path, testdata: Path, engine_ready: None) -> None:
    proc, result = run_quick("speed", tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1 = a target missed, still measured
    for part in ("prepare", "copy", "trace"):
        ratio = result[part]["ratio"]
        assert math.isfinite(ratio) and ratio > 0, part
    assert result["trace"]["accused"] == [result["trace"]["true_tag"]]
    assert result["scoring"]["accused"] == [result["scoring"]["leaker"]]
    assert "| prepare / plain x264 encode |" in proc.stdout


def test_imperceptibility_quick_measures_each_strength_and_saves_stills(tmp_path: Path, testdata: Path) -> None:
    proc, result = run_quick("imperceptibility", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]  # 1 = a strength put more mark than it asks for
    rows = {r["strength"]: r for r in result["results"]}
    assert set(rows) == {"light", "medium", "strong"}
    # Each level is within 1 dB of its target or held above it by the visibility limit; stronger
    # marks cost more PSNR until that limit holds them; every level is in a plausible band.
    assert all(r["status"] in ("ok", "held: limit", "held: fades") for r in rows.values())
    assert all((r["status"] == "ok") == r["within"] for r in rows.values())
    assert all(35 < r[v]["idr_psnr_db"] < 55 for r in rows.values() for v in "AB")
    assert rows["light"]["A"]["psnr_db"] > rows["medium"]["A"]["psnr_db"] >= rows["strong"]["A"]["psnr_db"] - 0.3
    assert all(35 < r["A"]["psnr_db"] < 55 and 0.9 < r["A"]["ssim"] <= 1.0 for r in rows.values())
    stills = [Path(p) for p in result["stills"]]
    assert len(stills) == 7 and all(p.stat().st_size > 1000 for p in stills)
    # where the mark shows most: a score per strength, and a 1:1 crop at medium and strong (2 s: no switch)
    assert all(r["A"]["max_visibility"] > 0 for r in rows.values())
    spots = [Path(p) for p in result["spots"]]
    assert [p.name.split("_spot_")[0].rsplit("_", 1)[1] for p in spots] == ["medium", "strong"]
    assert all(p.stat().st_size > 1000 for p in spots)
    assert "| plane_clouds_720p30_6s.mp4 | 1280x720 | medium |" in proc.stdout


def test_peer_shim_runs_invisible_watermark_without_torch() -> None:
    ok, why = peers.available()
    if not ok:
        pytest.skip(why)
    frame = np.random.default_rng(1).integers(0, 256, (256, 320, 3), dtype=np.uint8)
    frame = np.ascontiguousarray(np.repeat(np.repeat(frame[::8, ::8], 8, 0), 8, 1)[:256, :320])
    bits = peers.payload()
    marked = peers.embed(frame, bits, "dwtDctSvd")
    assert marked.shape == frame.shape and (peers.extract(marked, "dwtDctSvd") == bits).mean() > 0.9
