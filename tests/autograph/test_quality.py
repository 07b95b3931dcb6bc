"""Quality measurements: PSNR, and the frame-to-frame steps that show flicker."""

import itertools
import math

import cv2
import numpy as np
import pytest

from leaktrace.autograph.assemble import variant_copy
from leaktrace.autograph.embed import encode_unmarked, prepare, source_frames
from leaktrace.autograph.package import load_title
from leaktrace.autograph.quality import (
    codec_quality,
    compare_luma,
    decode_luma,
    independent_step,
    measure_psnr,
    visibility,
)


def test_steps_separate_position_switches_from_frames_within_positions():
    unmarked = [np.full((4, 6), 100, np.uint8) for _ in range(6)]
    marks = [1, 1, 2, 5, 5, 5]                  # positions of 3 frames: the second starts at frame 3
    marked = [frame + np.uint8(mark) for frame, mark in zip(unmarked, marks, strict=True)]
    result = compare_luma(iter(marked), iter(unmarked), frames_per_position=3, ssim_every=1)
    assert result.switch_step == pytest.approx(3.0)             # 2 -> 5 at frame 3
    assert result.frame_step == pytest.approx(math.sqrt((0 + 1 + 0 + 0) / 4))
    assert result.psnr_db == pytest.approx(10 * math.log10(255**2 / np.mean(np.square(marks))))
    assert result.idr_psnr_db == pytest.approx(10 * math.log10(255**2 / ((1 + 25) / 2)))   # frames 0 and 3
    single = compare_luma(iter(marked[:3]), iter(unmarked[:3]), frames_per_position=3)
    assert single.switch_step is None and single.frame_step == pytest.approx(math.sqrt(0.5))
    # at 40 dB a pattern's RMS is 2.55 levels; two independent ones differ by sqrt(2) x that
    assert independent_step("strong") == pytest.approx(math.sqrt(2) * 255 / 100)


def test_visibility_scores_the_mark_against_the_content_block_by_block():
    flat = np.full((64, 96), 100, np.uint8)
    content = flat.copy()
    content[:, 64:] = np.tile(np.array([80, 120], np.uint8), (64, 16))   # detail of std 20 in the third column
    mark = np.zeros((64, 96), np.float32)
    mark[32:, :32] = 3.0         # in flat sky: shows at its RMS
    mark[:, 64:] = 21.0          # in detail of std 20: as strong as the content's own
    np.testing.assert_allclose(visibility(mark, content), [[0.0, 0.0, 1.0], [3.0, 0.0, 1.0]], atol=1e-5)
    marked = (content + mark).astype(np.uint8)
    result = compare_luma(iter([flat, marked]), iter([flat, content]), frames_per_position=1)
    assert result.max_visibility == pytest.approx(3.0) and result.most_visible == (1, 1, 0)


