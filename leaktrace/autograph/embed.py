"""`prepare()`: decode the input once, encode it once (U), and make A and B from U by re-encoding its intra pictures.

Pipeline (one decoding pass over the input, after a demux-only packet count):

    demux ─► decode video ─► limited-range 8-bit 4:2:0, even size ─► buffer one position (one GOP)
                                   └─► ReferenceBuilder.add_frame (unmarked luma)
          per position: keyed noise for A and B
          unmarked frames ─► x264 (CRF) ─► U's packets
              intra pictures (the IDR, and any at a scene cut) ─► decode ─► perceptual mask of each
                  ─► + delta(A) / + delta(B)
                  ─► x264 intra (constant QP) ─► the same pictures of A / of B
              other packets ─► unchanged into A and B
          per position, on a second thread (_PositionMarker): A, B and their twins (negated deltas)
              decoded beside U ─► each variant's MSE, re-marked when off ─► detection templates,
              the measured PSNR, and the next positions' RMS (StrengthControl)
          ─► decode audio ─► AAC once ─► the very same packets muxed into A and B

Then `package.split_variants()` cuts both files into `init.mp4`, `A.m4s`, `B.m4s` and
`index.json`, and checks that they are interchangeable fragment by fragment.

Rules decided here (also in docs/autograph-format.md):

- Frame timing: one output frame per decoded source frame, in order, at the source's nominal
  frame rate (constant frame rate; source timestamps are not used, so repeated or irregular
  timestamps cannot shift positions). The frame count is planned from the demuxed packets; if
  the decoder yields fewer frames (undecodable packets), the last frame is repeated to fill the
  plan (`padded_frames` in the manifest); frames beyond the plan are not used.
- Position length: one position is one closed GOP of G = round(position_seconds x fps) frames
  (half up). At 12.5 fps, 1 s gives 13 frames (1.04 s) and 2 s gives 25 (2.0 s); at 29.97 fps,
  2 s gives 60 frames (2.002 s). The last position holds the remaining frames.
- Size: odd widths or heights lose their last column or row (4:2:0 needs even sizes); with
  `height` the frame is scaled to that height, width keeping the aspect ratio, both even.
- Range: full-range sources are converted to limited range before marking.
- Pattern: luma only; one keyed noise per position and variant, shaped by the perceptual mask of
  each of U's decoded intra pictures in the position (its IDR, and any at a scene cut), rounded
  once and added to that picture with saturation. U's P and B pictures, shared byte for byte,
  carry it through the GOP along U's motion vectors.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from leaktrace.autograph import h264, package, pattern

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (frames done, frames planned) while preparing."""

# Target luma PSNR (dB) of a decoded variant against the decoded unmarked encode.
STRENGTH_PSNR_DB = {"light": 48.0, "medium": 44.0, "strong": 40.0}
# Lowest mask gain in flat areas, per strength: stronger marks need more flat-area attenuation.
MASK_FLOOR = {"light": 0.35, "medium": 0.3, "strong": 0.2}
# A level counts as hit when the measured PSNR is within this many dB of its target.
PSNR_TOLERANCE_DB = 1.0
# Why only the intra pictures are re-encoded. Two encodes of the same source, one with a spatial
# pattern added, do not differ by the pattern alone: any spatially varying change makes x264 take
# other decisions everywhere, and the two encodes carry independent coding noise. Measured on
# tears_of_steel (4 s, CRF 20, preset veryfast): a keyed pattern of RMS 1 measured 40.1-40.4 dB
# against the unmarked encode whatever its scale (Gaussian sigma 1.5 to 40 px, or constant 4-16 px
# blocks), 8 dB below the 48.1 dB of the pattern itself; no x264 setting (psy, AQ, mb-tree,
# trellis, deblocking, fixed QP, presets) decoupled the encodes. So the variants are not separate
# encodes: both are the unmarked encode U with the intra pictures of each position replaced by
# intra-coded copies of U's own decoded pictures plus that variant's pattern. The P and B pictures
# are U's, byte for byte; they predict from the marked pictures, so the mark is carried through
# the GOP by U's own motion vectors (it follows the motion rather than staying fixed on screen),
# and nothing else changes. On tears_of_steel at RMS 1 that measures 47.9 dB. The detection
# templates are the decoded differences to U averaged over each position, so they describe
# exactly the mark a copy carries.
# The marked pictures are coded at constant QP CRF + INTRA_QP_OFFSET (measured on tears_of_steel,
# CRF 20: QP 16/19/22 make the variants 6.7/2.9/0.5 % larger than U and keep 100/96/94 % of the
# mark).
INTRA_QP_OFFSET = -3
# The decoded MSE is the intra re-encoding's own error plus a share of the delta's power (see
# `StrengthModel`); prepare() measures what every position really gets, marks it again when it
# lands off, and steers the RMS of the next ones towards the target (`StrengthControl`).
MIN_POSITION_SECONDS = 1.0
MAX_POSITION_SECONDS = 2.0
# Pictures the perceptual mask of a marked picture is taken from: itself and evenly spaced ones that
# carry its mark, up to the next intra picture (every picture of a 2 s position: 0.2 s per position
# at 960x540, 8 of them: 0.05 s).
MASK_SAMPLES = 8
_AUDIO_BITRATE = 128_000
_AAC_PRIMING = 1024  # samples of encoder delay of FFmpeg's AAC encoder
_VARIANTS = ("A", "B")


class PrepareError(Exception):
    """The input cannot be prepared (unreadable, no video, bad options, or inconsistent output)."""


@dataclass(frozen=True)
class Rendition:
    """Geometry and timing of the encoded variants."""

    width: int
    height: int
    fps: Fraction
    frames_per_position: int
    scaled: bool  # True: scaled to `height`; False: cropped by at most one column/row


def frames_per_position(position_seconds: float, fps: Fraction) -> int:
    """GOP length in frames: position_seconds x fps rounded half up (at least 1)."""
    return max(1, int(math.floor(Fraction(position_seconds) * fps + Fraction(1, 2))))


def plan_positions(n_frames: int, frames_per_pos: int, fps: Fraction) -> list[dict[str, Any]]:
    """Positions covering frames 0..n_frames-1, each one GOP: index, first frame, count, times (s)."""
    positions = []
    for index, first in enumerate(range(0, n_frames, frames_per_pos)):
        count = min(frames_per_pos, n_frames - first)
        positions.append({
            "index": index,
            "first_frame": first,
            "frame_count": count,
            "start_s": float(first / fps),
            "end_s": float((first + count) / fps),
        })
    return positions


def target_mse(strength: str) -> float:
    """Luma MSE of a variant against the unmarked encode at the strength's target PSNR."""
    return 255.0**2 / 10.0 ** (STRENGTH_PSNR_DB[strength] / 10.0)


# ---------------------------------------------------------------------------------------------
# Input


