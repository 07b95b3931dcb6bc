"""One chunk of a title prepared on its own: U encoded, each position marked per variant and measured.

A chunk (`plan.Chunk`: consecutive positions) gets a fresh libx264 encoder for U and a fresh
strength control, so its packets, marked pictures and templates depend on its frames and the
title's settings only. That is what lets chunks run in any process, in any order, and still
stitch into the same bytes (`parallel.py`). `prepare_chunk` is the function a worker process runs;
its job and result are plain data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import av
import numpy as np

from leaktrace.autograph import h264, pattern
from leaktrace.autograph.encoder import EncodedPacket, intra_qp, x264_encoder, yuv_frame
from leaktrace.autograph.intra import IntraMarker
from leaktrace.autograph.marker import MASK_FLOOR, PositionMarker
from leaktrace.autograph.plan import Chunk, PrepareCancelled, PrepareError, Rendition, target_mse
from leaktrace.autograph.strength import DEFAULT_MODEL, StrengthControl

VARIANTS = ("A", "B")


@dataclass(frozen=True)
class ChunkJob:
    """What a chunk needs besides its frames. Without `strength` (and `key`) only U is encoded."""

    chunk: Chunk
    rendition: Rendition
    crf: int
    preset: str
    parameter_sets: tuple[bytes, ...]   # the title's SPS and PPS, which U's encoder must reproduce
    strength: str | None = None
    key: bytes | None = field(default=None, repr=False)


@dataclass
class ChunkResult:
    """A prepared chunk: U's packets in decode order and, per variant, the pictures that replace some of them.

    `pictures[v]` maps a packet's number in `packets` to the variant's access unit; `templates`
    maps a position to each variant's float32 (height, width) template; `rms` maps a position to
    each variant's delta RMS; `squared_error` is each variant's luma squared error against U over
    the chunk.
    """

    chunk: Chunk
    packets: list[EncodedPacket] = field(default_factory=list)
    pictures: dict[str, dict[int, bytes]] = field(default_factory=dict)
    templates: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    rms: dict[int, dict[str, float]] = field(default_factory=dict)
    model_scale: dict[str, float] = field(default_factory=dict)
    squared_error: dict[str, float] = field(default_factory=dict)
    intra_pictures: int = 0
    cpu_seconds: float = 0.0   # CPU time of the process that prepared the chunk, while it did


def prepare_chunk(job: ChunkJob, frames: Sequence[np.ndarray], *, on_position: Callable[[int], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> ChunkResult:
    """Encode the chunk's `frames` (yuv420p, its frame count of them) as U and mark every position.

    `on_position(frames)` is called as each position's frames are encoded; `cancelled` is polled
    before each position. Errors are PrepareError (plain data, so they cross process boundaries).
    """
    began = time.process_time()
    try:
        result = _ChunkPreparer(job).run(frames, on_position=on_position, cancelled=cancelled)
    except av.FFmpegError as exc:
        raise PrepareError(f"decoding or encoding failed: {exc}") from None
    except h264.UnsupportedSyntax as exc:
        raise PrepareError(f"the unmarked encode uses H.264 syntax the marker cannot rewrite: {exc}") from None
    result.cpu_seconds = time.process_time() - began
    return result


class _ChunkPreparer:
    """U's encoder and the position marker of one chunk; `run` feeds the frames and gathers the result."""

    def __init__(self, job: ChunkJob):
        self.job, self.rendition = job, job.rendition
        self.encoder = x264_encoder(job.rendition, global_header=True, crf=job.crf, preset=job.preset)
        self.encoder.open()
        headers = h264.parameter_set_units(h264.nal_units(bytes(self.encoder.extradata or b"")))
        if headers != list(job.parameter_sets):
            raise PrepareError("the unmarked encoder of a chunk does not reproduce the title's parameter sets")
        self.result = ChunkResult(job.chunk, pictures={v: {} for v in VARIANTS} if job.strength else {})
        self.controls: dict[str, StrengthControl] = {}
        self.marker = None
        if job.strength is not None:
            self.controls = {v: StrengthControl(DEFAULT_MODEL, target_mse=target_mse(job.strength),
                                                positions=job.chunk.positions) for v in VARIANTS}
            intra = IntraMarker(job.rendition, qp=intra_qp(job.crf), preset=job.preset,
                                parameter_sets=list(job.parameter_sets))
            self.marker = PositionMarker(job.rendition, job.chunk.positions, intra, self.controls,
                                         mask_floor=MASK_FLOOR[job.strength])
        self._gop: list[av.Packet] = []

    def run(self, frames: Sequence[np.ndarray], *, on_position: Callable[[int], None] | None,
            cancelled: Callable[[], bool] | None) -> ChunkResult:
        r, chunk = self.rendition, self.job.chunk
        if len(frames) != chunk.frame_count:
            raise PrepareError(f"chunk {chunk.index} got {len(frames)} frames instead of {chunk.frame_count}")
        number = chunk.first_frame
        for position in chunk.positions:
            if cancelled is not None and cancelled():
                raise PrepareCancelled("prepare was cancelled")
            for _ in range(position["frame_count"]):
                yuv = frames[number - chunk.first_frame]
                self._take(self.encoder.encode(yuv_frame(yuv, number, idr=number % r.frames_per_position == 0)))
                number += 1
            if on_position is not None:
                on_position(position["frame_count"])
        self._take(self.encoder.encode(None))
        if self._gop:
            self._close_gop()
        if self.marker is not None:
            self.result.model_scale = {v: control.scale for v, control in self.controls.items()}
            self.result.squared_error = dict(self.marker.squared_error)
            self.result.intra_pictures = self.marker.intra_pictures
        return self.result

    def _take(self, packets: list[av.Packet]) -> None:
        """Collect U's packets; a key frame closes the previous GOP (one position)."""
        for packet in packets:
            if packet.is_keyframe and self._gop:
                self._close_gop()
            self._gop.append(packet)

    def _close_gop(self) -> None:
        r, result, gop = self.rendition, self.result, self._gop
        index = gop[0].pts // r.frames_per_position
        offset = len(result.packets)
        result.packets.extend(EncodedPacket.of(packet) for packet in gop)
        if self.marker is not None:
            noise = {v: pattern.keyed_noise(self.job.key, index, v, r.height, r.width) for v in VARIANTS}
            pictures, templates = self.marker.mark(index, gop, noise)
            for v, by_number in pictures.items():
                result.pictures[v].update({offset + number: data for number, data in by_number.items()})
            result.templates[index] = templates
            result.rms[index] = {v: control.chosen[index] for v, control in self.controls.items()}
        self._gop = []
