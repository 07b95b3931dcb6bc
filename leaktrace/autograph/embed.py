"""`prepare()`: decode the input once, add the A and B pattern per position, encode both variants.

Pipeline (one decoding pass over the input; before it, a demux-only packet count and the
strength calibration, which decodes and encodes at most 4 x 12 sample frames):

    demux ─► decode video ─► limited-range 8-bit 4:2:0, even size ─► buffer one position (one GOP)
                                   └─► ReferenceBuilder.add_frame (unmarked luma)
          per position: mask from its frames, keyed deltas for A and B ─► Y+dA ─► x264 (A) ─► fMP4 A
                                                                        └► Y+dB ─► x264 (B) ─► fMP4 B
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
- Pattern: luma only; the same float delta on every frame of a position, rounded once (so every
  frame of the position gets exactly the same integer delta), added with saturation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from leaktrace.autograph import package, pattern

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called with (frames done, frames planned) while preparing."""

# Target luma PSNR (dB) of a decoded variant against the decoded unmarked encode.
STRENGTH_PSNR_DB = {"light": 48.0, "medium": 44.0, "strong": 40.0}
# Lowest mask gain in flat areas, per strength: stronger marks need more flat-area attenuation.
MASK_FLOOR = {"light": 0.35, "medium": 0.3, "strong": 0.2}
# A level counts as hit when the measured PSNR is within this many dB of its target.
PSNR_TOLERANCE_DB = 1.0
# The strength is measured on the decoded variant against the decoded unmarked encode. That
# difference is not just the pattern: any change to the source makes x264 take other decisions
# (and predict from slightly different references), so the two encodes carry different coding
# noise. Measured on ../shared/testdata (4 s of each clip, preset veryfast), decoded MSE ~= floor +
# CODING_GAIN x pre-encode MSE, and the floor is about the encode's own MSE against its source:
# the two encodes' coding noises are only about half correlated. At CRF 20 the floor ranges from
# 1.0 (static camera, 48 dB) to 6.2 (film grain, 40.2 dB) even for a vanishing pattern.
# No x264 setting decouples the two encodes at a given bitrate (measured on tears_of_steel at CRF
# 20: psy off, aq-mode 0, mbtree off, tune psnr/ssim, trellis and deadzones off, deblock off,
# no-fast-pskip, bframes 0, fixed qp, presets ultrafast to medium all leave the marked-vs-unmarked
# PSNR within 0.6 dB of the encode's PSNR against the source). Only a smaller quantiser lowers
# the floor, at a bitrate cost: on tears_of_steel CRF 16/12/8 cost 1.6/2.6/4.2x the bitrate of
# CRF 20 and still measure 42.7/44.5/46.2 dB at the light RMS. The divergence comes from the
# pattern varying across the picture, not from its spectrum: on tears_of_steel (4 s, CRF 20) a
# uniform +1 level offset measures 46.5 dB (excess MSE 0.5 over the offset itself), while a keyed
# pattern of RMS 1 measures 40.1-40.4 dB (excess 5.2) whatever its scale (Gaussian sigma 1.5 to
# 40 px) and also as constant 4, 8 or 16 px blocks aligned with the transform grid. Re-encoding the
# decoded unmarked encode (a second generation) measures 42.7 dB against it even with no pattern.
# Where the floor alone exceeds a target, no pattern can reach it at that CRF; the RMS then stays
# at MIN_RMS of the strength, which keeps the mark detectable and changes the measured PSNR by only
# a few tenths of a dB, and the calibration reports the target as out of reach.
CODING_FLOOR_MSE = 1.4
CODING_GAIN = 1.05
MIN_RMS = {"light": 0.6, "medium": 0.8, "strong": 1.2}
# The floor varies from clip to clip, so by default prepare() calibrates per title: it encodes a
# few short windows of the title unmarked and marked at the model's RMS, decodes both, and
# corrects the RMS by the measured miss (`calibrate_rms`).
CALIBRATION_FRAMES = 12
CALIBRATION_MAX_WINDOWS = 4
MIN_POSITION_SECONDS = 1.0
MAX_POSITION_SECONDS = 2.0
_MASK_SAMPLE_FRAMES = 4
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


