"""Aligning a leak to the master in space, time and light. Pure functions over numpy arrays.

Coordinates: the master lives on the reference's detection grid (det_w x det_h, see
`reference.py`); the leak is decoded once to a *working* size of about the same scale. The
geometry is a 2x3 affine matrix M that maps a master pixel (x, y, 1) to the leak working pixel
showing it (crop, scale, translation; letterbox bars are simply areas no master pixel maps to).
Time is a line t_master = rate * t_leak + offset in seconds, refined frame by frame.

Order of work, each step using the previous one: black bars (`content_box`), coarse time
(`fit_time_map` over fingerprints of the bar-free leak), geometry (`estimate_geometry` on a few
matched frame pairs: template search over scale, then ECC), per-frame master frame choice
(`match_frames`), and per-frame tone curve (`fit_tone`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from leaktrace.autograph.reference import FINGERPRINT_SIZE, fingerprint

BAR_LEVEL = 28          # rows/columns whose brightest sample stays below this are black bars
MAX_CROP = 0.11         # per side; the master interior beyond this is visible in any accepted leak
COARSE_PAIRS = 4        # frame pairs in the coarse scale search (all pairs go into the ECC refinement)
_RATE_RANGE = (0.75, 1.34)
# playback speeds that occur in practice: unchanged, PAL speed-up and slow-down, NTSC 1000/1001
NOMINAL_RATES = (1.0, 25 / 24, 24 / 25, 1000 / 1001, 1001 / 1000)
NOMINAL_PREFERENCE = 0.95
NOMINAL_OFFSETS_CHECKED = 8


# ----------------------------------------------------------------------------- black bars

def content_box(frames: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the picture inside black bars, from uint8 frames (n, h, w) sampled over the clip."""
    peak = np.percentile(frames, 99, axis=0) if len(frames) > 1 else frames[0].astype(np.float32)
    rows = np.flatnonzero(peak.max(axis=1) >= BAR_LEVEL)
    cols = np.flatnonzero(peak.max(axis=0) >= BAR_LEVEL)
    h, w = frames.shape[1:]
    if len(rows) < h // 4 or len(cols) < w // 4:
        return 0, 0, w, h
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_fingerprints(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """float32 (n, 18, 32) fingerprints of the picture inside `box` of each uint8 frame (n, h, w)."""
    x0, y0, x1, y1 = box
    return np.stack([fingerprint(f[y0:y1, x0:x1]) for f in frames]) if len(frames) else \
        np.zeros((0, FINGERPRINT_SIZE[1], FINGERPRINT_SIZE[0]), np.float32)


def cropped_fingerprints(master_fp: np.ndarray, crop: float) -> np.ndarray:
    """float32 (n, 18, 32): master fingerprints as if `crop` of each side had been cut off and the rest rescaled.

    Resampling the stored thumbnails is enough at this resolution, so a cropped leak can be matched
    in time before its exact geometry is known.
    """
    if crop <= 0:
        return np.asarray(master_fp, np.float32)
    n, h, w = master_fp.shape
    # map the output grid onto the central (1 - 2 crop) part of the thumbnail (pixel centres)
    xs = (np.arange(w) + 0.5) * (1 - 2 * crop) + crop * w - 0.5
    ys = (np.arange(h) + 0.5) * (1 - 2 * crop) + crop * h - 0.5
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 2)
    fx = (xs - x0).astype(np.float32)
    fy = (ys - y0).astype(np.float32)
    fp = np.asarray(master_fp, np.float32)
    rows = fp[:, y0] * (1 - fy)[None, :, None] + fp[:, y0 + 1] * fy[None, :, None]
    out = rows[:, :, x0] * (1 - fx) + rows[:, :, x0 + 1] * fx
    out -= out.mean(axis=(1, 2), keepdims=True)
    norms = np.linalg.norm(out.reshape(n, -1), axis=1)
    return out / np.where(norms > 1e-6, norms, 1.0)[:, None, None]


# ----------------------------------------------------------------------------- time

