"""The detection reference: a small summary of the unmarked master that tracing needs.

Tracing compares a leak with the unmarked master frame by frame. Re-decoding the full-resolution
master for every trace would cost as much as the leak itself several times over, so `prepare()`
writes this reference once, while it decodes the source anyway, and `trace()` reads only it.

Everything lives at a reduced *detection resolution*: the master's aspect ratio with a height of at
most `DETECTION_HEIGHT` (180) pixels, both sides even. The keyed patterns are low-frequency
(sigma = 3 px at 720p), so most of their energy survives the 4x reduction, and leaks of 360p or
less are compared at about their own resolution.

Folder `OUTDIR/reference/`:

    meta.json          format version, master width/height, frame rate (num/den), detection
                       width/height, frame count, positions as [first_frame, frame_count] pairs,
                       fingerprint size
    luma.mkv           the unmarked master luma at detection resolution, one video frame per
                       source frame (libx264 at constant QP 18, preset superfast, tune fastdecode,
                       keyframe every 48 frames, no B-frames; luma RMS error 1-2 levels, chroma
                       planes constant). QP 18 keeps about 96 % of the z that QP 12 gives at 40 % of
                       its size; superfast encodes in 1.0 ms a frame against veryfast's 1.9 ms
                       (960x540 source) for 4 % more bytes.
    fingerprints.npy   int8 (n_frames, 18, 32): each frame as a zero-mean 32x18 thumbnail scaled
                       to peak 127, for temporal alignment (a flat frame is all zeros); the
                       loader turns them into unit-norm float32
    templates.npy      uint8 (n_positions, 2, det_h, det_w / 2): the A and B luma deltas of every
                       position at detection resolution, quantised to 4-bit signed values
                       (-7..7, clipped at 3 sigma, offset by 8) and packed two per byte; the
                       correlation with the exact delta is > 0.99
    template_scales.npy float32 (n_positions, 2): multiply a 4-bit value by its scale to get levels

The templates are the marks the decoded variants carry, averaged over each position's interior
frames (measured by `embed.py`, see docs/autograph-format.md), reduced with area averaging.

Size, measured on Big Buck Bunny 0-30 s at 1280x720/24 fps, 2 s positions, per minute of title:
luma 3.2 MB (3.6 MB with tune fastdecode), templates 1.7 MB (3.5 MB with 1 s positions),
fingerprints 0.8 MB; about 6 MB in all, against 28 MB for the A and B variants at CRF 20. The detection grid does not grow with the
master, so the share falls further at 1080p.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

FORMAT_VERSION = 1
DETECTION_HEIGHT = 180
FINGERPRINT_SIZE = (32, 18)  # (width, height)
_LUMA_QP = 18
_KEYINT = 48  # seek granularity inside luma.mkv, in frames


def detection_size(width: int, height: int) -> tuple[int, int]:
    """Return the (det_width, det_height) used for a master of width x height: height <= 180, even sides."""
    scale = min(1.0, DETECTION_HEIGHT / height)
    det_w = max(2, int(round(width * scale / 2)) * 2)
    det_h = max(2, int(round(height * scale / 2)) * 2)
    return det_w, det_h


def fingerprint(luma: np.ndarray) -> np.ndarray:
    """Return the zero-mean, unit-norm 32x18 float32 thumbnail of a luma image (H, W); zeros if flat."""
    if luma.dtype == np.uint8 and luma.shape[0] >= 4 * FINGERPRINT_SIZE[1] and luma.shape[1] >= 4 * FINGERPRINT_SIZE[0]:
        # an exact integer area reduction first: the fractional one is slow on large frames
        fy, fx = luma.shape[0] // (2 * FINGERPRINT_SIZE[1]), luma.shape[1] // (2 * FINGERPRINT_SIZE[0])
        h, w = luma.shape[0] // fy, luma.shape[1] // fx
        luma = cv2.resize(luma[:h * fy, :w * fx], (w, h), interpolation=cv2.INTER_AREA)
    thumb = cv2.resize(luma.astype(np.float32), FINGERPRINT_SIZE, interpolation=cv2.INTER_AREA)
    thumb -= thumb.mean()
    norm = float(np.linalg.norm(thumb))
    return thumb / norm if norm > 1e-3 else np.zeros_like(thumb)


def _quantise_fingerprint(thumb: np.ndarray) -> np.ndarray:
    """int8 copy of a unit-norm thumbnail (the loader renormalises, so the scale need not be kept)."""
    peak = float(np.abs(thumb).max())
    return np.round(thumb * (127.0 / peak)).astype(np.int8) if peak > 0 else np.zeros(thumb.shape, np.int8)


_TEMPLATE_LEVELS = 7  # 4-bit signed values -7..7
_TEMPLATE_CLIP_SIGMAS = 3.0


def _pack_template(delta: np.ndarray) -> tuple[np.ndarray, float]:
    """Quantise a float32 (h, w) delta to 4 bits (clipped at 3 sigma) packed two per byte: (uint8 (h, w/2), scale)."""
    scale = _TEMPLATE_CLIP_SIGMAS * float(delta.std()) / _TEMPLATE_LEVELS
    if scale == 0:
        return np.full((delta.shape[0], delta.shape[1] // 2), 0x88, np.uint8), 0.0
    q = np.clip(np.round(delta / scale), -_TEMPLATE_LEVELS, _TEMPLATE_LEVELS).astype(np.int16) + 8
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), scale


def _unpack_template(packed: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of `_pack_template`: float32 (h, w) in luma levels."""
    packed = np.asarray(packed)
    q = np.empty((packed.shape[0], packed.shape[1] * 2), np.float32)
    q[:, 0::2] = (packed & 0x0F).astype(np.float32) - 8
    q[:, 1::2] = (packed >> 4).astype(np.float32) - 8
    return q * np.float32(scale)


