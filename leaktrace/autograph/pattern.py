"""Keyed, perceptually masked, low-frequency luma patterns (design §4.1).

Every (title key, position, variant) gets its own pattern: Gaussian-filtered white noise whose
generator is seeded from SHAKE-256 of the key, so the patterns are reproducible from the key alone
and independent of each other (A and B are not antipodal: averaging two copies leaves both
visible, which the collusion decoder needs).

The noise is generated at a reduced resolution and upsampled, which is what keeps the per-position
cost at a few milliseconds. Its spatial scale follows the frame height (sigma = 3 px at 720p), so
most of its energy survives a downscale to 360p and a re-encode.

All arrays are float32, shape (height, width), in 8-bit luma levels unless stated otherwise.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

_DOMAIN = b"leaktrace/pattern/v1\x00"

# Mask limits: the mask is normalised to mean 1 over the frame, then clipped. Busy areas hide more
# of the pattern (up to 2.5x the mean gain); flat areas get at least `floor` of it.
MASK_CEILING = 2.5
# Activity window of the mask at 720p (the design's 9x9 local standard deviation).
_ACTIVITY_WINDOW_720P = 9
# The most the mark may be anywhere, as a local RMS in levels: JND_FLAT + JND_SLOPE x the content's
# activity. The gain is relative to the picture, so a picture smooth almost everywhere would
# otherwise put its whole RMS into its least smooth parts, which are smooth too (sintel at
# `strong`: blotches of 10 levels on dark cloth of activity 0.6, seen at 1:1).
JND_FLAT = 1.0
JND_SLOPE = 0.5


def pattern_sigma(height: int) -> float:
    """Gaussian low-pass sigma of the pattern in pixels for a frame of this height (3 px at 720p)."""
    return 3.0 * height / 720.0


def lowres_factor(height: int) -> int:
    """Integer factor by which patterns and masks are computed below full resolution.

    Chosen so the low-pass sigma stays at least 1.5 px at the reduced size: the upsampled result
    is then as smooth as one filtered at full resolution.
    """
    return max(1, int(pattern_sigma(height) // 1.5))


def keyed_noise(key: bytes, position: int, variant: str, height: int, width: int) -> np.ndarray:
    """Unit-RMS low-frequency noise for (key, position, variant), float32 (height, width)."""
    seed = hashlib.shake_256(
        _DOMAIN + key + b"\x00" + position.to_bytes(8, "little") + variant.encode("ascii")
    ).digest(32)
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(seed, "little")))
    factor = lowres_factor(height)
    small_h, small_w = -(-height // factor), -(-width // factor)
    noise = rng.standard_normal((small_h, small_w), dtype=np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=pattern_sigma(height) / factor, borderType=cv2.BORDER_REFLECT)
    full = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    full /= np.float32(np.sqrt(np.mean(np.square(full, dtype=np.float64))))
    return full


@dataclass(frozen=True)
class Mask:
    """Where a picture hides a mark: `gain`, relative, mean ~1; `limit`, the most local RMS, in levels.

    Both float32 (H, W)."""

    gain: np.ndarray
    limit: np.ndarray


def perceptual_mask(lumas: Sequence[np.ndarray], *, floor: float) -> Mask:
    """The mask of the local activity and luminance of the pictures a mark lives in.

    `lumas` are uint8 (H, W) pictures: the one the mark is added to, then samples of those that
    carry it on. Activity is the local standard deviation (9x9 at 720p), its minimum over the
    pictures, smoothed: a place is busy only if it stays busy. The mark is carried by prediction,
    so what is laid on a moving edge is left behind where the edge uncovers flat background, in
    blocks (a ghost of the plane in plane_clouds' sky, patches in sintel's, seen at 1:1). The
    gain is that activity normalised to mean 1 and clipped to [floor, MASK_CEILING]; the limit
    is JND_FLAT + JND_SLOPE x the activity. A luminance term (from the mean picture) then lowers
    both in near-black and near-white areas, where the pattern would clip or show as mottling.
    """
    height, width = lumas[0].shape
    # the mask is smoothed at twice the pattern's sigma, so half the pattern's working resolution
    # holds it (and it is computed for every marked picture, from several pictures)
    factor = 2 * lowres_factor(height)
    small_size = (-(-width // factor), -(-height // factor))
    window = max(3, int(round(_ACTIVITY_WINDOW_720P * height / 720.0 / factor)) | 1)

    activity = np.full((small_size[1], small_size[0]), np.inf, dtype=np.float32)
    mean_luma = np.zeros_like(activity)
    for luma in lumas:
        small = cv2.resize(luma, small_size, interpolation=cv2.INTER_AREA).astype(np.float32)
        local_mean = cv2.blur(small, (window, window), borderType=cv2.BORDER_REFLECT)
        local_sq = cv2.blur(small * small, (window, window), borderType=cv2.BORDER_REFLECT)
        np.minimum(activity, np.sqrt(np.maximum(local_sq - local_mean * local_mean, 0.0)), out=activity)
        mean_luma += small
    mean_luma /= len(lumas)

    activity = cv2.GaussianBlur(activity, (0, 0), sigmaX=2.0 * pattern_sigma(height) / factor)
    gain = activity / max(float(activity.mean()), 1e-3)
    np.clip(gain, floor, MASK_CEILING, out=gain)
    luminance = luminance_adaptation(mean_luma)
    limit = (JND_FLAT + JND_SLOPE * activity) * luminance

    def full(small: np.ndarray) -> np.ndarray:
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)

    return Mask(gain=full(gain * luminance), limit=full(limit) * border_taper(height, width))


@functools.lru_cache(maxsize=4)
def border_taper(height: int, width: int) -> np.ndarray:
    """Factor that takes the mark to 0 at the picture's edges, float32 (H, W), read-only (one per
    picture size, shared by every mask): 0 on the outermost pixels, rising linearly to 1 over 3
    pattern sigmas (9 px at 720p).

    Motion vectors may point outside the picture, and the decoder then repeats its outermost pixels:
    where a pan brings new content in from an edge, U's P and B pictures drew the edge's mark out
    into streaks (bbb, strong: down to -16 levels over a band of the frame, seen at 1:1).
    """
    ramp = 3.0 * pattern_sigma(height)

    def edge(n: int) -> np.ndarray:
        distance = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
        return np.minimum(distance / ramp, 1.0)

    taper = np.minimum.outer(edge(height), edge(width))
    taper.flags.writeable = False
    return taper


def luminance_adaptation(luma: np.ndarray) -> np.ndarray:
    """Gain factor in [0.3, 1] from mean luma (8-bit, limited range): lower near black and white."""
    dark = np.clip((luma - 16.0) / 40.0, 0.3, 1.0)
    bright = np.clip((240.0 - luma) / 25.0, 0.3, 1.0)
    return (dark * bright).astype(np.float32)


def position_delta(noise: np.ndarray, mask: Mask, *, rms: float) -> np.ndarray:
    """The luma delta added to a picture: noise x the mask's gain scaled to the given RMS, its local RMS
    then held to the mask's limit (so the delta's RMS may be lower)."""
    shaped_rms = float(np.sqrt(np.mean(np.square(noise * mask.gain, dtype=np.float64))))
    amplitude = mask.gain * np.float32(rms / max(shaped_rms, 1e-9))
    return noise * np.minimum(amplitude, mask.limit)