def target_rms(strength: str) -> float:
    """RMS (8-bit luma levels) of the pre-encode delta for a strength level (see CODING_FLOOR_MSE)."""
    target_mse = 255.0**2 / 10.0 ** (STRENGTH_PSNR_DB[strength] / 10.0)
    return max(MIN_RMS[strength], math.sqrt(max(target_mse - CODING_FLOOR_MSE, 0.0) / CODING_GAIN))


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


def x264_params(frames_per_pos: int) -> str:
    """libx264 parameters giving one fixed closed GOP per position and no scene-cut keyframes."""
    return f"keyint={frames_per_pos}:min-keyint={frames_per_pos}:scenecut=0:open-gop=0"


# Frame threads, a fixed number: libx264 then encodes while the caller prepares the next frame (the
# A and B encoders run side by side, about twice as fast as with PyAV's default of two slice threads
# per encoder, which serialise), and the bitstream does not depend on the machine's core count.
X264_THREADS = 2


def configure_x264(context: av.codec.context.CodecContext, rendition: Rendition, *, crf: int, preset: str) -> None:
    """Apply the variants' libx264 settings (rate control, GOP, threads) to an encoder context."""
    context.options = {"crf": str(crf), "preset": preset, "x264-params": x264_params(rendition.frames_per_position)}
    context.thread_type = "FRAME"
    context.thread_count = X264_THREADS