def _position_span(position: Any) -> tuple[int, int]:
    """(first_frame, frame_count) of a manifest position given as a mapping, an object or a pair."""
    if isinstance(position, Mapping):
        return int(position["first_frame"]), int(position["frame_count"])
    if hasattr(position, "first_frame"):
        return int(position.first_frame), int(position.frame_count)
    first, count = position
    return int(first), int(count)


class ReferenceBuilder:
    """Collects the unmarked frames and the per-position deltas during prepare; `close()` writes the folder."""

    def __init__(self, outdir: str | Path, *, width: int, height: int, fps: Fraction, positions: Sequence[Any]):
        self.folder = Path(outdir) / "reference"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.width, self.height, self.fps = int(width), int(height), Fraction(fps)
        self.positions = [_position_span(p) for p in positions]
        self.det_w, self.det_h = detection_size(self.width, self.height)
        n_pos = len(self.positions)
        self._templates = np.zeros((n_pos, 2, self.det_h, self.det_w // 2), np.uint8)
        self._scales = np.zeros((n_pos, 2), np.float32)
        self._have_position = np.zeros(n_pos, bool)
        self._fingerprints: list[np.ndarray] = []
        self._chroma = np.full((self.det_h // 2, self.det_w), 128, np.uint8)
        # bitexact: no random segment UID or date, so a title's reference is the same bytes every time
        self._container = av.open(str(self.folder / "luma.mkv"), "w", options={"fflags": "+bitexact"})
        self._stream = self._container.add_stream("libx264", rate=self.fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.det_w, self.det_h, "yuv420p"
        # fastdecode (no CABAC, no deblocking): every trace decodes this, 44 % less CPU for 13 % more bytes
        self._stream.options = {"qp": str(_LUMA_QP), "preset": "superfast", "tune": "fastdecode", "g": str(_KEYINT),
                                "bframes": "0", "threads": "1"}
        self._closed = False

    @property
    def n_frames(self) -> int:
        return len(self._fingerprints)

    def add_frame(self, index: int, luma: np.ndarray) -> None:
        """Add unmarked source frame `index` (uint8 luma, shape (height, width)); frames must come in order."""
        if index != self.n_frames:
            raise ValueError(f"expected frame {self.n_frames}, got {index}")
        if luma.shape != (self.height, self.width):
            raise ValueError(f"frame {index} has shape {luma.shape}, expected {(self.height, self.width)}")
        small = cv2.resize(luma, (self.det_w, self.det_h), interpolation=cv2.INTER_AREA)
        self._fingerprints.append(_quantise_fingerprint(fingerprint(small)))
        frame = av.VideoFrame.from_ndarray(np.concatenate([small, self._chroma]), format="yuv420p")
        frame.pts = index
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def add_position(self, position: int, delta_a: np.ndarray, delta_b: np.ndarray) -> None:
        """Store the float32 (height, width) luma marks of variant A and B at `position`."""
        for variant, delta in enumerate((delta_a, delta_b)):
            small = cv2.resize(np.asarray(delta, np.float32), (self.det_w, self.det_h), interpolation=cv2.INTER_AREA)
            self._templates[position, variant], self._scales[position, variant] = _pack_template(small)
        self._have_position[position] = True

    def close(self) -> None:
        """Flush the luma video and write the arrays and meta.json."""
        if self._closed:
            return
        self._closed = True
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        if not self._have_position.all():
            missing = np.flatnonzero(~self._have_position)[:5].tolist()
            raise ValueError(f"no deltas for positions {missing}...")
        np.save(self.folder / "fingerprints.npy", np.stack(self._fingerprints) if self._fingerprints
                else np.zeros((0, FINGERPRINT_SIZE[1], FINGERPRINT_SIZE[0]), np.int8))
        np.save(self.folder / "templates.npy", self._templates)
        np.save(self.folder / "template_scales.npy", self._scales)
        meta = {
            "version": FORMAT_VERSION,
            "width": self.width, "height": self.height,
            "fps": [self.fps.numerator, self.fps.denominator],
            "det_width": self.det_w, "det_height": self.det_h,
            "n_frames": self.n_frames,
            "positions": [list(p) for p in self.positions],
            "fingerprint_size": list(FINGERPRINT_SIZE),
        }
        (self.folder / "meta.json").write_text(json.dumps(meta, indent=1))


@dataclass
class Reference:
    """A loaded detection reference. Arrays are memory-mapped; luma frames are decoded on demand."""

    folder: Path
    width: int
    height: int
    fps: Fraction
    det_width: int
    det_height: int
    n_frames: int
    positions: np.ndarray          # int64 (n_positions, 2): first_frame, frame_count
    fingerprints: np.ndarray       # float32 (n_frames, 18, 32), zero-mean unit-norm (or zero)
    templates_packed: np.ndarray   # uint8 (n_positions, 2, det_h, det_w // 2), 4-bit pairs
    template_scales: np.ndarray    # float32 (n_positions, 2)

    @property
    def n_positions(self) -> int:
        return len(self.positions)

    def position_of_frame(self) -> np.ndarray:
        """int64 (n_frames,): the position each master frame belongs to (-1 outside every position)."""
        owner = np.full(self.n_frames, -1, np.int64)
        for i, (first, count) in enumerate(self.positions):
            owner[first:first + count] = i
        return owner

    def templates(self, position: int) -> np.ndarray:
        """float32 (2, det_h, det_w): the A and B deltas of `position` in luma levels."""
        return np.stack([_unpack_template(self.templates_packed[position, v], float(self.template_scales[position, v]))
                         for v in (0, 1)])

    def iter_luma(self, first: int = 0, stop: int | None = None, *,
                  cancel: threading.Event | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame_index, uint8 (det_h, det_w) view) for master frames first <= index < stop, in order.

        The view is only valid until the next frame is yielded: copy it to keep it. Setting `cancel`
        ends the iteration early.
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        if first >= stop:
            return
        with av.open(str(self.folder / "luma.mkv")) as container:
            stream = container.streams.video[0]
            # no frame threads: at detection size they cost more in hand-offs than they gain
            stream.thread_type = "SLICE"
            if first > 0:
                container.seek(int((Fraction(first) / self.fps) / stream.time_base), stream=stream, backward=True)
            fps = float(self.fps)
            for frame in container.decode(stream):
                index = int(round(frame.time * fps))
                if index < first:
                    continue
                if index >= stop or (cancel is not None and cancel.is_set()):
                    break
                plane = frame.planes[0]
                yield index, np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]

    def luma(self, first: int = 0, stop: int | None = None, *, cancel: threading.Event | None = None) -> np.ndarray:
        """uint8 (n, det_h, det_w): master frames first..stop-1 at detection resolution."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        frames = np.zeros((max(stop - first, 0), self.det_height, self.det_width), np.uint8)
        count = 0
        for index, luma in self.iter_luma(first, stop, cancel=cancel):
            frames[index - first] = luma
            count = index - first + 1
        return frames[:count]


class LumaPrefetch:
    """Master luma of a frame range, decoded on a background thread while the caller does other work.

    `luma(first, stop)` then serves any range: the prefetched part from memory, the rest decoded
    on the spot, so a prefetch that guessed the range wrong costs time, never correctness.
    """

    def __init__(self, ref: Reference, first: int, stop: int) -> None:
        self.ref = ref
        self.first = first
        self._frames = np.zeros((0, ref.det_height, ref.det_width), np.uint8)
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._decode, args=(first, stop), name="luma-prefetch", daemon=True)
        self._thread.start()

    def _decode(self, first: int, stop: int) -> None:
        self._frames = self.ref.luma(first, stop, cancel=self._cancel)

    def cancel(self) -> None:
        """Stop decoding (if still running) and wait for the thread."""
        self._cancel.set()
        self._thread.join()

    def luma(self, first: int, stop: int) -> np.ndarray:
        """uint8 (n, det_h, det_w): master frames first..stop-1, as `Reference.luma` returns them."""
        self._thread.join()
        stop = min(stop, self.ref.n_frames)
        have_first, have_stop = self.first, self.first + len(self._frames)
        if self._cancel.is_set() or have_stop <= first or stop <= have_first:
            return self.ref.luma(first, stop)
        parts = []
        if first < have_first:
            parts.append(self.ref.luma(first, have_first))
        parts.append(self._frames[max(first, have_first) - have_first:min(stop, have_stop) - have_first])
        if stop > have_stop:
            parts.append(self.ref.luma(have_stop, stop))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _load_fingerprints(path: Path) -> np.ndarray:
    """float32 (n, 18, 32) unit-norm thumbnails from the stored int8 copies."""
    thumbs = np.load(path).astype(np.float32)
    norms = np.linalg.norm(thumbs.reshape(len(thumbs), -1), axis=1)
    thumbs /= np.where(norms > 0, norms, 1.0)[:, None, None]
    return thumbs


def load_reference(outdir: str | Path) -> Reference:
    """Load OUTDIR/reference/ written by `ReferenceBuilder`."""
    folder = Path(outdir) / "reference"
    meta = json.loads((folder / "meta.json").read_text())
    if meta["version"] != FORMAT_VERSION:
        raise ValueError(f"reference format {meta['version']} is not supported (expected {FORMAT_VERSION})")
    return Reference(
        folder=folder,
        width=meta["width"], height=meta["height"], fps=Fraction(*meta["fps"]),
        det_width=meta["det_width"], det_height=meta["det_height"], n_frames=meta["n_frames"],
        positions=np.asarray(meta["positions"], np.int64).reshape(-1, 2),
        fingerprints=_load_fingerprints(folder / "fingerprints.npy"),
        templates_packed=np.load(folder / "templates.npy", mmap_mode="r"),
        template_scales=np.load(folder / "template_scales.npy"),
    )
