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

import hashlib
from collections.abc import Sequence

import cv2
import numpy as np

_DOMAIN = b"leaktrace/pattern/v1\x00"

# Mask limits: the mask is normalised to mean 1 over the frame, then clipped. Busy areas hide more
# of the pattern (up to 2.5x the mean gain); flat areas get at least `floor` of it.
MASK_CEILING = 2.5
# Activity window of the mask at 720p (the design's 9x9 local standard deviation).
_ACTIVITY_WINDOW_720P = 9


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


def perceptual_mask(lumas: Sequence[np.ndarray], *, floor: float) -> np.ndarray:
    """Gain map from the local activity and luminance of the pictures a mark lives in, float32 (H, W), mean ~1.

    `lumas` are uint8 (H, W) pictures: the one the mark is added to, then samples of those that
    carry it on. Activity is the local standard deviation (9x9 at 720p), its minimum over the
    pictures, smoothed: a place is busy only if it stays busy. The mark is carried by prediction,
    so what is laid on a moving edge is left behind where the edge uncovers flat background, in
    blocks (a ghost of the plane in plane_clouds' sky, patches in sintel's, seen at 1:1). The
    activity is normalised to mean 1 and clipped to [floor, MASK_CEILING]. A luminance term
    (from the mean picture) then lowers the gain in near-black and near-white areas, where the
    pattern would clip or show as mottling.
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
    gain *= luminance_adaptation(mean_luma)
    return cv2.resize(gain, (width, height), interpolation=cv2.INTER_LINEAR)


def luminance_adaptation(luma: np.ndarray) -> np.ndarray:
    """Gain factor in [0.3, 1] from mean luma (8-bit, limited range): lower near black and white."""
    dark = np.clip((luma - 16.0) / 40.0, 0.3, 1.0)
    bright = np.clip((240.0 - luma) / 25.0, 0.3, 1.0)
    return (dark * bright).astype(np.float32)


def position_delta(noise: np.ndarray, mask: np.ndarray, *, rms: float) -> np.ndarray:
    """The luma delta added to every frame of a position: noise x mask scaled to the given RMS."""
    delta = noise * mask
    delta *= np.float32(rms / max(float(np.sqrt(np.mean(np.square(delta, dtype=np.float64)))), 1e-9))
    return delta
