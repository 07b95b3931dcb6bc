"""libx264 as the variants use it: settings, encoders, frames in and packets out.

Every encoder of a title (the unmarked encode U of each chunk, the one-picture encodes of the marked
intra pictures) uses the same settings, so that their slices fit one set of SPS and PPS.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from leaktrace.autograph.plan import Rendition

# libx264 parameters of U and of the marked pictures.
# - Positions: each position's first frame is forced to an IDR picture (`yuv_frame`) and the GOPs
#   are closed, so a position is one GOP. libx264 places no keyframe of its own (`keyint=infinite`),
#   and a scene cut becomes an intra picture that is not an IDR (`min-keyint` above any GOP: x264
#   caps it at keyint/2 + 1, so with a finite keyint a cut in a GOP's second half starts a new one).
#   Those intra pictures are marked too: after a cut, U codes the new scene afresh and the IDR's
#   mark would be gone until the next position.
# - `stitchable` keeps the sequence and picture parameter sets independent of the rate control,
#   so the marked pictures (constant QP) fit the unmarked encode's (CRF) headers.
# - Weighted P prediction is off: it scales the reference, so in a fade from black it scaled the
#   mark of a marked IDR along with it (a fade-in measured 21-25 dB instead of 44).
# - Intra blocks of P and B pictures predict only from intra blocks (`constrained-intra`): from
#   their marked neighbours, U's plane and DC predictions chained the mark across smooth areas and
#   grew it into blocky patches (sintel, strong: a block at 4.3 levels RMS from a mark of at most
#   1.3, seen at 1:1; most visible block 8.0 with the chains, 2.7 without).
X264_PARAMS = "keyint=infinite:min-keyint=1000000:scenecut=40:open-gop=0:weightp=0:stitchable=1:constrained-intra=1"

# One thread per encoder, a fixed number: the bitstream does not depend on the machine, and the
# cores are used by preparing chunks side by side (`parallel.py`) rather than by threads that
# wait on each other.
X264_THREADS = 1

# The marked pictures are coded at constant QP CRF + INTRA_QP_OFFSET (measured on tears_of_steel,
# CRF 20: QP 16/19/22 make the variants 6.7/2.9/0.5 % larger than U and keep 100/96/94 % of the
# mark).
INTRA_QP_OFFSET = -3

_GLOBAL_HEADER = 1 << 22  # AV_CODEC_FLAG_GLOBAL_HEADER: SPS and PPS in extradata, not in the packets
_LIMITED_RANGE = 1        # AVCOL_RANGE_MPEG


def intra_qp(crf: int) -> int:
    """Constant QP of the marked intra pictures for the variants' CRF (see INTRA_QP_OFFSET)."""
    return max(0, crf + INTRA_QP_OFFSET)


def configure_x264(context: av.codec.context.CodecContext, *, preset: str, crf: int | None = None,
                   qp: int | None = None, threads: int = X264_THREADS) -> None:
    """Apply the variants' libx264 settings (rate control: `crf`, or constant `qp`; threads) to an encoder."""
    rate = {"crf": str(crf)} if qp is None else {"qp": str(qp)}
    context.options = {**rate, "preset": preset, "forced-idr": "1", "x264-params": X264_PARAMS}
    context.thread_type = "FRAME"
    context.thread_count = threads


def x264_encoder(rendition: Rendition, *, global_header: bool = False, **settings: Any) -> av.codec.context.CodecContext:
    """A standalone libx264 encoder for yuv420p frames of the rendition (settings as in `configure_x264`).

    With `global_header` the SPS and PPS go to the encoder's extradata, as in an MP4 stream, and
    the packets carry slices only (U's packets must be muxable into the variants' files).
    """
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = rendition.width, rendition.height, "yuv420p"
    encoder.time_base, encoder.framerate = 1 / rendition.fps, rendition.fps
    if global_header:
        encoder.flags |= _GLOBAL_HEADER
        encoder.color_range = _LIMITED_RANGE
    configure_x264(encoder, **settings)
    return encoder


def yuv_frame(yuv: np.ndarray, index: int, *, idr: bool = False) -> av.VideoFrame:
    """A yuv420p frame to encode; `idr` forces an IDR picture (with the `forced-idr` option)."""
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    frame.pts = index
    if idr:
        frame.pict_type = av.video.frame.PictureType.I
    frame.color_range = _LIMITED_RANGE
    return frame


def retimed(data: bytes, like: av.Packet | EncodedPacket) -> av.Packet:
    """A packet of `data` with the timing and key-frame flag of `like`."""
    packet = av.Packet(data)
    packet.pts, packet.dts, packet.time_base = like.pts, like.dts, like.time_base
    packet.duration, packet.is_keyframe = like.duration, like.is_keyframe
    return packet


@dataclass(frozen=True)
class EncodedPacket:
    """One of U's packets as plain data, so that it can travel between processes."""

    data: bytes
    pts: int
    dts: int
    duration: int
    is_keyframe: bool
    time_base: Fraction

    @classmethod
    def of(cls, packet: av.Packet) -> EncodedPacket:
        return cls(bytes(packet), packet.pts, packet.dts, packet.duration or 0, bool(packet.is_keyframe),
                   Fraction(packet.time_base))

    def __bytes__(self) -> bytes:
        return self.data


def reorder_delay_frames(rendition: Rendition, *, crf: int, preset: str) -> int:
    """Frames by which libx264's B-frame reordering delays the first decode time (2 for veryfast).

    The fragmented MP4 muxer starts the video at this delay (it cannot write an edit list into an
    init segment written before the first packet), so the audio is delayed by as much to stay in
    sync. Measured with a tiny encode: the delay depends on the settings, not on the frame size.
    """
    encoder = x264_encoder(dataclasses.replace(rendition, width=64, height=64), crf=crf, preset=preset)
    blank = np.full((96, 64), 128, np.uint8)
    packets = [p for index in range(8) for p in encoder.encode(yuv_frame(blank, index))] + encoder.encode(None)
    return max(0, -min(packet.dts for packet in packets))