def _open_input(input_path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(input_path))
    except (av.FFmpegError, OSError) as exc:
        raise PrepareError(f"cannot read input {input_path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise PrepareError(f"input {input_path} has no video stream")
    return container


def _source_fps(stream: av.video.stream.VideoStream) -> Fraction:
    """Nominal frame rate: the stream's r_frame_rate when plausible, else its average rate."""
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate and 1 <= rate <= 240:
            return Fraction(rate).limit_denominator(1001)
    raise PrepareError("cannot determine the input frame rate")


def _count_video_packets(input_path: Path) -> int:
    """Number of non-empty video packets: the planned frame count (demux only, no decode)."""
    with av.open(str(input_path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _rendition(stream: av.video.stream.VideoStream, fps: Fraction, position_seconds: float,
               height: int | None) -> Rendition:
    src_w, src_h = stream.codec_context.width, stream.codec_context.height
    if not src_w or not src_h:
        raise PrepareError("cannot determine the input frame size")
    if height is None:
        width, out_h, scaled = src_w - src_w % 2, src_h - src_h % 2, False
    else:
        out_h = height - height % 2
        width = max(2, int(round(src_w * out_h / src_h / 2)) * 2)
        scaled = True
    return Rendition(width, out_h, fps, frames_per_position(position_seconds, fps), scaled)


class _FrameConverter:
    """Decoded frame -> contiguous uint8 yuv420p array (height*3/2, width), limited range."""

    def __init__(self, rendition: Rendition):
        self.rendition = rendition

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        r = self.rendition
        src_range = "JPEG" if frame.color_range == 2 or frame.format.name.startswith("yuvj") else "MPEG"
        if r.scaled:
            frame = frame.reformat(width=r.width, height=r.height, format="yuv420p", src_color_range=src_range,
                                   dst_color_range="MPEG", interpolation="AREA")
        else:
            frame = frame.reformat(format="yuv420p", src_color_range=src_range, dst_color_range="MPEG")
        out = np.empty((r.height * 3 // 2, r.width), np.uint8)
        out[: r.height] = _plane(frame, 0)[: r.height, : r.width]
        chroma = out[r.height:].reshape(2, r.height // 2, r.width // 2)
        chroma[0] = _plane(frame, 1)[: r.height // 2, : r.width // 2]
        chroma[1] = _plane(frame, 2)[: r.height // 2, : r.width // 2]
        return out


def _plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    plane = frame.planes[index]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


# ---------------------------------------------------------------------------------------------
# Output


# libx264 parameters of U and of the marked pictures.
# - Positions: each position's first frame is forced to an IDR picture (`_yuv_frame`) and the GOPs
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

# Frame threads, a fixed number: libx264 then encodes while the caller prepares the next frame (the
# A and B encoders run side by side, about twice as fast as with PyAV's default of two slice threads
# per encoder, which serialise), and the bitstream does not depend on the machine's core count.
X264_THREADS = 2


def configure_x264(context: av.codec.context.CodecContext, *, preset: str, crf: int | None = None,
                   qp: int | None = None, threads: int = X264_THREADS) -> None:
    """Apply the variants' libx264 settings (rate control: `crf`, or constant `qp`; threads) to an encoder."""
    rate = {"crf": str(crf)} if qp is None else {"qp": str(qp)}
    context.options = {**rate, "preset": preset, "forced-idr": "1", "x264-params": X264_PARAMS}
    context.thread_type = "FRAME"
    context.thread_count = threads


def _x264_encoder(rendition: Rendition, **settings: Any) -> av.codec.context.CodecContext:
    """A standalone libx264 encoder for yuv420p frames of the rendition (settings as in `configure_x264`)."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = rendition.width, rendition.height, "yuv420p"
    encoder.time_base, encoder.framerate = 1 / rendition.fps, rendition.fps
    configure_x264(encoder, **settings)
    return encoder


def _retimed(data: bytes, like: av.Packet) -> av.Packet:
    """A packet of `data` with the timing and key-frame flag of `like`."""
    packet = av.Packet(data)
    packet.pts, packet.dts, packet.time_base = like.pts, like.dts, like.time_base
    packet.duration, packet.is_keyframe = like.duration, like.is_keyframe
    return packet


def _yuv_frame(yuv: np.ndarray, index: int, *, idr: bool = False) -> av.VideoFrame:
    """A yuv420p frame to encode; `idr` forces an IDR picture (with the `forced-idr` option)."""
    frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
    frame.pts = index
    if idr:
        frame.pict_type = av.video.frame.PictureType.I
    frame.color_range = 1  # limited (MPEG) range
    return frame


# ---------------------------------------------------------------------------------------------
# Marked intra pictures


def encode_marked_idr(yuv: np.ndarray, rendition: Rendition, *, qp: int, preset: str) -> list[bytes]:
    """Intra-code one yuv420p frame as an IDR picture with the variants' settings; return its NAL units."""
    encoder = _x264_encoder(rendition, preset=preset, qp=qp, threads=1)
    data = b"".join(bytes(packet) for packet in encoder.encode(_yuv_frame(yuv, 0)) + encoder.encode(None))
    return h264.nal_units(data)


class IntraMarker:
    """Makes the variants of one of the unmarked encode's intra pictures: the picture plus a delta, intra-coded anew.

    `parameter_sets` are the unmarked encode's SPS and PPS; every marked picture is checked against
    them, since its slices are only valid under the very same headers. The new slices come from a
    one-frame encode, an IDR; in place of a picture that is not an IDR (an intra picture after a
    scene cut) they take that picture's frame number and order (`h264.as_picture_of`).
    """

    def __init__(self, rendition: Rendition, *, qp: int, preset: str, parameter_sets: list[bytes]):
        self.rendition, self.qp, self.preset = rendition, qp, preset
        self.parameter_sets = parameter_sets
        self.syntax = h264.SliceSyntax.of(parameter_sets)

    def mark(self, access_unit: bytes, picture: np.ndarray, delta: tuple[np.ndarray, np.ndarray]) -> bytes:
        """`access_unit` with its slices replaced by those of `picture` + `delta` (the other NAL units kept)."""
        height = self.rendition.height
        marked = picture.copy()
        _saturating_add(picture[:height], *delta, out=marked[:height])
        units = encode_marked_idr(marked, self.rendition, qp=self.qp, preset=self.preset)
        if h264.parameter_set_units(units) != self.parameter_sets:
            raise PrepareError("the marked intra picture does not fit the unmarked encode's parameter sets")
        own = h264.nal_units(access_unit)
        own_slices, slices = h264.slice_units(own), h264.slice_units(units)
        if h264.nal_type(own_slices[0]) != h264.NAL_IDR_SLICE:
            slices = h264.as_picture_of(slices, like=own_slices[0], syntax=self.syntax)
        return h264.annex_b([unit for unit in own if unit not in own_slices] + slices)


_MP4_OPTIONS = {
    "movflags": "empty_moov+default_base_moof+frag_keyframe+skip_trailer",
    # wait for every stream before writing: the interleaving then depends on timestamps only, so the
    # variants get identical fragment boundaries and audio placement
    "max_interleave_delta": "0",
}


class _Outputs:
    """The encoders and the output files.

    One libx264 encoder makes the unmarked encode U, one AAC encoder the audio. Both live in an
    in-memory MP4 that only serves to open them with global headers; every output file gets its
    streams copied from them, so all outputs have the same init segment. Each output receives U's
    packets, with the intra pictures replaced per output (`mux_video`), and the very same audio
    packets.
    """

    def __init__(self, paths: dict[str, Path], rendition: Rendition, *, crf: int, preset: str,
                 audio: dict[str, Any] | None):
        self._master = av.open(io.BytesIO(), "w", format="mp4")
        self.video_encoder = self._master.add_stream("libx264", rate=rendition.fps)
        self.video_encoder.width, self.video_encoder.height = rendition.width, rendition.height
        self.video_encoder.pix_fmt = "yuv420p"
        self.video_encoder.time_base = 1 / rendition.fps
        self.video_encoder.codec_context.color_range = 1  # limited (MPEG) range
        configure_x264(self.video_encoder.codec_context, crf=crf, preset=preset)
        self.frames_per_position = rendition.frames_per_position
        self.audio_encoder = None
        if audio is not None:
            self.audio_encoder = self._master.add_stream("aac", rate=audio["sample_rate"])
            self.audio_encoder.layout = audio["layout"]
            self.audio_encoder.bit_rate = audio["bit_rate"]
        self._master.start_encoding()
        headers = bytes(self.video_encoder.codec_context.extradata or b"")
        self.parameter_sets = h264.parameter_set_units(h264.nal_units(headers))
        self.containers: dict[str, Any] = {}
        self.video: dict[str, Any] = {}
        self.audio: dict[str, Any] = {}
        for name, path in paths.items():
            container = av.open(str(path), "w", format="mp4", options=_MP4_OPTIONS)
            self.containers[name] = container
            self.video[name] = container.add_stream_from_template(self.video_encoder)
            if self.audio_encoder is not None:
                self.audio[name] = container.add_stream_from_template(self.audio_encoder)
        self.audio_samples = 0
        self.audio_resampler = (
            av.AudioResampler(format="fltp", layout=audio["layout"], rate=audio["sample_rate"]) if audio else None
        )

    def encode_frame(self, yuv: np.ndarray, index: int) -> list[av.Packet]:
        """Encode one unmarked frame, an IDR picture if it starts a position; return U's packets that came out."""
        return self.video_encoder.encode(_yuv_frame(yuv, index, idr=index % self.frames_per_position == 0))

    def flush_video(self) -> list[av.Packet]:
        return self.video_encoder.encode(None)

    def mux_video(self, packet: av.Packet, data: dict[str, bytes] | None = None) -> None:
        """Mux U's `packet` into every output with U's timing and flags: its bytes, or an output's own in `data`."""
        own, data = bytes(packet), data or {}
        for name, container in self.containers.items():
            out = _retimed(data.get(name, own), packet)
            out.stream = self.video[name]
            container.mux(out)

    def encode_audio(self, frame: av.AudioFrame | None) -> None:
        """Resample and encode once; mux the very same packets into every output."""
        assert self.audio_resampler is not None and self.audio_encoder is not None
        for resampled in self.audio_resampler.resample(frame):
            resampled.pts = self.audio_samples
            self.audio_samples += resampled.samples
            self._mux_audio(self.audio_encoder.encode(resampled))

    def encode_silence(self, samples: int) -> None:
        """Start the audio with `samples` of silence (no-op when not positive)."""
        if samples <= 0:
            return
        layout = self.audio_encoder.layout.name
        channels = 1 if layout == "mono" else 2
        silence = av.AudioFrame.from_ndarray(np.zeros((channels, samples), np.float32), format="fltp", layout=layout)
        silence.sample_rate = self.audio_encoder.sample_rate
        self.encode_audio(silence)

    def _mux_audio(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            for name, container in self.containers.items():
                packet.stream = self.audio[name]
                container.mux(packet)

    def close(self) -> None:
        """Flush the audio and close every file (the video must have been flushed and muxed)."""
        if self.audio_encoder is not None:
            self.encode_audio(None)
            self._mux_audio(self.audio_encoder.encode(None))
        for container in self.containers.values():
            container.close()
        self._master.close()


@dataclass
class _Mark:
    """One marking of a position for one variant: its RMS, marked pictures (by packet number), MSE, the MSE of
    its worst frame, and template."""

    rms: float
    pictures: dict[int, bytes]
    mse: float
    peak_mse: float
    template: np.ndarray


class _PositionMarker:
    """Marks one position (a closed GOP of U) per variant, measures what each variant carries, re-marks it when off.

    The position's keyed noise is added to each of U's intra pictures in the GOP: its IDR, and any
    intra picture x264 placed at a scene cut (`X264_PARAMS`). Each picture shapes it with its own
    perceptual mask, taken from U's decoded pictures that carry its mark: itself and some of those
    up to the next intra picture (`pattern.perceptual_mask` keeps the places that stay busy in all
    of them, and limits the mark's local RMS by the content's activity there). A mask of the
    position's frames averaged put the mark where content would be later (on plane_clouds, the
    plane's path through a flat sky showed as speckles in the sky of the IDR, seen at 1:1); a mask
    of the marked picture alone left a ghost of the plane behind.

    A variant's decoded difference to U is that delta carried through the GOP plus the intra
    re-encoding's own error. That error is partly the same for every re-encode of a picture, so
    differences to U (or to a re-encode without delta) share a part between A and B that a copy does
    not carry in that proportion, and the absent variant then scored away from zero (+2 and -0.15 x
    the present z, measured). So each variant has a twin (`twin(v)`, never delivered) whose pictures
    carry the negated delta: half the twins' difference is the delta as the GOP carries it, and the
    error, even in the delta, cancels. A variant's template for a position is that half difference
    averaged over the position's interior frames (the frames tracing averages; a position of one or
    two frames uses all of them).

    U is decoded once per position and kept (luma, and the intra pictures whole); each marking
    then decodes its variants and twins. The twins decode only reference pictures (`skip_frame`
    NONREF, 40 % less decoding), so the templates average those; the non-reference B pictures only
    interpolate their references' marks. The variants decode every picture: the MSE over reference
    pictures alone read up to 0.75 dB low.

    How much of a delta a GOP keeps depends on its content (intra blocks drop it; on rare
    positions U's intra prediction makes it drift and grow), so a variant whose position would
    leave the title off target is marked again with the RMS that the measurements predict
    (`StrengthControl.retry_rms`), up to MAX_MARKS times. Where the mask's limit holds the delta
    below the RMS asked, the measured MSE stays low and the retries raise the RMS to its bound,
    which is as far as a position goes. U's prediction could also gather the mark into whole
    frames far above the target (fast action: sintel, strong, a frame at 8.7x the target MSE,
    before constrained intra prediction, `X264_PARAMS`); a variant whose worst frame goes over
    PEAK_MSE_FACTOR x the target is marked lower (`StrengthControl.rms_ceiling`). The mark kept is
    the closest to the target among those within the peak, else the one least over it.
    """

    def __init__(self, rendition: Rendition, positions: list[dict[str, Any]], marker: IntraMarker,
                 controls: dict[str, StrengthControl], *, mask_floor: float,
                 on_position: Callable[[int, dict[str, np.ndarray]], None]):
        self.rendition, self.positions, self.marker = rendition, positions, marker
        self.mask_floor = mask_floor
        self.controls, self.on_position = controls, on_position
        self._headers = h264.annex_b(marker.parameter_sets)
        self.squared_error = dict.fromkeys(controls, 0.0)
        self.frames = 0
        self.intra_pictures = 0

    def mark(self, index: int, packets: list[av.Packet], noise: dict[str, np.ndarray]) -> dict[str, dict[int, bytes]]:
        """Mark position `index` from U's `packets` (decode order, its IDR first) with each variant's keyed
        `noise`; return each variant's pictures.

        The pictures are the marked access units by packet number; the other packets are U's.
        """
        unmarked, intra = self._decode_unmarked(packets)
        masks = self._masks(unmarked, intra)
        tried: dict[str, list[_Mark]] = {v: [] for v in self.controls}

        def measured(v: str) -> list[tuple[float, float]]:
            return [(m.rms, m.mse) for m in tried[v]]

        def ceiling(v: str) -> float:
            return self.controls[v].rms_ceiling([(m.rms, m.peak_mse) for m in tried[v]])

        rms = {v: control.rms_for(index) for v, control in self.controls.items()}
        while rms:
            pictures: dict[str, dict[int, bytes]] = {}
            for v, value in rms.items():
                deltas = {number: _split_delta(pattern.position_delta(noise[v], mask, rms=value))
                          for number, mask in masks.items()}
                for name, sign in ((v, 1), (twin(v), -1)):
                    pictures[name] = {number: self.marker.mark(access_unit, picture, deltas[number][::sign])
                                      for number, (access_unit, picture, _) in intra.items()}
            for v, (mse, peak_mse, template) in self._measure(index, packets, pictures, unmarked).items():
                tried[v].append(_Mark(rms[v], pictures[v], mse, peak_mse, template))
            retries = {v: self.controls[v].retry_rms(index, measured(v), ceiling=ceiling(v)) for v in rms}
            rms = {v: value for v, value in retries.items() if value is not None and len(tried[v]) < MAX_MARKS}
        kept = {v: min(marks, key=lambda m: self.controls[v].rank(index, mse=m.mse, peak_mse=m.peak_mse))
                for v, marks in tried.items()}
        frames = self.positions[index]["frame_count"]
        for v, chosen in kept.items():
            self.controls[v].record(index, tried=measured(v), kept=(chosen.rms, chosen.mse))
            self.squared_error[v] += chosen.mse * frames * self.rendition.width * self.rendition.height
        self.frames += frames
        self.intra_pictures += len(intra)
        self.on_position(index, {v: chosen.template for v, chosen in kept.items()})
        return {v: chosen.pictures for v, chosen in kept.items()}

    def psnr_db(self) -> dict[str, float]:
        """Luma PSNR of each variant against U over every picture marked so far."""
        pixels = max(1, self.frames * self.rendition.width * self.rendition.height)
        return {v: _psnr_db(error / pixels) for v, error in self.squared_error.items()}

    def _decoder(self, name: str) -> av.codec.context.CodecContext:
        decoder = av.CodecContext.create("h264", "r")
        decoder.extradata = self._headers
        decoder.thread_type = "NONE"
        if name not in ("U", *self.controls):
            decoder.skip_frame = "NONREF"
        return decoder

    def _masks(self, lumas: dict[int, np.ndarray], intra: dict[int, tuple[bytes, np.ndarray, int]]
               ) -> dict[int, pattern.Mask]:
        """The perceptual mask of each intra picture (by packet number), from U's decoded `lumas` (by pts)
        of the picture and of those after it up to the next intra picture (MASK_SAMPLES in all)."""
        starts = sorted(pts for _, _, pts in intra.values())
        frames = sorted(lumas)
        masks = {}
        for number, (_, _, pts) in intra.items():
            later = [p for p in starts if p > pts]
            carried = [p for p in frames if pts <= p < (later[0] if later else math.inf)]
            samples = np.linspace(0, len(carried) - 1, min(MASK_SAMPLES, len(carried))).round().astype(int)
            masks[number] = pattern.perceptual_mask([lumas[carried[i]] for i in samples], floor=self.mask_floor)
        return masks

    def _decode_unmarked(self, packets: list[av.Packet]
                         ) -> tuple[dict[int, np.ndarray], dict[int, tuple[bytes, np.ndarray, int]]]:
        """U's decoded GOP: luma by pts, and by packet number each intra picture's access unit, yuv420p
        picture and pts."""
        r = self.rendition
        access_units = [bytes(packet) for packet in packets]
        intra = {packet.pts: number for number, (packet, access_unit) in enumerate(zip(packets, access_units))
                 if h264.is_intra_picture(access_unit)}
        if 0 not in intra.values():
            raise PrepareError("a position does not start with an intra picture")
        decoder = self._decoder("U")
        lumas, pictures = {}, {}
        for frame in [f for packet in packets for f in decoder.decode(packet)] + decoder.decode(None):
            lumas[frame.pts] = _plane(frame, 0)[: r.height, : r.width].copy()
            if frame.pts in intra:
                number = intra[frame.pts]
                pictures[number] = (access_units[number], frame.to_ndarray(format="yuv420p"), frame.pts)
        return lumas, dict(sorted(pictures.items()))

    def _measure(self, index: int, packets: list[av.Packet], pictures: dict[str, dict[int, bytes]],
                 unmarked: dict[int, np.ndarray]) -> dict[str, tuple[float, float, np.ndarray]]:
        """Decode the position with each output's marked `pictures`: per variant, its MSE against U, the MSE of
        its worst frame, and its template."""
        r = self.rendition
        first, count = self.positions[index]["first_frame"], self.positions[index]["frame_count"]
        variants = [name for name in pictures if name in self.controls]
        decoders = {name: self._decoder(name) for name in pictures}
        latest = dict.fromkeys(decoders, -1)
        lumas: dict[int, dict[str, np.ndarray]] = {}   # pts -> decoded luma per stream, until measured
        errors = dict.fromkeys(variants, 0.0)
        peaks = dict.fromkeys(variants, 0.0)
        sums: dict[str, np.ndarray] = {}
        interior_frames = frames = 0

        def take(name: str, decoded: list[av.VideoFrame]) -> None:
            for frame in decoded:
                lumas.setdefault(frame.pts, {})[name] = _plane(frame, 0)[: r.height, : r.width].copy()
                latest[name] = frame.pts

        for number, packet in enumerate(packets):
            own = bytes(packet)
            for name, decoder in decoders.items():
                take(name, decoder.decode(_retimed(pictures[name].get(number, own), packet)))
            flushing = number == len(packets) - 1
            if flushing:
                for name, decoder in decoders.items():
                    take(name, decoder.decode(None))
            for pts in sorted(lumas):
                got = lumas[pts]
                # a twin skips non-reference pictures: once it is past `pts` without it, none will come
                complete = all(v in got for v in variants)
                settled = all(twin(v) in got or latest[twin(v)] > pts for v in variants)
                if flushing and not (complete and pts in unmarked):
                    raise PrepareError(f"picture {pts} of position {index} is missing from a decoded variant")
                if not (complete and (settled or flushing)):
                    break
                del lumas[pts]
                for v in variants:
                    error = cv2.norm(got[v], unmarked[pts], cv2.NORM_L2SQR)
                    errors[v] += error
                    peaks[v] = max(peaks[v], error)
                interior = count <= 2 or first < pts < first + count - 1
                if interior and all(twin(v) in got for v in variants):
                    interior_frames += 1
                    for v in variants:
                        diff = cv2.subtract(got[v], got[twin(v)], dtype=cv2.CV_16S)
                        sums[v] = diff.astype(np.int32) if v not in sums else cv2.add(sums[v], diff, dtype=cv2.CV_32S)
                frames += 1
        if frames != count or len(unmarked) != count:
            raise PrepareError(f"position {index} decoded to {frames} pictures instead of {count}")
        pixels = count * r.width * r.height
        empty = np.zeros((r.height, r.width), np.float32)
        return {v: (errors[v] / pixels, peaks[v] / (r.width * r.height),
                    sums[v].astype(np.float32) / (2 * interior_frames) if interior_frames else empty)
                for v in variants}


def twin(variant: str) -> str:
    """Name of the never-delivered twin of a variant, whose pictures carry the negated delta (`_PositionMarker`)."""
    return f"{variant}-"


@dataclass(frozen=True)
class StrengthModel:
    """Luma MSE per frame of a variant against U for a position's delta of a given RMS: floor + gain x rms^2.

    The floor is the intra re-encodings' own error, carried through the GOP; the gain is the share of
    the delta's power that the decoded GOP keeps (the mark fades where U codes intra blocks).
    """

    floor_mse: float
    gain: float

    def mse(self, rms: float) -> float:
        return self.floor_mse + self.gain * rms * rms

    def rms(self, mse: float) -> float:
        return math.sqrt(max(mse - self.floor_mse, 0.0) / self.gain)


# The starting point of every title, typical of ../shared/testdata at CRF 20 (floor 0.3-0.9,
# gain 0.4-0.85); `StrengthControl` rescales it to what the title measures.
DEFAULT_MODEL = StrengthModel(floor_mse=0.5, gain=0.6)
# Each position's RMS stays within these factors of the target MSE's RMS. The upper bound limits
# the step where positions switch: a position whose content keeps little of its mark (a fade to
# black, measured on caminandes: 2.4x the target's RMS sought, 1.23x an independent pattern's step)
# is left weaker and the other positions make up (1.75: 1.13x, with the PSNR still within 1 dB).
RMS_RANGE = (0.5, 1.75)
# A position is marked again when it would leave the title's MSE further than this from the
# target, at most MAX_MARKS times in all; the closest mark is kept.
REMARK_TOLERANCE_DB = 0.5
MAX_MARKS = 3
# No frame of a variant may differ from U by more than this many times the target MSE (6 dB below
# the target PSNR; a fresh intra picture at the RMS cap is about 3.1x). On fast action the mark
# grew within the GOP (sintel, strong: a frame at 8.7x, in blocky patches) while U's intra blocks in
# P pictures predicted from their marked neighbours (now off: `constrained-intra`, X264_PARAMS);
# U's motion can still copy marked blocks into flat areas, so the rule stays as the guard: such a
# position is marked lower.
PEAK_MSE_FACTOR = 4.0


class StrengthControl:
    """Chooses each position's delta RMS so that the title's MSE against U converges on the target.

    The model's prediction is scaled by what recent marks measured (measured over predicted MSE,
    each earlier mark's weight halved by every later one: content changes from scene to scene, and
    the last positions predict the next best). A position aims at the MSE that brings the title's
    average, weighted by frames, to the target (`wanted`), and starts from the RMS the scaled model
    gives for it. If it lands off, `retry_rms` fits the position's own measurements. RMS stays
    within RMS_RANGE of the target's RMS; a title whose floor alone exceeds the target keeps the
    lowest, so it stays marked. Positions are marked in order, each recorded before the next.
    """

    def __init__(self, model: StrengthModel, *, target_mse: float, positions: list[dict[str, Any]]):
        self.model, self.target_mse = model, target_mse
        self.frames = [position["frame_count"] for position in positions]
        base = math.sqrt(target_mse)
        self.bounds = (RMS_RANGE[0] * base, RMS_RANGE[1] * base)
        self.peak_mse = PEAK_MSE_FACTOR * target_mse
        self._title = [0.0, 0]          # squared-error sum (MSE x frames) and frames of the positions kept
        self._recent = [0.0, 0.0]       # measured and predicted MSE of recent marks, decaying
        self.wanted: dict[int, float] = {}
        self.chosen: dict[int, float] = {}

    @property
    def scale(self) -> float:
        """Measured over predicted MSE of recent marks (1 before any measurement)."""
        measured, predicted = self._recent
        return measured / predicted if predicted > 0 else 1.0

    def rms_for(self, index: int) -> float:
        """The first RMS to try for position `index`."""
        squared_error, done = self._title
        frames = self.frames[index]
        self.wanted[index] = wanted = (self.target_mse * (done + frames) - squared_error) / frames
        return self._clip(self.model.rms(wanted / self.scale))

    def miss_db(self, index: int, mse: float) -> float:
        """How far (dB) the title so far would be from the target with position `index` at `mse`."""
        squared_error, done = self._title
        frames = self.frames[index]
        title_mse = (squared_error + mse * frames) / (done + frames)
        return abs(10.0 * math.log10(max(title_mse, 1e-9) / self.target_mse))

    def rms_ceiling(self, peaks: list[tuple[float, float]]) -> float:
        """The highest RMS for a position whose marks (rms, MSE of the worst frame) are `peaks`.

        A mark's worst frame is its delta carried (or grown) through the GOP, so its MSE scales with
        rms^2; the ceiling aims 10 % under `peak_mse` from every mark that went over it.
        """
        return min((rms * math.sqrt(0.9 * self.peak_mse / peak) for rms, peak in peaks if peak > self.peak_mse),
                   default=math.inf)

    def rank(self, index: int, *, mse: float, peak_mse: float) -> tuple[float, float]:
        """Sort key of a position's marks, best first: within `peak_mse` (else the least over), then `miss_db`."""
        return max(peak_mse / self.peak_mse, 1.0), self.miss_db(index, mse)

    def retry_rms(self, index: int, tried: list[tuple[float, float]], *, ceiling: float = math.inf) -> float | None:
        """The RMS to mark position `index` with again after the (rms, mse) `tried`; None when done.

        A position is done when its latest RMS is within `ceiling` (`rms_ceiling`) and it leaves
        the title within REMARK_TOLERANCE_DB of the target: early positions must land close, later
        ones only when far off (a drifting mark), since the next positions make up for small misses.

        One measurement rescales the model to this position; two fit mse = a + b x rms^2 through
        the latest two, which covers both a fading mark (small b) and a drifting one (large b). The
        ceiling may take the RMS below RMS_RANGE: a weaker mark is better than a visible one.
        """
        rms, mse = tried[-1]
        if rms <= ceiling and self.miss_db(index, mse) <= REMARK_TOLERANCE_DB:
            return None
        wanted = self.wanted[index]
        slope = 0.0
        if len(tried) > 1 and abs(rms - tried[-2][0]) > 1e-6:
            r0, m0 = tried[-2]
            slope = (mse - m0) / (rms * rms - r0 * r0)
        if slope > 0:
            better = math.sqrt(max(wanted - (mse - slope * rms * rms), 0.0) / slope)
        else:
            better = self.model.rms(wanted * self.model.mse(rms) / max(mse, 1e-9))
        better = min(self._clip(better), ceiling)
        return None if any(abs(better - r) <= 0.02 * r for r, _ in tried) else better

    def record(self, index: int, *, tried: list[tuple[float, float]], kept: tuple[float, float]) -> None:
        """The (rms, mse) marks `tried` for position `index` in order, and the one `kept`."""
        for rms, mse in tried:
            self._recent = [0.5 * self._recent[0] + mse, 0.5 * self._recent[1] + self.model.mse(rms)]
        self._title[0] += kept[1] * self.frames[index]
        self._title[1] += self.frames[index]
        self.chosen[index] = kept[0]

    def _clip(self, rms: float) -> float:
        return float(np.clip(rms, *self.bounds))


def _saturating_add(y: np.ndarray, plus: np.ndarray, minus: np.ndarray, out: np.ndarray) -> None:
    """out = clip(y + plus - minus, 0, 255) for uint8 arrays where plus and minus never overlap."""
    cv2.add(y, plus, dst=out)
    cv2.subtract(out, minus, dst=out)


def _split_delta(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round a float delta once and split it into its positive and negative uint8 parts."""
    rounded = np.rint(delta)
    return (np.clip(rounded, 0, 255).astype(np.uint8), np.clip(-rounded, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# prepare()


def _audio_plan(container: av.container.InputContainer) -> dict[str, Any] | None:
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or 48000
    channels = stream.codec_context.channels or 2
    return {
        "codec": "aac",
        "source_codec": stream.codec_context.name,
        "sample_rate": rate if rate in (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000) else 48000,
        "layout": "mono" if channels == 1 else "stereo",
        "bit_rate": _AUDIO_BITRATE,
    }


def _prepare_outdir(outdir: Path, force: bool) -> None:
    if outdir.exists() and any(outdir.iterdir()):
        if not force:
            raise PrepareError(f"output folder {outdir} is not empty (pass --force / force=True to replace it)")
        if not (outdir / package.MANIFEST_FILE).exists() and not (outdir / package.INDEX_FILE).exists():
            raise PrepareError(f"output folder {outdir} is not empty and is not a prepared title; refusing to overwrite")
        _empty(outdir)
    outdir.mkdir(parents=True, exist_ok=True)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _reference_builder(outdir: Path, rendition: Rendition, positions: list[dict[str, Any]]) -> Any:
    from leaktrace.autograph.reference import ReferenceBuilder

    return ReferenceBuilder(outdir, width=rendition.width, height=rendition.height, fps=rendition.fps,
                            positions=positions)


def intra_qp(crf: int) -> int:
    """Constant QP of the marked intra pictures for the variants' CRF (see INTRA_QP_OFFSET)."""
    return max(0, crf + INTRA_QP_OFFSET)


def reorder_delay_frames(rendition: Rendition, *, crf: int, preset: str) -> int:
    """Frames by which libx264's B-frame reordering delays the first decode time (2 for veryfast).

    The fragmented MP4 muxer starts the video at this delay (it cannot write an edit list into an
    init segment written before the first packet), so the audio is delayed by as much to stay in
    sync. Measured with a tiny encode: the delay depends on the settings, not on the frame size.
    """
    encoder = _x264_encoder(dataclasses.replace(rendition, width=64, height=64), crf=crf, preset=preset)
    blank = np.full((96, 64), 128, np.uint8)
    packets = [p for index in range(8) for p in encoder.encode(_yuv_frame(blank, index))] + encoder.encode(None)
    return max(0, -min(packet.dts for packet in packets))


def _psnr_db(mse: float) -> float:
    """8-bit PSNR of a mean squared error, capped at 99 dB for (near) zero errors (JSON has no inf)."""
    return min(99.0, 10.0 * math.log10(255.0**2 / max(mse, 1e-12)))


def prepare(input_path: str | os.PathLike[str], outdir: str | os.PathLike[str], *, strength: str = "medium",
            position_seconds: float = 2.0, height: int | None = None, crf: int = 20, preset: str = "veryfast",
            progress: Progress | None = None, duration: float | None = None, force: bool = False,
            key: bytes | None = None) -> package.Manifest:
    """Prepare a title: write A/B variants as fragments, the index, key, manifest and reference; return the manifest.

    `duration` limits the title to the first seconds of the input (tests, excerpts). `key` is for
    reproducible tests only; by default 32 fresh random bytes from `secrets`.
    """
    input_path, outdir = Path(input_path), Path(outdir)
    if strength not in STRENGTH_PSNR_DB:
        raise PrepareError(f"unknown strength {strength!r}; choose one of {', '.join(STRENGTH_PSNR_DB)}")
    if not MIN_POSITION_SECONDS <= position_seconds <= MAX_POSITION_SECONDS:
        raise PrepareError(f"position_seconds must be between {MIN_POSITION_SECONDS} and {MAX_POSITION_SECONDS}")
    if not input_path.is_file():
        raise PrepareError(f"input {input_path} does not exist or is not a file")
    started = time.monotonic()
    key = secrets.token_bytes(32) if key is None else key

    container = _open_input(input_path)
    try:
        stream = container.streams.video[0]
        fps = _source_fps(stream)
        rendition = _rendition(stream, fps, position_seconds, height)
        # read everything needed from the stream now: PyAV objects must not be used after close()
        source = {
            "file": input_path.name,
            "format": container.format.name,
            "video_codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "pix_fmt": stream.codec_context.pix_fmt,
            "fps": [fps.numerator, fps.denominator],
        }
        n_frames = _count_video_packets(input_path)
        if duration is not None:
            n_frames = min(n_frames, max(1, int(round(duration * fps))))
        if n_frames == 0:
            raise PrepareError(f"input {input_path} has no video frames")
        positions = plan_positions(n_frames, rendition.frames_per_position, fps)
        audio = _audio_plan(container)
        _prepare_outdir(outdir, force)
        # from here on a failure leaves the folder empty, never a title without its manifest
        tmp_paths = {name: outdir / f".{name}.tmp.mp4" for name in _VARIANTS}
        controls = {v: StrengthControl(DEFAULT_MODEL, target_mse=target_mse(strength), positions=positions)
                    for v in _VARIANTS}
        try:
            stats = _encode_title(container, outdir, rendition, positions, audio, key=key, controls=controls,
                                  strength=strength,
                                  crf=crf, preset=preset, progress=progress, out_paths=tmp_paths)
            package.split_variants(tmp_paths["A"], tmp_paths["B"], outdir, n_positions=len(positions))
        except BaseException:
            _empty(outdir)
            raise
        finally:
            for path in tmp_paths.values():
                path.unlink(missing_ok=True)
    except av.FFmpegError as exc:
        raise PrepareError(f"decoding or encoding failed: {exc}") from exc
    except package.PackageError as exc:
        raise PrepareError(f"the A and B encodes are not interchangeable: {exc}") from exc
    except h264.UnsupportedSyntax as exc:
        raise PrepareError(f"the unmarked encode uses H.264 syntax the marker cannot rewrite: {exc}") from exc
    finally:
        container.close()
    package.write_key(outdir, key)

    manifest = {
        "format_version": package.FORMAT_VERSION,
        "source": {**source, "decoded_frames": stats["decoded_frames"]},
        "rendition": {
            "width": rendition.width,
            "height": rendition.height,
            "fps": [fps.numerator, fps.denominator],
            "time_base": [fps.denominator, fps.numerator],
            "geometry": "scaled" if rendition.scaled else "cropped to even size",
            "color_range": "limited",
            "pix_fmt": "yuv420p",
        },
        "n_frames": n_frames,
        "padded_frames": stats["padded_frames"],
        "position_seconds": position_seconds,
        "frames_per_position": rendition.frames_per_position,
        "position_duration_s": float(rendition.frames_per_position / fps),
        "strength": strength,
        "target_psnr_db": STRENGTH_PSNR_DB[strength],
        "pattern": {"domain": "leaktrace/pattern/v1", "sigma_px": pattern.pattern_sigma(rendition.height),
                    "rms": {v: [round(c.chosen[p["index"]], 4) for p in positions] for v, c in controls.items()},
                    "model_scale": {v: round(c.scale, 4) for v, c in controls.items()},
                    "mask_floor": MASK_FLOOR[strength],
                    "mask_limit": {"flat": pattern.JND_FLAT, "slope": pattern.JND_SLOPE},
                    "carrier": "intra pictures of each position",
                    "intra_pictures": stats["intra_pictures"], "measured_psnr_db": stats["psnr_db"],
                    "target_reached": all(abs(psnr - STRENGTH_PSNR_DB[strength]) <= PSNR_TOLERANCE_DB
                                          for psnr in stats["psnr_db"].values())},
        "encoder": {"codec": "libx264", "crf": crf, "preset": preset,
                    "x264_params": X264_PARAMS, "threads": X264_THREADS,
                    "intra_qp": intra_qp(crf), "pix_fmt": "yuv420p",
                    "container": "fragmented mp4"},
        "audio": audio,
        "reference": stats["reference"],
        "positions": positions,
        "prepare_seconds": round(time.monotonic() - started, 3),
    }
    (outdir / package.MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("prepared %s: %d frames, %d positions, %.1f s", input_path.name, n_frames, len(positions),
             manifest["prepare_seconds"])
    return manifest


def _encode_title(container: av.container.InputContainer, outdir: Path | None, rendition: Rendition,
                  positions: list[dict[str, Any]], audio: dict[str, Any] | None, *, key: bytes | None,
                  controls: dict[str, StrengthControl] | None, strength: str,
                  crf: int, preset: str, progress: Progress | None, out_paths: dict[str, Path]) -> dict[str, Any]:
    """Decode once, encode U, write each output of `out_paths` ("A", "B"; or "U": unmarked); return counters.

    With a `key`, every intra picture of U is replaced per variant by a marked one (`IntraMarker`)
    whose delta has the RMS its `controls` entry picks, and the decoded variants give the detection
    templates, the measured PSNR and the feedback for `controls` (`_PositionMarker`).
    """
    n_frames = positions[-1]["first_frame"] + positions[-1]["frame_count"]
    video_stream = container.streams.video[0]
    video_start = float(video_stream.start_time * video_stream.time_base) if video_stream.start_time is not None else 0.0
    end_time = n_frames / rendition.fps
    audio_delay = float(reorder_delay_frames(rendition, crf=crf, preset=preset) / rendition.fps) if audio else 0.0

    variants = tuple(out_paths)
    reference = None
    if outdir is not None:
        try:
            reference = _reference_builder(outdir, rendition, positions)
        except ModuleNotFoundError:
            log.warning("leaktrace.autograph.reference is not available: no detection reference written")

    outputs = _Outputs(out_paths, rendition, crf=crf, preset=preset, audio=audio)
    marker = None
    if key is not None:
        def position_done(index: int, templates: dict[str, np.ndarray]) -> None:
            if reference is not None:
                reference.add_position(index, templates["A"], templates["B"])

        intra_marker = IntraMarker(rendition, qp=intra_qp(crf), preset=preset, parameter_sets=outputs.parameter_sets)
        marker = _PositionMarker(rendition, positions, intra_marker, controls, mask_floor=MASK_FLOOR[strength],
                                 on_position=position_done)
    # per position waiting to be marked: each variant's keyed noise
    noises: dict[int, dict[str, np.ndarray]] = {}
    # Positions are marked on a thread of their own (PyAV decodes and encodes without the GIL)
    # while this one encodes the next; each is muxed once marked, in order.
    marking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leaktrace-mark")
    gop: list[av.Packet] = []
    in_marking: list[tuple[list[av.Packet], Future]] = []

    def mux_marked() -> None:
        for packets, future in in_marking:
            marked = future.result()
            for number, packet in enumerate(packets):
                outputs.mux_video(packet, {v: pictures[number] for v, pictures in marked.items() if number in pictures})
        in_marking.clear()

    def submit_gop() -> None:
        mux_marked()
        index = gop[0].pts // rendition.frames_per_position
        in_marking.append((list(gop), marking.submit(marker.mark, index, list(gop), noises.pop(index))))
        gop.clear()

    def write_video(packets: list[av.Packet]) -> None:
        for packet in packets:
            if marker is None:
                outputs.mux_video(packet)
                continue
            if packet.is_keyframe and gop:
                submit_gop()
            gop.append(packet)

    height = rendition.height
    pending: list[np.ndarray] = []
    frame_index = 0

    def flush_position(frames: list[np.ndarray]) -> None:
        nonlocal frame_index
        index = frame_index // rendition.frames_per_position
        if key is not None:
            noises[index] = {v: pattern.keyed_noise(key, index, v, height, rendition.width) for v in variants}
        for yuv in frames:
            write_video(outputs.encode_frame(yuv, frame_index))
            frame_index += 1
        if progress is not None:
            progress(frame_index, n_frames)

    def add_frame(yuv: np.ndarray) -> None:
        if reference is not None:
            reference.add_frame(len(pending) + frame_index, yuv[:height])
        pending.append(yuv)
        if len(pending) == rendition.frames_per_position:
            flush_position(pending)
            pending.clear()

    def feed_audio(frame: av.AudioFrame) -> None:
        _feed_audio(outputs, frame, video_start, end_time, audio_delay)

    frames = _PlannedFrames(container, n_frames, _FrameConverter(rendition),
                            on_audio=feed_audio if audio else None,
                            audio_until=video_start + end_time + 1.0)
    try:
        for yuv in frames:
            add_frame(yuv)
        if pending:
            flush_position(pending)
            pending.clear()
        write_video(outputs.flush_video())
        if gop:
            submit_gop()
        mux_marked()
        outputs.close()
        if reference is not None:
            reference.close()
    except av.FFmpegError as exc:
        raise PrepareError(f"decoding or encoding failed: {exc}") from exc
    finally:
        marking.shutdown(cancel_futures=True)
    return {
        "planned_frames": n_frames,
        "decoded_frames": frames.decoded,
        "padded_frames": frames.padded,
        "reference": reference is not None,
        "psnr_db": marker.psnr_db() if marker is not None else None,
        "intra_pictures": marker.intra_pictures if marker is not None else 0,
    }


def encode_unmarked(input_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                    manifest: package.Manifest, *, progress: Progress | None = None) -> Path:
    """Encode the title of `manifest` without any mark, with the very same settings (quality baseline)."""
    input_path, out_path = Path(input_path), Path(out_path)
    rendition = manifest_rendition(manifest)
    encoder = manifest["encoder"]
    container = _open_input(input_path)
    try:
        _encode_title(container, None, rendition, manifest["positions"], manifest["audio"], key=None, controls=None,
                      strength=manifest["strength"], crf=encoder["crf"], preset=encoder["preset"],
                      progress=progress, out_paths={"U": out_path})
    finally:
        container.close()
    return out_path


def manifest_rendition(manifest: package.Manifest) -> Rendition:
    """The rendition a prepared title was made in."""
    r = manifest["rendition"]
    return Rendition(r["width"], r["height"], Fraction(*r["fps"]), manifest["frames_per_position"],
                     r["geometry"] == "scaled")


def source_frames(input_path: str | os.PathLike[str], manifest: package.Manifest) -> Iterator[np.ndarray]:
    """The input's frames as prepare() encoded them: yuv420p arrays (height*3/2, width), n_frames of them."""
    with _open_input(Path(input_path)) as container:
        yield from _PlannedFrames(container, manifest["n_frames"], _FrameConverter(manifest_rendition(manifest)))


class _PlannedFrames:
    """The input's video as prepare() encodes it: exactly `planned` converted frames, in decode order.

    Frames beyond the plan are not used; if the decoder yields fewer (undecodable packets), the last
    frame is repeated to fill the plan (`padded`). With `on_audio`, the audio frames met on the way go
    to it, up to `audio_until` (seconds, the input's clock) once the video is complete.
    """

    def __init__(self, container: av.container.InputContainer, planned: int, convert: _FrameConverter, *,
                 on_audio: Callable[[av.AudioFrame], None] | None = None, audio_until: float = math.inf):
        self.container, self.planned, self.convert = container, planned, convert
        self.on_audio, self.audio_until = on_audio, audio_until
        self.decoded = 0   # frames the decoder returned, planned or not
        self.padded = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        video = self.container.streams.video[0]
        video.thread_type = "AUTO"
        streams = [video] + ([self.container.streams.audio[0]] if self.on_audio is not None else [])
        done, last = 0, None
        for packet in self.container.demux(*streams):
            if packet.stream.type == "video":
                if done == self.planned:
                    if self.on_audio is None:
                        break
                    continue
                for frame in _decode(packet):
                    self.decoded += 1
                    if done < self.planned:
                        last = self.convert(frame)
                        done += 1
                        yield last
            else:
                if done == self.planned and packet.pts is not None and packet.time_base is not None \
                        and float(packet.pts * packet.time_base) > self.audio_until:
                    break
                for frame in _decode(packet):
                    self.on_audio(frame)
        if last is None:
            raise PrepareError("the decoder returned no video frames")
        self.padded = self.planned - done
        for _ in range(self.padded):
            yield last.copy()


def _decode(packet: av.Packet) -> list[Any]:
    try:
        return packet.decode()
    except av.InvalidDataError as exc:
        log.warning("skipping an undecodable packet: %s", exc)
        return []


def _feed_audio(outputs: _Outputs, frame: av.AudioFrame, video_start: float, end_time: float, delay: float) -> None:
    """Encode an audio frame in sync with the video; drop audio before the first video frame or after the end.

    The fragmented MP4 muxer starts every track at its first decode time: the video shows its
    first frame `delay` seconds late (B-frame reordering) and the audio plays its encoder priming
    (_AAC_PRIMING samples) first. Leading silence makes up the difference, so audio and video keep
    the source's relative timing.
    """
    if frame.time is None:
        return
    start = frame.time - video_start
    if start + frame.samples / frame.sample_rate <= 0 or start >= end_time:
        return
    if outputs.audio_samples == 0:
        outputs.encode_silence(int(round((max(start, 0.0) + delay) * outputs.audio_encoder.sample_rate)) - _AAC_PRIMING)
    outputs.encode_audio(frame)