@dataclass
class TimeMap:
    """t_master = rate * t_leak + offset (seconds), with how well the leak samples agree with it."""

    rate: float
    offset: float
    inlier_fraction: float   # of the sampled leak frames whose best matches lie on the line
    similarity: float        # median fingerprint similarity of those inliers (1 = identical)

    def master_time(self, t_leak: np.ndarray) -> np.ndarray:
        return self.rate * t_leak + self.offset


def fit_time_map(leak_fp: np.ndarray, leak_times: np.ndarray, master_fp: np.ndarray, master_fps: float, *,
                 samples: int = 400, top_k: int = 6, iterations: int = 300, seed: int = 0) -> TimeMap:
    """Fit t_master = rate * t_leak + offset by RANSAC over fingerprint matches.

    leak_fp float32 (n_l, 18, 32) and master_fp (n_m, 18, 32) are unit-norm thumbnails (zeros for flat
    frames), leak_times float64 (n_l,) seconds. Each sampled leak frame proposes its top_k master frames;
    the line that the most samples agree with (within one master frame) wins.
    """
    rng = np.random.default_rng(seed)
    lf = leak_fp.reshape(len(leak_fp), -1)
    mf = np.ascontiguousarray(master_fp.reshape(len(master_fp), -1), np.float32)
    usable = np.flatnonzero(np.linalg.norm(lf, axis=1) > 0.5)
    if len(usable) < 2 or len(mf) < 2:
        return TimeMap(1.0, 0.0, 0.0, 0.0)
    pick = usable[np.linspace(0, len(usable) - 1, min(samples, len(usable))).round().astype(int)]
    pick = np.unique(pick)
    sims = lf[pick] @ mf.T                                        # (n_s, n_m)
    k = min(top_k, mf.shape[0])
    cand = np.argpartition(-sims, k - 1, axis=1)[:, :k]           # (n_s, k) master frame indices
    cand_sim = np.take_along_axis(sims, cand, axis=1)
    t_l = np.repeat(leak_times[pick], k)
    t_m = cand.ravel() / master_fps
    w = cand_sim.ravel()
    sample_of = np.repeat(np.arange(len(pick)), k)
    tol = 1.0 / master_fps

    def support(rate: float, offset: float) -> tuple[float, np.ndarray]:
        hit = np.abs(t_m - (rate * t_l + offset)) < tol
        best = np.zeros(len(pick))
        np.maximum.at(best, sample_of[hit], w[hit])
        return float(best.sum()), hit

    best_score, best_model = -1.0, (1.0, 0.0)
    n = len(t_l)
    for _ in range(iterations):
        i, j = rng.integers(0, n, 2)
        if sample_of[i] == sample_of[j]:
            # a single pair with the nominal rate: covers clips too short for two distinct samples
            rate = 1.0
        else:
            dt = t_l[j] - t_l[i]
            if abs(dt) < 1e-6:
                continue
            rate = (t_m[j] - t_m[i]) / dt
            if not _RATE_RANGE[0] <= rate <= _RATE_RANGE[1]:
                continue
        offset = t_m[i] - rate * t_l[i]
        score, _ = support(rate, offset)
        if score > best_score:
            best_score, best_model = score, (rate, offset)
    # Content that barely moves fits many lines about equally well. Playback speed is almost always
    # kept (a frame-rate change keeps timestamps), so a nominal rate that does nearly as well wins.
    nominal_score, nominal_model = -1.0, None
    for rate in NOMINAL_RATES:
        # the offsets most pairs vote for (one-frame bins, weighted by similarity), checked exactly
        bins = np.round((t_m - rate * t_l) * master_fps).astype(np.int64)
        values, inverse = np.unique(bins, return_inverse=True)
        votes = np.bincount(inverse, weights=w)
        for offset in values[np.argsort(-votes)[:NOMINAL_OFFSETS_CHECKED]] / master_fps:
            score, _ = support(rate, offset)
            if score > nominal_score:
                nominal_score, nominal_model = score, (rate, offset)
    if nominal_model is not None and nominal_score >= NOMINAL_PREFERENCE * best_score:
        rate, offset = nominal_model
        _, hit = support(rate, offset)
        rows = _best_per_sample(hit, w, sample_of, len(pick))
        if len(rows):
            offset = float(np.median(t_m[rows] - rate * t_l[rows]))
    else:
        rate, offset = best_model
        for _ in range(2):  # least-squares refit on the best inlier of each sample
            _, hit = support(rate, offset)
            rows = _best_per_sample(hit, w, sample_of, len(pick))
            if len(rows) < 2 or np.ptp(t_l[rows]) < 1e-6:
                break
            rate, offset = np.polyfit(t_l[rows], t_m[rows], 1)
            if not _RATE_RANGE[0] <= rate <= _RATE_RANGE[1]:
                rate, offset = best_model
                break
    _, hit = support(rate, offset)
    rows = _best_per_sample(hit, w, sample_of, len(pick))
    similarity = float(np.median(w[rows])) if len(rows) else 0.0
    return TimeMap(float(rate), float(offset), len(rows) / len(pick), similarity)