def test_source_frames_are_the_frames_prepare_encoded(prepared_title, tmp_path):
    manifest = prepared_title.manifest
    frames = list(source_frames(prepared_title.source, manifest))
    rendition = manifest["rendition"]
    assert len(frames) == manifest["n_frames"]
    assert frames[0].shape == (rendition["height"] * 3 // 2, rendition["width"]) and frames[0].dtype == np.uint8
    unmarked = encode_unmarked(prepared_title.source, tmp_path / "unmarked.mp4", manifest)
    codec = codec_quality(prepared_title.source, unmarked, manifest)
    assert codec.frames == manifest["n_frames"]
    assert codec.switch_step is not None and codec.frame_step is not None
    # frame for frame: the same comparison one frame off is far worse (aligned 43.1 dB worst frame,
    # one frame off 35.3, measured)
    height = rendition["height"]
    shifted = compare_luma(itertools.islice(decode_luma(unmarked), 1, None), (f[:height] for f in frames[:-1]),
                           frames_per_position=manifest["frames_per_position"])
    assert codec.min_frame_psnr_db > shifted.min_frame_psnr_db + 5.0


def test_the_mark_steps_at_switches_like_any_pattern_drawn_per_position(prepared_title, tmp_path):
    # An independent pattern per position changes by sqrt(2) x its RMS where positions switch; the
    # mark, strongest on each position's intra pictures, must not step much beyond that on ordinary
    # footage (2.30 against 2.28 levels here, measured), nor flicker within a position.
    quality = measure_psnr(prepared_title.source, prepared_title.outdir, unmarked_path=tmp_path / "unmarked.mp4")
    independent = independent_step(prepared_title.manifest["strength"])
    for result in quality.values():
        assert result.switch_step <= 1.2 * independent
        assert result.frame_step <= 0.5 * independent


def test_the_mark_steps_at_switches_like_any_pattern_drawn_per_position_on_a_fade(clip_path, tmp_path):
    # Where U drops the mark within a position, the other pictures must carry more of it for the
    # title to reach its PSNR, so the mark steps more where positions switch. Marking the intra
    # pictures at cuts, capping the RMS and masking each mark by the pictures that carry it keep
    # that step near an independent pattern's. caminandes fades to black: a third of one position
    # keeps no mark. Measured (strong, this key), in multiples of that step: 1.11 / 1.12; with a
    # mask of the position's frames 1.12 / 1.13; with that mask, only the IDRs marked and the RMS up
    # to 2.5x: 1.22 / 1.23.
    source = clip_path("caminandes_360p24_10s.mp4")
    prepare(source, tmp_path / "title", strength="strong", key=bytes(32))
    quality = measure_psnr(source, tmp_path / "title", unmarked_path=tmp_path / "unmarked.mp4")
    independent = independent_step("strong")
    for result in quality.values():
        assert abs(result.psnr_db - 40.0) <= 1.0
        assert result.switch_step <= 1.2 * independent


def test_a_title_too_smooth_for_its_strength_keeps_the_mark_out_of_sight(clip_path, tmp_path):
    # sintel is smooth nearly everywhere (rendered, motion-blurred, dark), with a cut every second
    # or so and flashes. At `strong` (40 dB) the mark showed at 1:1: the relative mask put blotches on
    # smooth cloth, and U's intra blocks grew it into blocky patches. The mask's limit and
    # constrained intra prediction keep it out of sight, and the title lands above its target
    # instead. Measured (360p, this key), most visible block A / B: 8.2 / 7.7 at 40.0 / 40.2 dB
    # before, 2.0 / 1.4 at 50.2 dB with both; mark step at switches 1.16 / 1.09 of an independent
    # pattern's before, 0.36 after.
    source = clip_path("sintel_1920x818p30_10s.mp4")
    manifest = prepare(source, tmp_path / "title", strength="strong", height=360, key=bytes(32))
    quality = measure_psnr(source, tmp_path / "title", unmarked_path=tmp_path / "unmarked.mp4")
    assert manifest["pattern"]["target_reached"] is False
    for result in quality.values():
        assert result.psnr_db > 41.0            # held above the target, never below it
        assert result.max_visibility < 4.0
        assert result.switch_step <= 1.25 * independent_step("strong")


def _tiles(image: np.ndarray, block: int = 16) -> np.ndarray:
    """The whole block x block tiles of an image, shape (H // block, block, W // block, block)."""
    h, w = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    return image[:h, :w].reshape(h // block, block, w // block, block)


def test_the_mark_stays_out_of_flat_sky_that_moving_content_crosses_later(clip_path, tmp_path):
    # In plane_clouds the IDR of the second position (frame 60) shows flat sky where the plane
    # passes later in the position. The mark rides U's prediction from the intra pictures, so the
    # mask must follow the pictures that carry it: a mask of the position's frames averaged put speckles
    # in the flat sky along the plane's later path, plain at 1:1 (p99 of the flat 16x16 blocks' mark
    # 2.28x the frame's RMS; with the mask of the pictures that carry the mark 0.63x, measured).
    source = clip_path("plane_clouds_720p30_6s.mp4")
    prepare(source, tmp_path / "title", strength="strong", duration=3.0, key=bytes(32))
    title = load_title(tmp_path / "title")
    unmarked = encode_unmarked(source, tmp_path / "unmarked.mp4", title.manifest)
    idr = title.manifest["positions"][1]["first_frame"]
    base = next(itertools.islice(decode_luma(unmarked), idr, None)).astype(np.float32)
    with variant_copy(title, "A") as copy, copy.open() as stream:
        mark = next(itertools.islice(decode_luma(stream), idr, None)).astype(np.float32) - base
    local_mean = cv2.blur(base, (9, 9))
    local_std = np.sqrt(np.maximum(cv2.blur(base * base, (9, 9)) - local_mean * local_mean, 0.0))
    flat = np.max(_tiles(local_std), axis=(1, 3)) < 2.0
    assert flat.mean() > 0.1
    block_rms = np.sqrt(np.mean(np.square(_tiles(mark)), axis=(1, 3)))
    assert np.percentile(block_rms[flat], 99) < 1.2 * np.sqrt(np.mean(np.square(mark)))
