"""`trace()`: a leaked video + a prepared title + candidate tags -> who leaked it, with proof.

    leak ──decode once (PyAV, reference frames only, small gray frames)──► working frames
        │    └─ after its first 20 s: their time line ──► master luma of the range decoded alongside
        ├─ black bars, fingerprints (a few crop guesses) ──► coarse time line (RANSAC)
        ├─ a few matched frame pairs ──► geometry (scale search + ECC) onto the master detection grid
        ├─ every frame warped small ──► fine time line, then the best master frame (±1) or erasure
        └─ per position, interior frames: warp, tone curve, residual ──► (zA, zB), symbols
    symbols ──code.accuse()──► accused tags with scores and bounds

The master is never decoded: everything on its side comes from the detection reference written by
prepare (`reference.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from leaktrace.autograph import align, detect
from leaktrace.autograph.reference import LumaPrefetch, Reference, fingerprint, load_reference

# progress(stage, done, total); stages: "decode", "align", "detect", "score"
TraceProgress = Callable[[str, int, int], None]
# on_head(frames uint8 (n, h, w), times float64 (n,) s, expected end time of the leak in s)
HeadCallback = Callable[[np.ndarray, np.ndarray, float], None]

# "does this leak show this title at all": below either gate, nothing is detected or scored
MIN_INLIER_FRACTION = 0.35   # of sampled leak frames agreeing with the time line (other titles: < 0.1)
MIN_GEOMETRY_NCC = 0.6       # leak vs warped master on the matched pairs (this title: > 0.95)
# coarse time line: the fingerprints are compared as if this much of each side had been cropped;
# the first guess that at least CLEAR_INLIER_FRACTION of the samples agree with ends the search
CROP_HYPOTHESES = (0.0, 0.03, 0.06, 0.09, 0.12)
CLEAR_INLIER_FRACTION = 0.9
# master decoded around the coarse line: 2 s, plus 15 % of the leak's length unless the line is clear
# (a clear RANSAC line over the whole leak is off by a frame or two, in rate as well as in offset)
TIME_MARGIN_SECONDS = 2.0
TIME_MARGIN_FRACTION = 0.15
GEOMETRY_PAIRS = 6           # leak/master frame pairs for the geometry
MATCH_SIZE = (80, 45)        # grid for choosing the master frame of each leak frame (w, h); h follows the master
FRAME_NCC_DROP = 0.15        # a frame correlating this much below the clip median is an erasure...
MIN_FRAME_NCC = 0.5          # ...and so is any frame below this
SKIP_NONREF = True           # decode reference frames only: faster, and on real leaks z came out higher
# (the loop filter stays on: skipping it saves about a fifth of the decode but cost z, 10th percentile
# 75.6 -> 53.1 after H.264 CRF 23 and 46.9 -> 28.4 after H.265 CRF 32, 2 s positions at 540p)
# once this much of the leak is decoded, its time line so far picks the master range to decode alongside
HEAD_SECONDS = 20.0
PREFETCH_MARGIN_FRACTION = 0.02
DETECT_THREADS = 2


@dataclass
class LeakClip:
    """The leak decoded once: uint8 luma frames at working size and their presentation times."""

    frames: np.ndarray       # uint8 (n, h, w)
    times: np.ndarray        # float64 (n,) seconds
    size: tuple[int, int]    # the leak's own (width, height)
    decode_seconds: float


@dataclass
class Alignment:
    """How the leak maps onto the master: all the facts a report needs."""

    matched: bool
    reason: str
    time_map: align.TimeMap | None = None
    box: tuple[int, int, int, int] | None = None
    geometry: align.Geometry | None = None
    working_size: tuple[int, int] | None = None
    master_frames: np.ndarray | None = None   # int64 (n_leak,): chosen master frame or -1 (erasure)
    frame_ncc: np.ndarray | None = None       # float32 (n_leak,)

    def crop_scale(self, ref: Reference, leak_size: tuple[int, int]) -> dict[str, float] | None:
        """The master rectangle visible in the leak and its scale, in master pixels (x0, y0, x1, y1, scale)."""
        if self.geometry is None or self.working_size is None or self.box is None:
            return None
        to_master = ref.width / ref.det_width
        to_leak = leak_size[0] / self.working_size[0]
        inverse = cv2.invertAffineTransform(self.geometry.matrix)
        x0, y0, x1, y1 = self.box
        corners = np.array([[x0, y0, 1.0], [x1, y1, 1.0]]) @ inverse.T * to_master
        (mx0, my0), (mx1, my1) = np.clip(corners, 0, [ref.width, ref.height])
        return {"x0": float(mx0), "y0": float(my0), "x1": float(mx1), "y1": float(my1),
                "scale": float(self.geometry.scale[0] * to_leak / to_master)}


@dataclass
class Detection:
    """Per-position soft decisions for the whole title (unobserved positions: NaN z, erased symbol)."""

    z: np.ndarray            # float32 (n_positions, 2)
    symbols: np.ndarray      # int8 (n_positions,)
    frames: np.ndarray       # int32 (n_positions,): leak frames used per position

    @property
    def examined(self) -> np.ndarray:
        """Positions some leak frames were compared on."""
        return np.flatnonzero(~np.isnan(self.z[:, 0]))

    @property
    def observed(self) -> np.ndarray:
        """Positions with a readable symbol (A, B or both)."""
        return np.flatnonzero(self.symbols >= 0)


@dataclass
class TraceReport:
    """Everything `trace()` found: the scorer's verdict plus the alignment and detection facts."""

    verdict: Any | None
    reason: str
    alignment: Alignment
    detection: Detection | None
    leak_frames: int
    leak_size: tuple[int, int]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self, ref: Reference | None = None) -> dict[str, Any]:
        """JSON-ready summary (accused, positions_observed, runner_up, reason, alignment, positions)."""
        v = self.verdict
        accused = [_accusation_dict(a) for a in v.accused] if v is not None else []
        runner_up = _accusation_dict(v.runner_up) if v is not None and v.runner_up is not None else None
        out: dict[str, Any] = {
            "accused": accused,
            "runner_up": runner_up,
            "positions_observed": int(len(self.detection.observed)) if self.detection is not None else 0,
            "positions_examined": int(len(self.detection.examined)) if self.detection is not None else 0,
            "reason": self.reason,
            "leak": {"frames": self.leak_frames, "width": self.leak_size[0], "height": self.leak_size[1]},
            "seconds": {k: round(s, 3) for k, s in self.seconds.items()},
        }
        a = self.alignment
        if a.time_map is not None:
            out["alignment"] = {
                "matched": a.matched,
                "rate": a.time_map.rate, "offset_seconds": a.time_map.offset,
                "time_inlier_fraction": a.time_map.inlier_fraction,
                "geometry_ncc": a.geometry.ncc if a.geometry is not None else None,
                "frames_used": int((a.master_frames >= 0).sum()) if a.master_frames is not None else 0,
            }
            if ref is not None and a.geometry is not None:
                out["alignment"]["master_crop"] = a.crop_scale(ref, self.leak_size)
        if self.detection is not None:
            obs = self.detection.examined
            sym = {detect.SYMBOL_A: "A", detect.SYMBOL_B: "B", detect.SYMBOL_BOTH: "both", detect.SYMBOL_ERASED: "erased"}
            out["positions"] = [{"position": int(i), "zA": round(float(self.detection.z[i, 0]), 2),
                                 "zB": round(float(self.detection.z[i, 1]), 2),
                                 "symbol": sym[int(self.detection.symbols[i])],
                                 "frames": int(self.detection.frames[i])} for i in obs]
        return out