def refine_time_map(time_map: TimeMap, leak_times: np.ndarray, master_index: np.ndarray, ncc: np.ndarray,
                    master_fps: float) -> TimeMap:
    """Refit the time line through the master frames chosen for each leak frame (float64 (n,) times,
    int64 (n,) indices, float32 (n,) correlations), ignoring poor matches and frames off the line."""
    good = (master_index >= 0) & (ncc >= np.median(ncc) - 0.1)
    rate, offset = time_map.rate, time_map.offset
    for _ in range(3):
        off_line = np.abs(master_index / master_fps - (rate * leak_times + offset)) * master_fps
        rows = good & (off_line <= 1.5)
        if rows.sum() < 2 or np.ptp(leak_times[rows]) < 1e-6:
            return time_map
        new_rate, new_offset = np.polyfit(leak_times[rows], master_index[rows] / master_fps, 1)
        if not _RATE_RANGE[0] <= new_rate <= _RATE_RANGE[1]:
            return time_map
        rate, offset = float(new_rate), float(new_offset)
    return TimeMap(rate, offset, time_map.inlier_fraction, time_map.similarity)


def _best_per_sample(hit: np.ndarray, w: np.ndarray, sample_of: np.ndarray, n_samples: int) -> np.ndarray:
    """Row index of the most similar inlier of every sample that has one."""
    rows = np.flatnonzero(hit)
    if len(rows) == 0:
        return rows
    order = rows[np.lexsort((-w[rows], sample_of[rows]))]
    first = np.r_[True, sample_of[order][1:] != sample_of[order][:-1]]
    return order[first]


# ----------------------------------------------------------------------------- space

@dataclass
class Geometry:
    """Affine map from master detection pixels to leak working pixels, with its quality."""

    matrix: np.ndarray       # float64 (2, 3)
    ncc: float               # correlation of leak and warped master on the matched pairs

    @property
    def scale(self) -> tuple[float, float]:
        return float(np.hypot(*self.matrix[:, 0])), float(np.hypot(*self.matrix[:, 1]))


def _ncc_search(leak: np.ndarray, master: np.ndarray, scales_x: np.ndarray, aspect: float) -> tuple[float, float, int, int]:
    """Best (score, sx, x, y) of master-interior templates resized by (sx, sx*aspect) over leak; float32 images."""
    mh, mw = master.shape[-2:]
    cx0, cy0 = int(mw * MAX_CROP), int(mh * MAX_CROP)
    interior = master[..., cy0:mh - cy0, cx0:mw - cx0]
    best = (-2.0, 1.0, 0, 0)
    for sx in scales_x:
        sy = sx * aspect
        tw, th = int(round(interior.shape[-1] * sx)), int(round(interior.shape[-2] * sy))
        if tw < 8 or th < 8 or tw > leak.shape[-1] or th > leak.shape[-2]:
            continue
        total = None
        for lf, mf in zip(leak, interior):
            tmpl = cv2.resize(mf, (tw, th), interpolation=cv2.INTER_AREA)
            res = cv2.matchTemplate(lf, tmpl, cv2.TM_CCOEFF_NORMED)
            total = res if total is None else total + res
        _, score, _, (x, y) = cv2.minMaxLoc(total)
        score /= len(leak)
        if score > best[0]:
            # top-left of the resized interior -> translation of master pixel 0
            best = (score, sx, x - cx0 * sx, y - cy0 * sy)
    return best