def open_variant_output(path: Path, rendition: Rendition, *, crf: int, preset: str,
                        audio: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """Open a fragmented MP4 with a libx264 stream (and an AAC stream); return (container, video, audio)."""
    container = av.open(str(path), "w", format="mp4", options={
        "movflags": "empty_moov+default_base_moof+frag_keyframe+skip_trailer",
        # wait for every stream before writing: the interleaving then depends on timestamps only,
        # so A and B get identical fragment boundaries and audio placement
        "max_interleave_delta": "0",
    })
    video = container.add_stream("libx264", rate=rendition.fps)
    video.width, video.height, video.pix_fmt = rendition.width, rendition.height, "yuv420p"
    video.time_base = 1 / rendition.fps
    video.codec_context.color_range = 1  # limited (MPEG) range
    configure_x264(video.codec_context, rendition, crf=crf, preset=preset)
    audio_stream = None
    if audio is not None:
        audio_stream = container.add_stream("aac", rate=audio["sample_rate"])
        audio_stream.layout = audio["layout"]
        audio_stream.bit_rate = audio["bit_rate"]
    return container, video, audio_stream


class _Outputs:
    """The variant outputs: one libx264 encoder per variant, one shared AAC encoder."""

    def __init__(self, paths: dict[str, Path], rendition: Rendition, *, crf: int, preset: str,
                 audio: dict[str, Any] | None):
        self.containers: dict[str, Any] = {}
        self.video: dict[str, Any] = {}
        self.audio: dict[str, Any] = {}
        for name, path in paths.items():
            self.containers[name], self.video[name], self.audio[name] = open_variant_output(
                path, rendition, crf=crf, preset=preset, audio=audio)
        self.audio_samples = 0
        self.audio_resampler = (
            av.AudioResampler(format="fltp", layout=audio["layout"], rate=audio["sample_rate"]) if audio else None
        )
        self.audio_encoder = next(iter(self.audio.values())) if audio else None

    def encode_frame(self, variant: str, yuv: np.ndarray, index: int) -> None:
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index
        frame.color_range = 1
        for packet in self.video[variant].encode(frame):
            self.containers[variant].mux(packet)

    def encode_audio(self, frame: av.AudioFrame | None) -> None:
        """Resample and encode once; mux the very same packets into every variant."""
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
        if self.audio_encoder is not None:
            self.encode_audio(None)
            self._mux_audio(self.audio_encoder.encode(None))
        for name, container in self.containers.items():
            for packet in self.video[name].encode(None):
                container.mux(packet)
            container.close()


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
        for child in outdir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    outdir.mkdir(parents=True, exist_ok=True)


def _reference_builder(outdir: Path, rendition: Rendition, positions: list[dict[str, Any]]) -> Any:
    from leaktrace.autograph.reference import ReferenceBuilder

    return ReferenceBuilder(outdir, width=rendition.width, height=rendition.height, fps=rendition.fps,
                            positions=positions)


def _calibration_windows(input_path: Path, rendition: Rendition, n_frames: int) -> list[list[np.ndarray]]:
    """A few runs of consecutive frames spread over the title (one per 600 frames, at most 4)."""
    length = min(CALIBRATION_FRAMES, n_frames)
    count = int(np.clip(n_frames // 600 + 1, 1, CALIBRATION_MAX_WINDOWS))
    starts = [int((n_frames - length) * (k + 0.5) / count) for k in range(count)]
    convert = _FrameConverter(rendition)
    windows: list[list[np.ndarray]] = []
    with av.open(str(input_path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        for start in starts:
            start_time = origin + start / rendition.fps
            if start > 0:
                container.seek(int(start_time / stream.time_base), stream=stream, backward=True)
            window: list[np.ndarray] = []
            for frame in container.decode(stream):
                if frame.time is not None and frame.time < start_time - 0.5 / rendition.fps:
                    continue
                window.append(convert(frame))
                if len(window) == length:
                    break
            if window:
                windows.append(window)
    return windows


def _encode_decode_luma(frames: list[np.ndarray], rendition: Rendition, *, crf: int, preset: str) -> list[np.ndarray]:
    """Encode yuv420p frames with the variants' libx264 settings and return the decoded luma planes."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = rendition.width, rendition.height, "yuv420p"
    encoder.time_base, encoder.framerate = 1 / rendition.fps, rendition.fps
    configure_x264(encoder, rendition, crf=crf, preset=preset)
    packets = []
    for index, yuv in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    lumas = [_plane(frame, 0).copy() for packet in packets for frame in decoder.decode(packet)]
    lumas += [_plane(frame, 0).copy() for frame in decoder.decode(None)]
    return lumas


def reorder_delay_frames(rendition: Rendition, *, crf: int, preset: str) -> int:
    """Frames by which libx264's B-frame reordering delays the first decode time (2 for veryfast).

    The fragmented MP4 muxer starts the video at this delay (it cannot write an edit list into an
    init segment written before the first packet), so the audio is delayed by as much to stay in
    sync. Measured with a tiny encode: the delay depends on the settings, not on the frame size.
    """
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 64, "yuv420p"
    encoder.time_base, encoder.framerate = 1 / rendition.fps, rendition.fps
    configure_x264(encoder, rendition, crf=crf, preset=preset)
    blank = np.full((96, 64), 128, np.uint8)
    packets = []
    for index in range(8):
        frame = av.VideoFrame.from_ndarray(blank, format="yuv420p")
        frame.pts = index
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return max(0, -min(packet.dts for packet in packets))


def calibrate_rms(windows: list[list[np.ndarray]], rendition: Rendition, *, key: bytes, strength: str, crf: int,
                  preset: str) -> tuple[float, dict[str, Any]]:
    """Pre-encode RMS that makes the decoded variant hit the strength's PSNR on this title.

    Each window is encoded unmarked and marked at the model RMS (`target_rms`); the measured
    decoded MSE corrects the RMS along the model's slope (CODING_GAIN), which is accurate near the
    operating point even where the model's floor is off. The facts also give the floor (the
    measurement without the pattern's share), the PSNR the variants are expected to measure and
    whether that is within PSNR_TOLERANCE_DB of the target. Returns (rms, facts for the manifest).
    """
    model_rms = target_rms(strength)
    target_mse = 255.0**2 / 10.0 ** (STRENGTH_PSNR_DB[strength] / 10.0)
    height = rendition.height
    errors: list[float] = []
    for number, window in enumerate(windows):
        mask = pattern.perceptual_mask([yuv[:height] for yuv in window[:: max(1, len(window) // 4)]],
                                       floor=MASK_FLOOR[strength])
        noise = pattern.keyed_noise(key, number, "calibration", height, rendition.width)
        plus, minus = _split_delta(pattern.position_delta(noise, mask, rms=model_rms))
        marked = []
        for yuv in window:
            out = yuv.copy()
            _saturating_add(yuv[:height], plus, minus, out=out[:height])
            marked.append(out)
        for a, b in zip(_encode_decode_luma(marked, rendition, crf=crf, preset=preset),
                        _encode_decode_luma(window, rendition, crf=crf, preset=preset)):
            errors.append(float(np.mean(np.square(a.astype(np.float32) - b.astype(np.float32)))))
    if not errors:
        return model_rms, {"windows": 0}
    measured_mse = float(np.mean(errors))
    rms_squared = model_rms**2 + (target_mse - measured_mse) / CODING_GAIN
    rms = float(np.clip(math.sqrt(max(rms_squared, 0.0)), MIN_RMS[strength], 3.0 * model_rms))
    # The floor is what the measurement leaves without the pattern; the expected PSNR is the
    # model moved along its slope from the measured point to the chosen RMS.
    floor_mse = max(measured_mse - CODING_GAIN * model_rms**2, 0.0)
    expected_psnr_db = _psnr_db(measured_mse + CODING_GAIN * (rms**2 - model_rms**2))
    reachable = abs(expected_psnr_db - STRENGTH_PSNR_DB[strength]) <= PSNR_TOLERANCE_DB
    if not reachable:
        log.warning("strength %s (%.0f dB) is out of reach at CRF %d on this title: its re-encoding floor "
                    "alone measures %.1f dB, the variants will measure about %.1f dB; a lower CRF lowers the "
                    "floor (at a bitrate cost)", strength, STRENGTH_PSNR_DB[strength], crf, _psnr_db(floor_mse),
                    expected_psnr_db)
    return rms, {
        "windows": len(windows),
        "frames": len(errors),
        "model_rms": model_rms,
        "measured_psnr_db_at_model_rms": _psnr_db(measured_mse),
        "rms": rms,
        "floor_psnr_db": _psnr_db(floor_mse),
        "expected_psnr_db": expected_psnr_db,
        "target_reachable": reachable,
    }


def _psnr_db(mse: float) -> float:
    """8-bit PSNR of a mean squared error, capped at 99 dB for (near) zero errors (JSON has no inf)."""
    return min(99.0, 10.0 * math.log10(255.0**2 / max(mse, 1e-12)))


def prepare(input_path: str | os.PathLike[str], outdir: str | os.PathLike[str], *, strength: str = "medium",
            position_seconds: float = 2.0, height: int | None = None, crf: int = 20, preset: str = "veryfast",
            progress: Progress | None = None, duration: float | None = None, force: bool = False,
            calibrate: bool = True, key: bytes | None = None) -> package.Manifest:
    """Prepare a title: write A/B variants as fragments, the index, key, manifest and reference; return the manifest.

    `duration` limits the title to the first seconds of the input (tests, excerpts). `calibrate`
    measures the encoder on a few windows of the title to hit the strength's PSNR (see
    `calibrate_rms`); without it the fixed model of `target_rms` is used. `key` is for reproducible
    tests only; by default 32 fresh random bytes from `secrets`.
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
        tmp_paths = {name: outdir / f".{name}.tmp.mp4" for name in _VARIANTS}
        rms, calibration = target_rms(strength), None
        if calibrate:
            windows = _calibration_windows(input_path, rendition, n_frames)
            rms, calibration = calibrate_rms(windows, rendition, key=key, strength=strength, crf=crf, preset=preset)
        stats = _encode_title(container, outdir, rendition, positions, audio, key=key, rms=rms, strength=strength,
                              crf=crf, preset=preset, progress=progress, out_paths=tmp_paths)
    except BaseException as exc:
        for path in outdir.glob(".?.tmp.mp4"):
            path.unlink(missing_ok=True)
        if isinstance(exc, av.FFmpegError):
            raise PrepareError(f"decoding or encoding failed: {exc}") from exc
        raise
    finally:
        container.close()

    try:
        package.split_variants(tmp_paths["A"], tmp_paths["B"], outdir, n_positions=len(positions))
    except package.PackageError as exc:
        raise PrepareError(f"the A and B encodes are not interchangeable: {exc}") from exc
    finally:
        for path in tmp_paths.values():
            path.unlink(missing_ok=True)
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
                    "rms": rms, "mask_floor": MASK_FLOOR[strength], "calibration": calibration},
        "encoder": {"codec": "libx264", "crf": crf, "preset": preset,
                    "x264_params": x264_params(rendition.frames_per_position), "threads": X264_THREADS,
                    "pix_fmt": "yuv420p",
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
                  positions: list[dict[str, Any]], audio: dict[str, Any] | None, *, key: bytes | None, rms: float,
                  strength: str,
                  crf: int, preset: str, progress: Progress | None, out_paths: dict[str, Path]) -> dict[str, Any]:
    """Decode once, mark, encode each variant of `out_paths` ("A", "B"; or "U": unmarked); return counters."""
    n_frames = positions[-1]["first_frame"] + positions[-1]["frame_count"]
    video_stream = container.streams.video[0]
    video_stream.thread_type = "AUTO"
    audio_stream = container.streams.audio[0] if audio else None
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
    convert = _FrameConverter(rendition)
    floor = MASK_FLOOR[strength]
    height = rendition.height
    pending: list[np.ndarray] = []
    decoded = 0
    frame_index = 0

    def flush_position(frames: list[np.ndarray]) -> None:
        nonlocal frame_index
        index = frame_index // rendition.frames_per_position
        lumas = [frames[i][:height] for i in np.linspace(0, len(frames) - 1, min(_MASK_SAMPLE_FRAMES, len(frames))).astype(int)]
        mask = pattern.perceptual_mask(lumas, floor=floor)
        deltas = {v: pattern.position_delta(pattern.keyed_noise(key, index, v, height, rendition.width), mask, rms=rms)
                  if key is not None else np.zeros((height, rendition.width), np.float32) for v in variants}
        if reference is not None:
            reference.add_position(index, deltas["A"], deltas["B"])
        parts = {v: _split_delta(d) for v, d in deltas.items()}
        marked = np.empty_like(frames[0])
        for yuv in frames:
            marked[height:] = yuv[height:]
            for v in variants:
                _saturating_add(yuv[:height], *parts[v], out=marked[:height])
                outputs.encode_frame(v, marked, frame_index)
            frame_index += 1
        if progress is not None:
            progress(frame_index, n_frames)

    last_yuv: list[np.ndarray] = []  # the latest source frame, repeated if the decoder falls short

    def add_frame(yuv: np.ndarray) -> None:
        last_yuv[:] = [yuv]
        if reference is not None:
            reference.add_frame(len(pending) + frame_index, yuv[:height])
        pending.append(yuv)
        if len(pending) == rendition.frames_per_position:
            flush_position(pending)
            pending.clear()

    try:
        streams = [video_stream] + ([audio_stream] if audio_stream is not None else [])
        for packet in container.demux(*streams):
            if packet.stream.type == "video":
                if frame_index + len(pending) >= n_frames:
                    if audio_stream is None:
                        break
                    continue
                for frame in _decode(packet):
                    decoded += 1
                    if frame_index + len(pending) < n_frames:
                        add_frame(convert(frame))
            else:
                video_done = frame_index + len(pending) >= n_frames
                if video_done and packet.pts is not None and packet.time_base is not None \
                        and float(packet.pts * packet.time_base) - video_start > end_time + 1.0:
                    break
                for frame in _decode(packet):
                    _feed_audio(outputs, frame, video_start, end_time, audio_delay)
        padded = n_frames - (frame_index + len(pending))
        if padded == n_frames:
            raise PrepareError("the decoder returned no video frames")
        for _ in range(padded):
            add_frame(last_yuv[0].copy())
        if pending:
            flush_position(pending)
            pending.clear()
        outputs.close()
        if reference is not None:
            reference.close()
    except av.FFmpegError as exc:
        raise PrepareError(f"decoding or encoding failed: {exc}") from exc
    return {
        "planned_frames": n_frames,
        "decoded_frames": decoded,
        "padded_frames": max(0, padded),
        "reference": reference is not None,
    }


def encode_unmarked(input_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                    manifest: package.Manifest, *, progress: Progress | None = None) -> Path:
    """Encode the title of `manifest` without any mark, with the very same settings (quality baseline)."""
    input_path, out_path = Path(input_path), Path(out_path)
    fps = Fraction(*manifest["rendition"]["fps"])
    rendition = Rendition(manifest["rendition"]["width"], manifest["rendition"]["height"], fps,
                          manifest["frames_per_position"], manifest["rendition"]["geometry"] == "scaled")
    encoder = manifest["encoder"]
    container = _open_input(input_path)
    try:
        _encode_title(container, None, rendition, manifest["positions"], manifest["audio"], key=None, rms=0.0,
                      strength=manifest["strength"], crf=encoder["crf"], preset=encoder["preset"],
                      progress=progress, out_paths={"U": out_path})
    finally:
        container.close()
    return out_path


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
