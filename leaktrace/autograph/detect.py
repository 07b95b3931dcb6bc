"""Per-position soft decisions (zA, zB) and symbols A / B / both / erased.

For position i the aligned residuals r_f = L_f - T_f(O_f) of its interior frames are averaged
(per pixel, over the frames where the pixel is visible) into R_i on the detection grid. A mild
high-pass removes what is left of the picture (slow tone and alignment errors), then R_i is
correlated with the position's A and B templates. The same correlation with circularly shifted copies
of the templates (same spectrum and texture, wrong place; thousands of them through one FFT) gives a
per-position null, so

    z_v = (<R_i, T_v> - mean(decoys)) / std(decoys)        for v in {A, B}

reads as "standard deviations above chance". With independent A and B patterns a single copy gives
one large z and one near 0; the pixel average of an A copy and a B copy gives two half-size ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

SYMBOL_A, SYMBOL_B, SYMBOL_BOTH, SYMBOL_ERASED = 0, 1, 2, -1
Z_PRESENT = 5.0      # a variant counts as present at or above this z
Z_BOTH = 6.0         # both variants present: the smaller z must reach this...
BOTH_RATIO = 0.25    # ...and be at least this fraction of the larger one
HIGHPASS_SIGMA = 8.0  # detection pixels
# Decoy shifts in detection pixels: beyond the pattern's correlation length (~2 px), every 3rd shift.
DECOY_MIN_SHIFT = 8
DECOY_STEP = 3


def highpass(image: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """float32: image minus its weight-normalised Gaussian blur; zero where weight is 0."""
    blur_w = cv2.GaussianBlur(weight, (0, 0), HIGHPASS_SIGMA)
    blur_i = cv2.GaussianBlur(image * weight, (0, 0), HIGHPASS_SIGMA)
    local = blur_i / np.maximum(blur_w, 1e-6)
    return np.where(weight > 0, image - local, 0).astype(np.float32)


def position_z(residual: np.ndarray, weight: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """float32 (2,): (zA, zB) of a mean residual (h, w) with per-pixel weight (h, w) against templates (2, h, w).

    The score at every circular shift of a template comes out of one FFT correlation; shifts far from
    zero (beyond DECOY_MIN_SHIFT, on a DECOY_STEP grid) are the null: the same pattern statistics, at the
    wrong place. Each score is normalised by the template energy over the visible pixels at that shift.
    """
    h, w = residual.shape
    weight = weight.astype(np.float32)
    # no per-pixel noise whitening: the mark is masked into busy areas, where codec noise is too, and
    # weighting by inverse local power halved z on real clips
    r = highpass(residual.astype(np.float32), weight) * weight
    r_hat = np.fft.rfft2(r)
    w_hat = np.fft.rfft2(weight)
    dy = np.minimum(np.arange(h), h - np.arange(h))[:, None]
    dx = np.minimum(np.arange(w), w - np.arange(w))[None, :]
    far = (np.maximum(dy, dx) >= DECOY_MIN_SHIFT)
    grid = np.zeros((h, w), bool)
    grid[::DECOY_STEP, ::DECOY_STEP] = True
    decoys = far & grid
    z = np.zeros(2, np.float32)
    for v in range(2):
        t = templates[v].astype(np.float32)
        # correlation c(s) = sum_x r(x) t(x - s), template energy e(s) = sum_x w(x) t(x - s)^2
        c = np.fft.irfft2(r_hat * np.conj(np.fft.rfft2(t)), s=(h, w))
        e = np.fft.irfft2(w_hat * np.conj(np.fft.rfft2(t * t)), s=(h, w))
        score = c / np.sqrt(np.maximum(e, 1e-9))
        null = score[decoys]
        spread = float(null.std())
        z[v] = (score[0, 0] - null.mean()) / spread if spread > 0 else 0.0
    return z


def decide(z: np.ndarray) -> np.ndarray:
    """int8 (n,) symbols from z (n, 2): A, B, both, or erased (NaN rows and weak rows)."""
    z = np.asarray(z, np.float64)
    za, zb = z[:, 0], z[:, 1]
    hi, lo = np.maximum(za, zb), np.minimum(za, zb)
    symbols = np.where(za >= zb, SYMBOL_A, SYMBOL_B).astype(np.int8)
    both = (lo >= Z_BOTH) & (lo >= BOTH_RATIO * hi)
    symbols[both] = SYMBOL_BOTH
    symbols[~(hi >= Z_PRESENT)] = SYMBOL_ERASED   # also catches NaN
    return symbols


@dataclass
class ResidualAccumulator:
    """Sums aligned residuals per position; finished positions are scored and their sums dropped."""

    det_size: tuple[int, int]                      # (det_w, det_h)
    sums: dict[int, np.ndarray] = field(default_factory=dict)
    weights: dict[int, np.ndarray] = field(default_factory=dict)
    frames: dict[int, int] = field(default_factory=dict)

    def add(self, position: int, residual: np.ndarray, mask: np.ndarray) -> None:
        """Add one frame's residual float32 (det_h, det_w), counted where mask (bool) is set."""
        if position not in self.sums:
            w, h = self.det_size
            self.sums[position] = np.zeros((h, w), np.float32)
            self.weights[position] = np.zeros((h, w), np.float32)
            self.frames[position] = 0
        self.sums[position] += np.where(mask, residual, 0)
        self.weights[position] += mask
        self.frames[position] += 1

    def pop(self, position: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(mean residual, weight normalised to max 1, frame count) of a position, removing it."""
        total, weight, n = self.sums.pop(position), self.weights.pop(position), self.frames.pop(position)
        mean = total / np.maximum(weight, 1)
        peak = float(weight.max())
        # pixels seen in fewer than half the frames are dropped: their mean is noisier and skews the null
        norm = np.where(weight >= 0.5 * peak, weight / max(peak, 1), 0).astype(np.float32)
        return mean, norm, n
