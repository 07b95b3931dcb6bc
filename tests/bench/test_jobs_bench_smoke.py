"""Smoke test of `bench/jobs.py`: its `--quick` run starts `leaktrace serve`, uploads a 6 s master in
chunks, runs a plain and an AutoGraph job to SUCCESS through the HTTP API, and computes every ratio.

The ratios themselves are not asserted (a 6 s master on a shared machine says little about the 60 s
targets); the full run in BENCHMARKS.md does that. What is checked is that each figure was really
measured: the jobs succeeded and made the output the plain encode makes, and the ratios are those of
the reported times.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import jobs, report
from tests.bench.test_bench_smoke import engine_ready, run_quick, testdata  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow  # about 30 s: a server, two jobs, four prepares


def test_quick_run_measures_real_jobs_and_every_ratio(tmp_path: Path, testdata: Path, engine_ready: None) -> None:
    benchmarks_before = report.BENCHMARKS.read_text() if report.BENCHMARKS.exists() else None
    proc, result = run_quick("jobs", tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1 = a target missed, still measured
    master = result["master"]
    assert (master["width"], master["height"]) == (jobs.QUICK_MASTER.width, jobs.QUICK_MASTER.height)

    for kind, autograph in (("job", False), ("autograph_job", True)):
        part = result[kind]
        for job, plain in zip(part["jobs"], part["plains"], strict=True):  # one plain encode per round
            assert job["status"] == "SUCCESS"
            output = job["file"]
            assert output.get("autograph", False) is autograph
            track = output["video_tracks"][0]
            # the preset keeps the source's size below its 720p caps: the job and the plain encode agree
            assert (track["width"], track["height"]) == (plain["width"], plain["height"]) == (480, 270)
            assert output["duration"] == pytest.approx(1000 * jobs.QUICK_MASTER.seconds, abs=100)
            assert 0 < job["queued_s"] < job["seconds"] and job["server_cpu_s"] > 0
            assert plain["seconds"] > 0 and plain["cpu_s"] > 0
        # one round: the median of the rounds' ratios is that round's
        assert math.isclose(part["ratio"], part["job_s"] / part["plain_s"])
        assert math.isclose(part["cpu_ratio"], part["job_cpu_s"] / part["plain_cpu_s"])
    # the same encode both ways: the job's ABR output lands within a few per cent of the plain one's bytes
    plain_job = result["job"]["jobs"][0]
    assert plain_job["file"]["size"] == pytest.approx(result["job"]["plains"][0]["size"], rel=0.05)
    assert plain_job["ffmpeg_seen_s"] > 0, "the job's encoder was seen running under the server"
    assert result["autograph_job"]["jobs"][0]["manifest"]["prepare_seconds"] > 0

    upload = result["upload"]
    assert upload["chunks"] > 1 and upload["bytes"] > 0
    assert all(form > 0 and completion > 0 for form, completion in upload["phases"])
    assert math.isclose(upload["ratio"], upload["copy_s"] / upload["upload_s"])
    assert math.isclose(upload["upload_mb_s"], upload["bytes"] / upload["upload_s"] / 1e6)
    assert math.isfinite(result["prepare"]["cpu_ratio"]) and result["prepare"]["cpu_ratio"] > 0
    assert math.isfinite(result["workers"]["efficiency"]) and result["workers"]["efficiency"] > 0

    # the exit status is the verdict on the targets, and the table says which
    assert proc.returncode == (1 if result["failures"] else 0)
    assert "| job, one 720p H.264 output / plain ffmpeg encode |" in proc.stdout
    assert proc.stdout.count("| OK |") + proc.stdout.count("| MISS |") == 3
    # --quick without --write leaves BENCHMARKS.md alone
    assert (report.BENCHMARKS.read_text() if report.BENCHMARKS.exists() else None) == benchmarks_before