def estimate_geometry(leak_frames: np.ndarray, master_frames: np.ndarray, box: tuple[int, int, int, int]) -> Geometry:
    """Estimate the master->leak affine map from matched pairs: uint8 leak (n, h, w), master (n, det_h, det_w).

    Coarse: scale search (crop up to 11 % per side, aspect kept or stretched to the bars) by normalised
    template matching of the master interior at half size. Fine: ECC (affine) on each pair, median.
    """
    leak = leak_frames.astype(np.float32)
    master = master_frames.astype(np.float32)
    mh, mw = master.shape[-2:]
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    fit = min(bw / mw, bh / mh)                     # scale at which the whole master fits the box
    best = (-2.0, 1.0, 0.0, 0.0, 1.0)
    coarse = slice(None, COARSE_PAIRS)
    half_leak = np.stack([cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA)
                          for f in leak[coarse]])
    for aspect in sorted({1.0, round((bh / mh) / (bw / mw), 4)}):
        scales = fit * np.exp(np.linspace(np.log(0.92), np.log(1.0 / (1 - 2 * MAX_CROP)), 16))
        score, sx, tx, ty = _ncc_search(half_leak, master[coarse], scales / 2, aspect)
        if score > best[0]:
            best = (score, sx * 2, tx * 2, ty * 2, aspect)
    _, sx, tx, ty, aspect = best
    # refine the scale on a finer grid at full size around the coarse answer
    score, sx, tx, ty = _ncc_search(leak, master, sx * np.exp(np.linspace(-0.03, 0.03, 9)), aspect)
    init = np.array([[sx, 0.0, tx], [0.0, sx * aspect, ty]], np.float32)
    matrices = []
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-5)
    # only the picture inside the bars may take part: ECC warps this mask with the leak
    picture = np.zeros(leak.shape[1:], np.uint8)
    picture[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = 255
    for lf, mf in zip(leak, master):
        try:
            _, warp = cv2.findTransformECC(mf, lf, init.copy(), cv2.MOTION_AFFINE, criteria, picture, 3)
        except cv2.error:
            continue
        matrices.append(warp)
    matrix = np.median(np.stack(matrices), axis=0) if matrices else init
    geometry = Geometry(matrix.astype(np.float64), 0.0)
    geometry.ncc = float(np.median([frame_ncc(warp_to_master(lf, geometry, (mw, mh)), mf,
                                              valid_mask(geometry, box, (mw, mh)))
                                    for lf, mf in zip(leak_frames, master_frames)]))
    return geometry


def warp_to_master(leak_frame: np.ndarray, geometry: Geometry, det_size: tuple[int, int]) -> np.ndarray:
    """float32 (det_h, det_w): the leak frame resampled onto the master detection grid."""
    return cv2.warpAffine(leak_frame.astype(np.float32, copy=False), geometry.matrix, det_size,
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def _pixel_map(scale_x: float, scale_y: float) -> np.ndarray:
    """3x3 map of pixel centres from a grid to the same picture resized by (scale_x, scale_y)."""
    return np.array([[scale_x, 0, 0.5 * scale_x - 0.5], [0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]])


def warp_small(leak_frame: np.ndarray, geometry: Geometry, det_size: tuple[int, int], small_size: tuple[int, int]) -> np.ndarray:
    """float32 (small_h, small_w): the leak frame on a reduced copy of the master grid, cheaply.

    The leak is first area-reduced by the same factor, so the affine resampling never aliases.
    """
    factor = max(1, int(round(det_size[0] / small_size[0])))
    h, w = leak_frame.shape
    reduced = cv2.resize(leak_frame, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
    small_to_det = _pixel_map(det_size[0] / small_size[0], det_size[1] / small_size[1])
    leak_to_reduced = _pixel_map(reduced.shape[1] / w, reduced.shape[0] / h)
    full = np.vstack([geometry.matrix, [0, 0, 1]])
    matrix = (leak_to_reduced @ full @ small_to_det)[:2]
    return cv2.warpAffine(reduced.astype(np.float32), matrix, small_size,
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def valid_mask(geometry: Geometry, box: tuple[int, int, int, int], det_size: tuple[int, int], margin: float = 2.0) -> np.ndarray:
    """bool (det_h, det_w): master pixels whose leak position lies inside the picture box (minus a margin)."""
    w, h = det_size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    m = geometry.matrix
    lx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    ly = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    x0, y0, x1, y1 = box
    return (lx >= x0 + margin) & (lx <= x1 - 1 - margin) & (ly >= y0 + margin) & (ly <= y1 - 1 - margin)


def frame_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Normalised correlation of two images over a boolean mask."""
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


# ----------------------------------------------------------------------------- per-frame match

def match_frames(leak_small: np.ndarray, master_small: np.ndarray, predicted: np.ndarray, *, reach: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """For each leak frame pick the master frame near its predicted index that it correlates with best.

    leak_small float32 (n_l, h, w) and master_small (n_m, h, w) are the same small size, already on the
    same grid (the leak warped). predicted float64 (n_l,) fractional master indices. Returns (index int64
    (n_l,), -1 where no candidate exists, and ncc float32 (n_l,)).
    """
    def normalise(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float32)
        x = x - x.mean(axis=1, keepdims=True)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1)

    lf, mf = normalise(leak_small), normalise(master_small)
    base = np.round(predicted).astype(np.int64)
    offsets = np.arange(-reach, reach + 1)
    cand = base[:, None] + offsets[None, :]                        # (n_l, 2*reach+1)
    ok = (cand >= 0) & (cand < len(mf))
    safe = np.clip(cand, 0, max(len(mf) - 1, 0))
    scores = np.einsum("nd,nkd->nk", lf, mf[safe]) if len(mf) else np.zeros(cand.shape, np.float32)
    scores = np.where(ok, scores, -2.0)
    # prefer the predicted frame on ties (flat or static scenes)
    scores = scores + 1e-4 * (offsets == 0)
    best = scores.argmax(axis=1)
    index = np.take_along_axis(cand, best[:, None], axis=1)[:, 0]
    ncc = np.take_along_axis(scores, best[:, None], axis=1)[:, 0]
    index = np.where(ncc > -1.5, index, -1)
    return index, ncc.astype(np.float32)


# ----------------------------------------------------------------------------- light

TONE_KNOTS = np.linspace(0, 255, 9)   # a piecewise-linear curve with 8 segments
_TONE_BASIS = np.maximum(0, 1 - np.abs(np.arange(256)[:, None] - TONE_KNOTS[None, :]) / (TONE_KNOTS[1] - TONE_KNOTS[0]))
_TONE_CURVATURE = np.diff(np.eye(len(TONE_KNOTS)), n=2, axis=0)
_TONE_SMOOTHING = 1e-3


def fit_tone(leak: np.ndarray, master: np.ndarray, mask: np.ndarray, *, step: int = 2) -> np.ndarray:
    """Least-squares tone curve: float32 (256,) lookup table such that leak ~ table[master] over `mask`.

    leak float32 and master uint8 (h, w) on the same grid. The curve is piecewise linear over 8 equal
    segments of the master's levels, which absorbs brightness, contrast, gamma and range conversions;
    clipped leak pixels are left out. The normal equations come from a histogram over the 256 master
    levels, so the fit costs one pass over the pixels; a light curvature penalty keeps segments
    without pixels on the line of their neighbours.
    """
    lk = leak[::step, ::step]
    sel = mask[::step, ::step] & (lk > 3) & (lk < 252)
    levels = master[::step, ::step][sel]
    counts = np.bincount(levels, minlength=256).astype(np.float64)
    if counts.sum() < 32:
        return np.arange(256, dtype=np.float32)
    sums = np.bincount(levels, weights=lk[sel], minlength=256)
    normal = _TONE_BASIS.T @ (counts[:, None] * _TONE_BASIS)
    normal += _TONE_SMOOTHING * counts.sum() * (_TONE_CURVATURE.T @ _TONE_CURVATURE)
    normal += 1e-9 * counts.sum() * np.eye(len(TONE_KNOTS))
    knots = np.linalg.solve(normal, _TONE_BASIS.T @ sums)
    return (_TONE_BASIS @ knots).astype(np.float32)


def apply_tone(master: np.ndarray, table: np.ndarray) -> np.ndarray:
    """float32: the tone curve `table` (256,) applied to a uint8 master image."""
    return table[master]
