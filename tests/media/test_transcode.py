"""encode(): real ffmpeg encodes of short excerpts, checked by decoding them."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from leaktrace.media import ffmpeg
from leaktrace.media.errors import MediaError, from_os_error
from leaktrace.media.logos import LogoOverlay
from leaktrace.media.probe import probe
from leaktrace.media.transcode import EncodePlan, encode, partial_path, plan_output
from tests.media.conftest import H265, decoded, ffmpeg_children, target_format

CANCEL_LATENCY_S = 1.5  # POLL_S plus the kill, with room for a busy machine


def make_plan(path: Path, *, settings: dict, options: dict | None = None, **preset) -> EncodePlan:
    return plan_output(
        probe(path), target_format=target_format(**preset), preset_settings=None,
        output_settings=settings, input_options=options or {}, autograph=False,
    )  # fmt: skip


def frame(path: Path, *, at_s: float, size: str, pix_fmt: str = "gray") -> np.ndarray:
    """One picture of `path` at `at_s` seconds, scaled to `size` ("WxH"), as an array."""
    width, height = (int(part) for part in size.split("x"))
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-ss", f"{at_s}", "-i", str(path), "-frames:v", "1", "-vf", f"scale={width}:{height}",
         "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    channels = 3 if pix_fmt == "rgb24" else 1
    return np.frombuffer(raw, np.uint8).reshape(height, width, channels).astype(np.int16)


def test_half_size_excerpt_with_start_time_and_max_duration(clip, tmp_path: Path):
    source = clip("bbb_0-30s_720p24.webm")
    plan = make_plan(source, settings={"max_duration": 3, "video": {"width": "50%", "bitrate": 500}}, options={"start_time": 5})
    output = tmp_path / "half.mp4"
    fractions: list[float] = []
    encode(source, output, plan, progress=fractions.append)

    got = decoded(output)
    assert (got["codec"], got["profile"], got["width"], got["height"], got["fps"]) == ("h264", "High", 640, 360, 24)
    assert got["frames"] == 72  # 3 s at 24 fps
    assert got["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert 0.75 * 500 <= got["video_kbps"] <= 1.1 * 500  # ABR over 3 s undershoots a little on animation
    assert got["audio"] == {"codec": "aac", "channels": 2, "rate": 44100}
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # The excerpt starts at 5 s of the source: its first picture is that one, not its neighbours'.
    first = frame(output, at_s=0, size="160x90")
    distances = {at: np.abs(first - frame(source, at_s=at, size="160x90")).mean() for at in (4.0, 5.0, 6.0)}
    assert min(distances, key=distances.get) == 5.0 and distances[5.0] < 3
    assert not partial_path(output).exists()


def test_logo_in_the_bottom_right_corner_only(clip, tmp_path: Path):
    source = clip("tears_of_steel_360p24_10s.mp4")
    logo = tmp_path / "logo.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=red:size=100x50", "-frames:v", "1", str(logo)], check=True)
    plan = make_plan(source, settings={"max_duration": 1})
    output = tmp_path / "logo.mp4"
    encode(source, output, plan, logo=LogoOverlay(image=logo, preset="logo_30_bottom_right"))

    picture = frame(output, at_s=0.5, size="640x360", pix_fmt="rgb24")
    red = (picture[..., 0] > 180) & (picture[..., 1] < 70) & (picture[..., 2] < 70)
    # 30 % of 640 = 192 x 96 px, 2 % margin = 13 px: x 435..627, y 251..347. Look inside, off the edges.
    inside = red[255:343, 440:622]
    corners = {"top_left": red[17:105, 17:199], "top_right": red[17:105, 440:622], "bottom_left": red[255:343, 17:199]}
    assert inside.mean() > 0.98
    assert all(region.mean() < 0.02 for region in corners.values()), {k: v.mean() for k, v in corners.items()}
    assert not red[:, :420].any() and not red[:240, :].any()  # nothing red outside the logo's box
    assert red[240:, 420:].sum() == pytest.approx(192 * 96, rel=0.05)


def test_hevc_two_pass_in_matroska(clip, tmp_path: Path):
    source = clip("caminandes_360p24_10s.mp4")
    plan = make_plan(source, settings={"max_duration": 2, "video": {"width": 320, "bitrate": 300}}, codec_id=H265,
                     profile="Main", container="mkv", passes=2)  # fmt: skip
    output = tmp_path / "hevc.mkv"
    fractions: list[float] = []
    encode(source, output, plan, progress=fractions.append)
    got = decoded(output)
    assert (got["codec"], got["profile"], got["width"], got["height"], got["frames"]) == ("hevc", "Main", 320, 180, 48)
    assert 0.7 * 300 <= got["video_kbps"] <= 1.15 * 300
    assert probe(output).container == "Matroska / WebM"
    assert any(0.4 < f <= 0.5 for f in fractions) and fractions[-1] == 1.0  # pass one fills the first half
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hevc.mkv"]  # no pass logs, no partial file


def test_cancel_kills_ffmpeg_and_leaves_no_file(clip, tmp_path: Path):
    source = clip("bbb_0-30s_720p24.webm")
    plan = make_plan(source, settings={})  # the whole 30 s at 720p: many seconds of work
    output = tmp_path / "cancelled.mp4"
    requested = threading.Event()
    seen: set[int] = set()

    def progress(fraction: float) -> None:
        seen.update(ffmpeg_children())
        if fraction > 0.02:
            requested.set()

    fallback = threading.Timer(5.0, requested.set)  # in case progress is slow to come
    fallback.start()
    started = time.monotonic()
    with pytest.raises(MediaError) as raised:
        encode(source, output, plan, progress=progress, cancelled=requested.is_set)
    stopped = time.monotonic()
    fallback.cancel()
    assert raised.value.code == "cancelled"
    assert seen, "ffmpeg was never seen running"
    assert stopped - started < 15
    assert ffmpeg_children() == []
    for pid in seen:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert list(tmp_path.iterdir()) == []


def test_cancel_is_noticed_quickly(clip, tmp_path: Path):
    source = clip("bbb_0-30s_720p24.webm")
    plan = make_plan(source, settings={})
    asked_at: list[float] = []

    def cancelled() -> bool:
        if not asked_at and ffmpeg_children():
            asked_at.append(time.monotonic())
        return bool(asked_at) and time.monotonic() - asked_at[0] > 0.5

    with pytest.raises(MediaError):
        encode(source, tmp_path / "x.mp4", plan, cancelled=cancelled)
    assert time.monotonic() - asked_at[0] - 0.5 < CANCEL_LATENCY_S


def test_unreadable_input_leaves_nothing(tmp_path: Path, clip):
    plan = make_plan(clip("tears_of_steel_360p24_10s.mp4"), settings={"max_duration": 1})
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video\n" * 50)
    with pytest.raises(MediaError) as raised:
        encode(fake, tmp_path / "out.mp4", plan)
    assert raised.value.code == "unreadable_input"
    assert str(tmp_path) not in raised.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.mp4"]


def test_a_full_disk_is_out_of_space(clip):
    """ffmpeg writing to /dev/full fails with ENOSPC, as on a full disk."""
    source = clip("tears_of_steel_360p24_10s.mp4")
    with pytest.raises(MediaError) as raised:
        ffmpeg.run(["-i", str(source), "-t", "1", "-c", "copy", "-f", "mp4", "/dev/full"], duration_s=1.0)
    assert raised.value.code == "out_of_space"
    assert from_os_error(OSError(errno.ENOSPC, "No space left on device"), Path("/x/out.zip")).code == "out_of_space"
