"""Alignment of real clips attacked with ffmpeg (trim, frame rate, dropped frames, crop, scale,
letterbox, brightness/contrast/gamma) to a detection reference built from the unmarked clip."""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from leaktrace.autograph import align
from leaktrace.autograph.reference import LumaPrefetch, ReferenceBuilder, load_reference
from leaktrace.autograph.trace import align_leak, decode_leak

CLIP = "tears_of_steel_360p24_10s.mp4"   # 640x360, 24 fps
SECONDS = 6.0


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, clip_path) -> tuple[Path, Path, np.ndarray]:
    """(clip, folder holding a reference of its first 6 s with zero deltas, the clip's luma frames)."""
    clip = clip_path(CLIP)
    outdir = tmp_path_factory.mktemp("align") / "title"
    frames = []
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            if frame.time >= SECONDS - 1e-6:
                break
            frames.append(frame.to_ndarray(format="gray"))
    positions = [{"first_frame": f, "frame_count": min(24, len(frames) - f)} for f in range(0, len(frames), 24)]
    builder = ReferenceBuilder(outdir, width=640, height=360, fps=Fraction(24), positions=positions)
    for i, luma in enumerate(frames):
        builder.add_frame(i, luma)
    zero = np.zeros((360, 640), np.float32)
    for i in range(len(positions)):
        builder.add_position(i, zero, zero)
    builder.close()
    return clip, outdir, np.stack(frames)


def test_reference_round_trip(master: tuple[Path, Path, np.ndarray]) -> None:
    _, outdir, frames = master
    ref = load_reference(outdir)
    assert (ref.det_width, ref.det_height, ref.n_frames, ref.n_positions) == (320, 180, 144, 6)
    luma = ref.luma()
    expected = np.stack([np.asarray(align.cv2.resize(f, (320, 180), interpolation=align.cv2.INTER_AREA)) for f in frames])
    rms = float(np.sqrt(np.mean((luma.astype(np.float64) - expected) ** 2)))
    assert rms < 2.5   # the luma video is lossy (constant QP), far below the leak's own coding noise
    # decoding from the middle (a seek) yields exactly the same frames
    assert [i for i, _ in ref.iter_luma(50, 53)] == [50, 51, 52]
    assert np.array_equal(ref.luma(50, 53), luma[50:53])
    assert ref.position_of_frame()[[0, 23, 24, 143]].tolist() == [0, 0, 1, 5]