def _accusation_dict(a: Any) -> dict[str, Any]:
    return {"tag": a.tag, "score": float(a.score), "bound": float(a.bound), "log10_bound": float(a.log10_bound),
            "agreement": int(a.agreement), "compared": int(a.compared)}


# ----------------------------------------------------------------------------- decode

def working_factor(leak_size: tuple[int, int], ref: Reference) -> int:
    """Integer factor by which leak frames are reduced: about the detection grid's scale, never below it.

    An integer factor keeps the area reduction exact and about ten times faster than a fractional one.
    """
    lw, lh = leak_size
    return max(1, min(lh // ref.det_height, lw // ref.det_width))


def decode_leak(path: str | Path, ref: Reference, *, skip_nonref: bool = SKIP_NONREF,
                on_head: HeadCallback | None = None, progress: TraceProgress | None = None) -> LeakClip:
    """Decode the leak once, straight to small gray frames.

    With skip_nonref the decoder skips frames no other frame refers to (most B-frames): they cost
    decode time, carry the mark no better than their references, and timestamps place the rest.
    `on_head(frames, times, end)` is called once, after the first HEAD_SECONDS, with the frames so
    far and the leak's expected end time (when the container tells it), so work can start early.
    """
    start = time.perf_counter()
    reduced: list[Future[np.ndarray]] = []
    times: list[float] = []
    # the reduction runs on a second thread (OpenCV releases the GIL) while the decoder goes on
    with av.open(str(path)) as container, ThreadPoolExecutor(max_workers=1) as reducer:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if skip_nonref:
            stream.codec_context.skip_frame = "NONREF"
        leak_size = (stream.codec_context.width, stream.codec_context.height)
        factor = working_factor(leak_size, ref)
        size = (leak_size[0] // factor, leak_size[1] // factor)
        total = stream.frames or 0
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        duration = container.duration / av.time_base if container.duration else None
        for frame in container.decode(stream):
            reduced.append(reducer.submit(_reduce, frame, size, factor))
            times.append(float(frame.time) if frame.time is not None else len(times) / rate)
            if on_head is not None and duration is not None and times[-1] - times[0] >= HEAD_SECONDS:
                on_head(np.stack([f.result() for f in reduced]), np.asarray(times), times[0] + duration)
                on_head = None
            if len(reduced) > _REDUCE_BACKLOG:
                reduced[-_REDUCE_BACKLOG].result()   # bounds the decoded frames held in memory
            if progress is not None and len(reduced) % 50 == 0:
                progress("decode", len(reduced), max(total, len(reduced)))
        frames = [f.result() for f in reduced]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    order = np.argsort(times, kind="stable")
    return LeakClip(np.stack(frames)[order], np.asarray(times, np.float64)[order], leak_size,
                    time.perf_counter() - start)


_REDUCE_BACKLOG = 32  # decoded frames waiting for their reduction at most


def _reduce(frame: av.VideoFrame, size: tuple[int, int], factor: int) -> np.ndarray:
    """uint8 (h, w) working frame: the luma area-reduced by an integer factor to `size` (w, h)."""
    luma = _luma(frame)[:size[1] * factor, :size[0] * factor]
    return cv2.resize(luma, size, interpolation=cv2.INTER_AREA) if factor > 1 else luma.copy()


def _luma(frame: av.VideoFrame) -> np.ndarray:
    """uint8 (h, w) luma of a decoded frame: the Y plane itself for 8-bit YUV, a conversion otherwise."""
    if frame.format.name in _EIGHT_BIT_YUV:
        plane = frame.planes[0]
        return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
    return frame.reformat(format="gray").to_ndarray()


_EIGHT_BIT_YUV = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"}


# ----------------------------------------------------------------------------- align

def coarse_time_map(frames: np.ndarray, times: np.ndarray,
                    ref: Reference) -> tuple[tuple[int, int, int, int], align.TimeMap]:
    """The picture box (black bars removed) of uint8 leak frames (n, h, w) and their time line on the master."""
    n = len(frames)
    box = align.content_box(frames[np.linspace(0, n - 1, min(n, 60)).round().astype(int)])
    leak_fp = align.box_fingerprints(frames, box)
    fps = float(ref.fps)
    # the crop is unknown until the geometry is: try a few, keep the time line the most frames agree with
    time_map = None
    for crop in CROP_HYPOTHESES:
        candidate = align.fit_time_map(leak_fp, times, align.cropped_fingerprints(ref.fingerprints, crop), fps)
        if time_map is None or (candidate.inlier_fraction, candidate.similarity) > (time_map.inlier_fraction, time_map.similarity):
            time_map = candidate
        if time_map.inlier_fraction >= CLEAR_INLIER_FRACTION:
            break   # clear enough: the fine pass after the geometry settles the rest
    return box, time_map


def prefetch_master(head: np.ndarray, head_times: np.ndarray, leak_end: float, ref: Reference) -> LumaPrefetch | None:
    """Start decoding the master range the leak's first seconds point at, while the rest of it decodes.

    Only a clear time line is extrapolated; the range is widened by PREFETCH_MARGIN_FRACTION of the
    leak's length for the error in rate. A wrong guess only costs the decode it wasted.
    """
    _, time_map = coarse_time_map(head, head_times, ref)
    if time_map.inlier_fraction < CLEAR_INLIER_FRACTION:
        return None
    fps = float(ref.fps)
    ends = time_map.master_time(np.array([head_times[0], leak_end])) * fps
    margin = fps * (TIME_MARGIN_SECONDS + PREFETCH_MARGIN_FRACTION * (leak_end - head_times[0]))
    first = max(0, int(np.floor(ends.min() - margin)))
    stop = min(ref.n_frames, int(np.ceil(ends.max() + margin)) + 1)
    return LumaPrefetch(ref, first, stop) if first < stop else None


def align_leak(clip: LeakClip, ref: Reference, *, prefetch: LumaPrefetch | None = None,
               progress: TraceProgress | None = None) -> tuple[Alignment, np.ndarray | None, int]:
    """Find time line, geometry and each leak frame's master frame.

    Returns (alignment, master luma uint8 (m, det_h, det_w) for the frames the leak covers, index of
    its first frame); the luma is None when the leak does not match. Master luma already being
    decoded by `prefetch` is used where it covers the range needed.
    """
    fps = float(ref.fps)
    box, time_map = coarse_time_map(clip.frames, clip.times, ref)
    result = Alignment(False, "", time_map=time_map, box=box, working_size=(clip.frames.shape[2], clip.frames.shape[1]))
    if time_map.inlier_fraction < MIN_INLIER_FRACTION:
        result.reason = (f"the leak does not match this title: only {time_map.inlier_fraction:.0%} of sampled "
                         f"leak frames fit one time line with the master")
        return result, None, 0
    predicted = time_map.master_time(clip.times) * fps
    inside = (predicted > -0.5) & (predicted < ref.n_frames - 0.5)
    if not inside.any():
        result.reason = "the leak does not match this title: its frames fall outside the master"
        return result, None, 0
    # a generous master range unless the line is clear: a murky one may be off in rate as well as offset
    extra = 0.0 if time_map.inlier_fraction >= CLEAR_INLIER_FRACTION else TIME_MARGIN_FRACTION * np.ptp(clip.times)
    margin = int(np.ceil(fps * (TIME_MARGIN_SECONDS + extra)))
    first = max(0, int(np.floor(predicted[inside].min())) - margin)
    stop = min(ref.n_frames, int(np.ceil(predicted[inside].max())) + margin + 1)
    if progress is not None:
        progress("align", 0, 3)
    master = (prefetch or ref).luma(first, stop)

    # geometry from a few well-spread leak frames that have texture
    candidates = np.flatnonzero(inside)
    texture = clip.frames[candidates, ::8, ::8].reshape(len(candidates), -1).std(axis=1)
    textured = candidates[texture >= np.percentile(texture, 30)]
    pairs = textured[np.linspace(0, len(textured) - 1, min(GEOMETRY_PAIRS, len(textured))).round().astype(int)]
    pair_master = np.clip(np.round(predicted[pairs]).astype(int) - first, 0, len(master) - 1)
    geometry = align.estimate_geometry(clip.frames[pairs], master[pair_master], box)
    result.geometry = geometry
    if progress is not None:
        progress("align", 1, 3)
    if geometry.ncc < MIN_GEOMETRY_NCC:
        result.reason = (f"the leak does not match this title: after the best crop/scale the picture correlates "
                         f"only {geometry.ncc:.2f} with the master")
        return result, None, 0

    # the best master frame for every leak frame, on a small grid
    det_size = (ref.det_width, ref.det_height)
    match_size = (MATCH_SIZE[0], max(8, int(round(MATCH_SIZE[0] * ref.det_height / ref.det_width))))
    mask = align.valid_mask(geometry, box, det_size)
    small_mask = cv2.resize(mask.astype(np.float32), match_size, interpolation=cv2.INTER_AREA) > 0.99
    leak_small = np.stack([align.warp_small(f, geometry, det_size, match_size) for f in clip.frames]) * small_mask
    master_small = np.stack([cv2.resize(m, match_size, interpolation=cv2.INTER_AREA).astype(np.float32)
                             for m in master]) * small_mask
    # the time line again, now that both sides are on the same grid (the coarse one only guessed the
    # crop), then a wide frame search, a line refitted through the frames found, and the final ±1 choice
    fine = align.fit_time_map(np.stack([fingerprint(f) for f in leak_small]), clip.times,
                              np.stack([fingerprint(m) for m in master_small]), fps)
    if fine.inlier_fraction >= MIN_INLIER_FRACTION:
        time_map = align.TimeMap(fine.rate, fine.offset + first / fps, fine.inlier_fraction, fine.similarity)
        predicted = time_map.master_time(clip.times) * fps
    index, ncc = align.match_frames(leak_small, master_small, predicted - first, reach=2)
    result.time_map = time_map = align.refine_time_map(time_map, clip.times, np.where(index >= 0, index + first, -1),
                                                       ncc, fps)
    predicted = time_map.master_time(clip.times) * fps
    inside = (predicted > -0.5) & (predicted < ref.n_frames - 0.5)
    index, ncc = align.match_frames(leak_small, master_small, predicted - first, reach=1)
    index = np.where(inside & (index >= 0), index + first, -1)
    good = index >= 0
    median = float(np.median(ncc[good])) if good.any() else 0.0
    index[ncc < max(MIN_FRAME_NCC, median - FRAME_NCC_DROP)] = -1
    if progress is not None:
        progress("align", 3, 3)
    result.master_frames, result.frame_ncc = index, ncc
    result.matched = bool((index >= 0).any())
    result.reason = "" if result.matched else "the leak does not match this title: no leak frame matches a master frame"
    return result, master, first


# ----------------------------------------------------------------------------- detect

def detect_positions(clip: LeakClip, ref: Reference, alignment: Alignment, master: np.ndarray, first: int, *,
                     progress: TraceProgress | None = None) -> Detection:
    """Residuals of the well-aligned interior frames, averaged per position, scored into (zA, zB) and symbols."""
    det_size = (ref.det_width, ref.det_height)
    owner = ref.position_of_frame()
    starts, counts = ref.positions[:, 0], ref.positions[:, 1]
    mask = align.valid_mask(alignment.geometry, alignment.box, det_size)
    z = np.full((ref.n_positions, 2), np.nan, np.float32)
    frames_used = np.zeros(ref.n_positions, np.int32)

    k = alignment.master_frames
    pos = np.where(k >= 0, owner[np.maximum(k, 0)], -1)
    # frames at position boundaries are smeared by re-encoders: use interior frames only
    interior = (pos >= 0) & (k != starts[pos]) & (k != starts[pos] + counts[pos] - 1)
    leak_index = np.flatnonzero(interior)
    order = leak_index[np.argsort(pos[leak_index], kind="stable")]
    groups = np.split(order, np.flatnonzero(np.diff(pos[order])) + 1) if len(order) else []

    def score(group: np.ndarray) -> tuple[int, np.ndarray, int]:
        position = int(pos[group[0]])
        leak = np.stack([align.warp_to_master(clip.frames[j], alignment.geometry, det_size) for j in group])
        residual, weight = detect.residual_sum(leak, master[k[group] - first], mask)
        peak = float(weight.max())
        if peak == 0:
            return position, np.full(2, np.nan, np.float32), len(group)
        # pixels seen in fewer than half the frames are dropped: their mean is noisier
        norm = np.where(weight >= 0.5 * peak, weight / peak, 0).astype(np.float32)
        return position, detect.position_z(residual / np.maximum(weight, 1), norm, ref.templates(position)), len(group)

    done = 0
    # OpenCV and numpy release the GIL in the heavy calls, so two threads use both cores
    with ThreadPoolExecutor(max_workers=DETECT_THREADS) as pool:
        for position, z_position, used in pool.map(score, groups):
            z[position], frames_used[position] = z_position, used
            done += used
            if progress is not None:
                progress("detect", done, len(leak_index))
    return Detection(z, detect.decide(z), frames_used)


# ----------------------------------------------------------------------------- trace

def observe(leak_path: str | Path, ref: Reference, *, progress: TraceProgress | None = None
            ) -> tuple[LeakClip, Alignment, Detection | None, dict[str, float]]:
    """Decode, align and detect: the per-position observations of a leak, before any scoring."""
    seconds: dict[str, float] = {}
    prefetch: LumaPrefetch | None = None

    def on_head(frames: np.ndarray, times: np.ndarray, end: float) -> None:
        nonlocal prefetch
        prefetch = prefetch_master(frames, times, end, ref)

    try:
        clip = decode_leak(leak_path, ref, on_head=on_head, progress=progress)
        seconds["decode"] = clip.decode_seconds
        start = time.perf_counter()
        alignment, master, first = align_leak(clip, ref, prefetch=prefetch, progress=progress)
        seconds["align"] = time.perf_counter() - start
    finally:
        if prefetch is not None:
            prefetch.cancel()
    if not alignment.matched:
        return clip, alignment, None, seconds
    start = time.perf_counter()
    detection = detect_positions(clip, ref, alignment, master, first, progress=progress)
    seconds["detect"] = time.perf_counter() - start
    return clip, alignment, detection, seconds


def trace(leak_path: str | Path, outdir: str | Path, tags: Sequence[str], *, simulate_tags: int = 0,
          progress: TraceProgress | None = None) -> TraceReport:
    """Trace a leak against a prepared title and candidate tags; accuse only under the proven bound."""
    from leaktrace.autograph import code, package

    title = package.load_title(outdir)
    ref = load_reference(outdir)
    clip, alignment, detection, seconds = observe(leak_path, ref, progress=progress)
    report = TraceReport(None, alignment.reason, alignment, detection, len(clip.frames), clip.size, seconds)
    if detection is None:
        return report
    examined = detection.examined
    present = len(detection.observed)
    z = detection.z.astype(np.float32)  # NaN where not observed, as the scorer expects
    start = time.perf_counter()
    verdict = code.accuse(code.Observations(symbols=detection.symbols, z=z), key=title.key, tags=list(tags),
                          simulate_tags=simulate_tags,
                          progress=(lambda d, t: progress("score", d, t)) if progress is not None else None)
    seconds["score"] = time.perf_counter() - start
    report.verdict = verdict
    if verdict.accused:
        report.reason = verdict.reason or f"{len(verdict.accused)} tag(s) reach the bound"
    elif present == 0:
        report.reason = (f"the leak matches this title but no position carries a readable mark "
                         f"({len(examined)} positions examined): an unmarked copy or a destroyed mark")
    else:
        report.reason = verdict.reason or f"{present} positions observed but no tag reaches the bound"
    return report
