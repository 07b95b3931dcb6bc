"""Per-position soft decisions (zA, zB) and symbols A / B / both / erased.

For position i the aligned residuals r_f = L_f - T_f(O_f) of its interior frames are averaged
(per pixel, over the frames where the pixel is visible) into R_i on the detection grid. A mild
high-pass removes what is left of the picture (slow tone and alignment errors), then R_i is
correlated with the position's A and B templates. The same correlation with circularly shifted copies
of the templates (same spectrum and texture, wrong place; thousands of them through one FFT) gives a
per-position null, so

    z_v = (<R_i, T_v> - mean(decoys)) / std(decoys)        for v in {A, B}

reads as "standard deviations above chance". A and B share the perceptual mask, so they overlap a
little by chance; each is scored on the part of it the other cannot explain (a 2x2 least-squares
split), which keeps the absent variant at chance level even next to a z of 90. A single copy then
gives one large z and one near 0; the pixel average of an A copy and a B copy gives two half-size
ones ("both"). Measured on the 45 s test title of tests/autograph/test_trace.py (Big Buck Bunny,
Caminandes and Tears of Steel at 480x270, medium strength, 1 s positions, marks carried from each
IDR picture) after a CRF 28 re-encode: z 18-83 for the variant present and -3 to 3 for the absent
one; two positions (a fade from black, flashes right after an IDR) stayed below Z_PRESENT.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.fft

from leaktrace.autograph import align

SYMBOL_A, SYMBOL_B, SYMBOL_BOTH, SYMBOL_ERASED = 0, 1, 2, -1   # as in code.Observations
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
    dy = np.minimum(np.arange(h), h - np.arange(h))[:, None]
    dx = np.minimum(np.arange(w), w - np.arange(w))[None, :]
    far = (np.maximum(dy, dx) >= DECOY_MIN_SHIFT)
    grid = np.zeros((h, w), bool)
    grid[::DECOY_STEP, ::DECOY_STEP] = True
    decoys = far & grid
    t_a, t_b = templates.astype(np.float32)
    # correlation c_v(s) = sum_x r(x) t_v(x - s), template energy e_v(s) = sum_x w(x) t_v(x - s)^2 and
    # the A/B cross energy, all through one batch of single-precision FFTs
    spectra = scipy.fft.rfft2(np.stack([r, weight, t_a, t_b, t_a * t_a, t_b * t_b, t_a * t_b]), workers=1)
    r_hat, w_hat, a_hat, b_hat, aa_hat, bb_hat, ab_hat = spectra
    c_a, c_b, e_a, e_b, e_ab = scipy.fft.irfft2(
        np.stack([r_hat * np.conj(a_hat), r_hat * np.conj(b_hat),
                  w_hat * np.conj(aa_hat), w_hat * np.conj(bb_hat), w_hat * np.conj(ab_hat)]), s=(h, w), workers=1)
    e_a, e_b = np.maximum(e_a, 1e-9), np.maximum(e_b, 1e-9)
    scores = [c_a / np.sqrt(e_a), c_b / np.sqrt(e_b)]
    # A and B share the perceptual mask, so they overlap by chance (|rho| up to ~0.1): a strong A then
    # leaks a few z into B. Scoring each against the part of it the other cannot explain removes that.
    rho = np.clip(e_ab / np.sqrt(e_a * e_b), -0.9, 0.9)
    scale = np.sqrt(1 - rho * rho)
    own = [(scores[0] - rho * scores[1]) / scale, (scores[1] - rho * scores[0]) / scale]
    z = np.zeros(2, np.float32)
    for v in range(2):
        null = own[v][decoys]
        spread = float(null.std())
        z[v] = (own[v][0, 0] - null.mean()) / spread if spread > 0 else 0.0
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


def residual_sum(leak: np.ndarray, master: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum over frames of leak - tone(master) where usable, and the per-pixel count of usable frames.

    leak float32 (n, h, w) on the master grid, master uint8 (n, h, w), mask bool (h, w). Each frame
    gets its own tone curve (fades, grading). Clipped leak pixels are not usable: the mark cannot
    show there.
    """
    total = np.zeros(leak.shape[1:], np.float32)
    count = np.zeros(leak.shape[1:], np.float32)
    for lf, mf in zip(leak, master):
        usable = mask & (lf > 3) & (lf < 252)
        table = align.fit_tone(lf, mf, mask)
        total += np.where(usable, lf - table[mf], 0)
        count += usable
    return total, count