def test_reference_templates_keep_the_delta(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    delta = align.cv2.GaussianBlur(rng.standard_normal((360, 640)).astype(np.float32), (0, 0), 1.5) * 4
    builder = ReferenceBuilder(tmp_path, width=640, height=360, fps=Fraction(25), positions=[(0, 2)])
    builder.add_frame(0, np.zeros((360, 640), np.uint8))
    builder.add_frame(1, np.zeros((360, 640), np.uint8))
    builder.add_position(0, delta, -delta)
    builder.close()
    ref = load_reference(tmp_path)
    small = align.cv2.resize(delta, (320, 180), interpolation=align.cv2.INTER_AREA)
    a, b = ref.templates(0)
    assert np.corrcoef(a.ravel(), small.ravel())[0, 1] > 0.99
    assert np.corrcoef(b.ravel(), -small.ravel())[0, 1] > 0.99
    assert abs(a.std() / small.std() - 1) < 0.05


def test_trim_crop_scale_light_and_dropped_frames(master: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    clip, outdir, _ = master
    leak = tmp_path / "leak.mp4"
    # start at 1.5 s, drop every 7th frame (timestamps kept), 10 % crop per side, 480x270, +20 levels, x1.3
    _ffmpeg("-ss", "1.5", "-i", str(clip), "-t", "3.5",
            "-vf", "select='not(eq(mod(n\\,7)\\,3))',crop=512:288:64:36,scale=480:270,eq=brightness=0.08:contrast=1.3",
            "-fps_mode", "passthrough", "-c:v", "libx264", "-crf", "20", "-an", str(leak))
    ref = load_reference(outdir)
    decoded = decode_leak(leak, ref, skip_nonref=False)   # every frame, to check each one's match
    alignment, _, _ = align_leak(decoded, ref)
    assert alignment.matched, alignment.reason
    assert abs(alignment.time_map.offset - 1.5) < 0.5 / 24
    assert abs(alignment.time_map.rate - 1.0) < 0.005
    crop = alignment.crop_scale(ref, decoded.size)
    assert crop["x0"] == pytest.approx(64, abs=3) and crop["x1"] == pytest.approx(576, abs=3)
    assert crop["y0"] == pytest.approx(36, abs=3) and crop["y1"] == pytest.approx(324, abs=3)
    # every leak frame found its own master frame, across the dropped ones
    # (the select filter counts frames from the seek point, master frame 36)
    expected = np.array([36 + n for n in range(84) if n % 7 != 3])[:len(decoded.frames)]
    assert len(decoded.frames) >= 70
    assert np.mean(alignment.master_frames == expected) >= 0.95


def test_frame_rate_change_letterbox_and_gamma(master: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    clip, outdir, _ = master
    leak = tmp_path / "leak.mp4"
    _ffmpeg("-ss", "0.75", "-i", str(clip), "-t", "4",
            "-vf", "fps=30,scale=640:268,pad=640:360:0:46,eq=gamma=0.8",
            "-c:v", "libx264", "-crf", "23", "-an", str(leak))
    ref = load_reference(outdir)
    decoded = decode_leak(leak, ref)
    alignment, master_luma, first = align_leak(decoded, ref)
    assert alignment.matched, alignment.reason
    assert abs(alignment.time_map.offset - 0.75) < 0.5 / 24
    assert abs(alignment.time_map.rate - 1.0) < 0.005
    crop = alignment.crop_scale(ref, decoded.size)
    assert (crop["x0"], crop["y0"]) == pytest.approx((0, 0), abs=2)
    assert (crop["x1"], crop["y1"]) == pytest.approx((640, 360), abs=2)
    # after the tone fit the leak matches the master within a few levels
    det = (ref.det_width, ref.det_height)
    mask = align.valid_mask(alignment.geometry, alignment.box, det)
    errors = []
    for j in range(0, len(decoded.frames), 10):
        k = alignment.master_frames[j]
        warped = align.warp_to_master(decoded.frames[j], alignment.geometry, det)
        tone = align.fit_tone(warped, master_luma[k - first], mask)
        errors.append(np.sqrt(np.mean((warped - align.apply_tone(master_luma[k - first], tone))[mask] ** 2)))
    assert np.median(errors) < 4.0


def test_tone_fit_recovers_gamma_and_gain() -> None:
    rng = np.random.default_rng(0)
    master = align.cv2.GaussianBlur(rng.uniform(0, 255, (90, 160)).astype(np.float32), (0, 0), 3)
    master = np.clip((master - master.min()) * 255 / np.ptp(master), 0, 255).astype(np.uint8)
    leak = (1.3 * 255 * (master / 255.0) ** 0.8 - 10).astype(np.float32)
    mask = np.ones(master.shape, bool)
    tone = align.fit_tone(leak, master, mask, step=1)
    ok = (leak > 3) & (leak < 252)
    error = np.abs(align.apply_tone(master, tone) - leak)[ok]
    assert np.sqrt(np.mean(error ** 2)) < 0.5
    assert np.percentile(error, 99) < 1.5   # the steep start of the gamma curve, where few pixels are, is the worst


def test_a_different_clip_does_not_match(master: tuple[Path, Path, np.ndarray], clip_path, tmp_path: Path) -> None:
    _, outdir, _ = master
    leak = tmp_path / "other.mp4"
    _ffmpeg("-i", str(clip_path("caminandes_360p24_10s.mp4")), "-t", "3", "-c:v", "libx264", "-crf", "23", "-an", str(leak))
    ref = load_reference(outdir)
    alignment, _, _ = align_leak(decode_leak(leak, ref), ref)
    assert not alignment.matched
    assert "does not match this title" in alignment.reason


def test_prefetched_luma_serves_every_range_like_the_reference(master: tuple[Path, Path, np.ndarray]) -> None:
    ref = load_reference(master[1])
    prefetch = LumaPrefetch(ref, 40, 100)
    for first, stop in [(40, 100), (50, 60), (0, 144), (30, 70), (90, 144), (0, 20), (120, 200), (100, 101)]:
        assert np.array_equal(prefetch.luma(first, stop), ref.luma(first, stop)), (first, stop)
    cancelled = LumaPrefetch(ref, 0, 144)
    cancelled.cancel()
    assert np.array_equal(cancelled.luma(10, 30), ref.luma(10, 30))
