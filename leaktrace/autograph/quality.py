"""Imperceptibility: luma PSNR (and SSIM) of the decoded variants against the decoded unmarked encode.

The strength levels are defined on exactly this measurement: variant A (or B) of a prepared title,
decoded, against an unmarked encode of the same rendition with the same encoder settings, decoded.
PSNR is computed over the whole title from the mean squared error of all luma samples
(`psnr_db`); the mean and minimum of the per-frame PSNRs are reported beside it. PSNR says how
much mark there is, not where: `visibility` scores it block by block against the content, since
the same error that hides in texture shows in flat sky.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import av
import cv2
import numpy as np

from leaktrace.autograph.assemble import variant_copy
from leaktrace.autograph.embed import encode_unmarked, source_frames, target_mse
from leaktrace.autograph.package import load_title


def decode_luma(source: str | os.PathLike[str] | BinaryIO) -> Iterator[np.ndarray]:
    """Yield the luma plane of every decoded frame, uint8 (H, W), in presentation order."""
    with av.open(source if not isinstance(source, os.PathLike) else str(source)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            plane = frame.planes[0]
            yield np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width].copy()


def psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    """PSNR in dB for a mean squared error (inf for identical images)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two uint8 luma images (Gaussian window sigma 1.5, the usual constants)."""
    x, y = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


@dataclass
class QualityResult:
    """Luma quality of one variant against the unmarked encode."""

    psnr_db: float                # from the MSE over all frames
    mean_frame_psnr_db: float
    min_frame_psnr_db: float
    ssim: float                   # mean over the frames measured (every `ssim_every`-th frame)
    frames: int
    # PSNR over the first picture of every position, the IDR that carries the mark itself; the rest
    # of the GOP carries it by prediction and loses it where content moves in. Below `psnr_db`: the
    # mark fades along the GOP; near it: each picture holds what the IDR holds.
    idr_psnr_db: float
    position_psnr_db: list[float] = field(default_factory=list)
    # How much the mark changes from one frame to the next (RMS of the change of the difference to
    # the unmarked encode, luma levels): across position switches, where a copy may switch
    # variant and a new pattern starts, and between frames within positions.
    switch_step: float | None = None   # None: a single position
    frame_step: float | None = None
    # The most the mark shows in any block of any frame (`visibility`), and where: (frame, block row, column).
    max_visibility: float = 0.0
    most_visible: tuple[int, int, int] = (0, 0, 0)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# Side in pixels of the blocks over which a decoded mark is judged against the content (`visibility`).
VISIBILITY_BLOCK = 32


def _block_means(image: np.ndarray) -> np.ndarray:
    """Mean of each whole VISIBILITY_BLOCK square of a float32 (H, W) image, float32 (H // 32, W // 32)."""
    b = VISIBILITY_BLOCK
    h, w = (image.shape[0] // b) * b, (image.shape[1] // b) * b
    if h == 0 or w == 0:   # smaller than one block
        return np.zeros((h // b, w // b), np.float32)
    return cv2.resize(image[:h, :w], (w // b, h // b), interpolation=cv2.INTER_AREA)


def block_rms(image: np.ndarray) -> np.ndarray:
    """RMS of each whole VISIBILITY_BLOCK square of a float32 (H, W) image, float32 (H // 32, W // 32)."""
    return np.sqrt(_block_means(np.square(image)))


def block_activity(luma: np.ndarray) -> np.ndarray:
    """Standard deviation of each whole VISIBILITY_BLOCK square of a (H, W) picture, float32 (H // 32, W // 32)."""
    picture = luma.astype(np.float32)
    return np.sqrt(np.maximum(_block_means(np.square(picture)) - np.square(_block_means(picture)), 0.0))


def visibility(mark: np.ndarray, content: np.ndarray) -> np.ndarray:
    """How plainly a mark shows, per block, float32 (H // 32, W // 32): the RMS of the mark (float32
    (H, W), marked minus unmarked luma) over 1 + the standard deviation of the unmarked `content`
    (H, W) there. A mark as strong as the content's own detail scores about 1; one in flat sky
    scores its RMS in levels."""
    return block_rms(mark) / (1.0 + block_activity(content))


def independent_step(strength: str) -> float:
    """Where positions switch, the step (luma levels, RMS) of a pattern drawn per position at the strength's PSNR.

    Two independent patterns of RMS r differ by sqrt(2) x r: the yardstick for the mark's `switch_step`.
    """
    return math.sqrt(2 * target_mse(strength))


def compare_luma(marked: Iterator[np.ndarray], unmarked: Iterator[np.ndarray], *, frames_per_position: int,
                 ssim_every: int = 10) -> QualityResult:
    """PSNR/SSIM of two decoded luma sequences of equal length, frame by frame, and the mark's steps."""
    squared_errors: list[float] = []
    ssims: list[float] = []
    steps: dict[bool, list[float]] = {True: [], False: []}   # at a position switch or not -> mean squared step
    previous = None
    shows, where = 0.0, (0, 0, 0)
    for index, (a, b) in enumerate(zip(marked, unmarked, strict=True)):
        diff = a.astype(np.int16) - b.astype(np.int16)
        mark = diff.astype(np.float32)
        squared_errors.append(float(np.mean(mark ** 2)))
        scores = visibility(mark, b)
        if scores.size and scores.max() > shows:
            shows, where = float(scores.max()), (index, *map(int, np.unravel_index(int(scores.argmax()), scores.shape)))
        if index % ssim_every == 0:
            ssims.append(ssim(a, b))
        if previous is not None:
            steps[index % frames_per_position == 0].append(float(np.mean(np.square(diff - previous, dtype=np.float32))))
        previous = diff
    mse = np.asarray(squared_errors)
    frame_psnr = [psnr_from_mse(m) for m in mse]
    positions = [psnr_from_mse(float(mse[i:i + frames_per_position].mean()))
                 for i in range(0, len(mse), frames_per_position)]
    return QualityResult(
        psnr_db=psnr_from_mse(float(mse.mean())),
        mean_frame_psnr_db=float(np.mean(frame_psnr)),
        min_frame_psnr_db=float(np.min(frame_psnr)),
        ssim=float(np.mean(ssims)),
        frames=len(mse),
        position_psnr_db=positions,
        idr_psnr_db=psnr_from_mse(float(mse[::frames_per_position].mean())),
        switch_step=math.sqrt(np.mean(steps[True])) if steps[True] else None,
        frame_step=math.sqrt(np.mean(steps[False])) if steps[False] else None,
        max_visibility=shows,
        most_visible=where,
    )


def measure_psnr(input_path: str | os.PathLike[str], outdir: str | os.PathLike[str], *,
                 unmarked_path: str | os.PathLike[str] | None = None,
                 variants: tuple[str, ...] = ("A", "B")) -> dict[str, QualityResult]:
    """Quality of each variant of the prepared title in `outdir` against the unmarked encode.

    The unmarked encode of `input_path` is made with the title's own settings (into
    `unmarked_path` if given and missing, else into a temporary file); an existing
    `unmarked_path` is reused, so several strengths can share one baseline.
    """
    title = load_title(outdir)
    manifest = title.manifest
    with tempfile.TemporaryDirectory(prefix="leaktrace-quality-") as tmp:
        baseline = Path(unmarked_path) if unmarked_path is not None else Path(tmp) / "unmarked.mp4"
        if not baseline.exists():
            encode_unmarked(input_path, baseline, manifest)
        results = {}
        for variant in variants:
            with variant_copy(title, variant) as copy, copy.open() as stream:
                results[variant] = compare_luma(decode_luma(stream), decode_luma(baseline),
                                                frames_per_position=manifest["frames_per_position"])
    return results


def codec_quality(input_path: str | os.PathLike[str], unmarked_path: str | os.PathLike[str],
                  manifest: dict[str, Any]) -> QualityResult:
    """The unmarked encode against the input's frames: what the codec alone changes (the mark's yardstick)."""
    height = manifest["rendition"]["height"]
    source = (frame[:height] for frame in source_frames(input_path, manifest))
    return compare_luma(decode_luma(unmarked_path), source, frames_per_position=manifest["frames_per_position"])
