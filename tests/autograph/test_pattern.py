"""Keyed patterns and the perceptual mask: where a mark may go, and how much of it."""

import cv2
import numpy as np
import pytest

from leaktrace.autograph.pattern import (
    JND_FLAT,
    JND_SLOPE,
    keyed_noise,
    perceptual_mask,
    position_delta,
)


def _local_rms(delta: np.ndarray, block: int = 32) -> np.ndarray:
    h, w = delta.shape
    return np.sqrt(cv2.resize(np.square(delta), (w // block, h // block), interpolation=cv2.INTER_AREA))


def _picture(detail: float, *, seed: int = 1, size: tuple[int, int] = (360, 640)) -> np.ndarray:
    """Mid-grey with low-frequency texture of about `detail` levels of local deviation, uint8."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.standard_normal(size).astype(np.float32), (0, 0), 2.0)
    texture *= detail / texture.std()
    return np.clip(128 + texture, 0, 255).astype(np.uint8)


def test_a_picture_smooth_everywhere_keeps_its_mark_at_the_flat_limit():
    # The gain is relative: a picture smooth almost everywhere rates its least smooth parts busy
    # (sintel at `strong`: a local RMS of 10 levels on dark cloth of activity 0.6, blotches at 1:1).
    # The limit holds the local RMS near JND_FLAT there, whatever RMS the strength asks for.
    picture = _picture(0.0)
    picture[:, 320:] = _picture(0.8)[:, 320:]
    mask = perceptual_mask([picture], floor=0.2)
    assert mask.gain[:, 400:].mean() > 1.5              # relative: the least smooth half looks busy
    noise = keyed_noise(b"k" * 32, 0, "A", *picture.shape)
    delta = position_delta(noise, mask, rms=3.7)
    local = _local_rms(delta)
    assert local.max() < JND_FLAT + JND_SLOPE * 1.5
    assert np.sqrt(np.mean(np.square(delta))) < 0.4 * 3.7


def test_textured_content_takes_the_whole_rms():
    # Where the content's own detail is far above the mark, the limit does not bind: the delta
    # has the RMS asked for, shaped by the gain alone.
    picture = _picture(25.0)
    mask = perceptual_mask([picture], floor=0.2)
    noise = keyed_noise(b"k" * 32, 0, "A", *picture.shape)
    delta = position_delta(noise, mask, rms=2.55)
    assert np.sqrt(np.mean(np.square(delta))) == pytest.approx(2.55, rel=0.03)
    inner, shaped = delta[5:-5, 5:-5], (noise * mask.gain)[5:-5, 5:-5]   # inside the edges' taper
    np.testing.assert_allclose(inner, shaped * (inner / shaped).mean(), rtol=1e-3, atol=1e-4)


def test_the_mark_fades_to_nothing_at_the_picture_edges():
    # Motion vectors pointing outside the picture repeat its outermost pixels, so a mark there would
    # be drawn out into streaks wherever a pan brings content in.
    mask = perceptual_mask([_picture(25.0, size=(720, 1280))], floor=0.2)
    delta = position_delta(keyed_noise(b"k" * 32, 0, "A", 720, 1280), mask, rms=2.55)
    for outermost in (delta[0], delta[-1], delta[:, 0], delta[:, -1]):
        assert np.abs(outermost).max() == 0.0
    assert np.abs(delta[4]).max() > 0.5 and np.abs(delta[:, 4]).max() > 0.5   # 9 px ramp at 720p
    inner = delta[9:-9, 9:-9]
    assert np.sqrt(np.mean(np.square(inner))) == pytest.approx(2.55, rel=0.03)
