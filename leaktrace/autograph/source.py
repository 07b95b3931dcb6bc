"""The input as prepare() reads it: probe, rendition, and the exact frames that get encoded.

Rules decided here (also in docs/autograph-format.md):

- Frame timing: one output frame per decoded source frame, in order, at the source's nominal
  frame rate (constant frame rate; source timestamps are not used, so repeated or irregular
  timestamps cannot shift positions). The frame count is planned from the demuxed packets; if
  the decoder yields fewer frames (undecodable packets), the last frame is repeated to fill the
  plan (`padded_frames` in the manifest); frames beyond the plan are not used.
- Range: full-range sources are converted to limited range before marking.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from leaktrace.autograph.plan import PrepareError, Rendition, frames_per_position, manifest_rendition

log = logging.getLogger(__name__)

AUDIO_BITRATE = 128_000
_AAC_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_DEFAULT_SAMPLE_RATE = 48000


def open_input(input_path: Path) -> av.container.InputContainer:
    """The input opened for reading; PrepareError when it cannot be read or has no video."""
    try:
        container = av.open(str(input_path))
    except (av.FFmpegError, OSError) as exc:
        raise PrepareError(f"cannot read input {input_path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise PrepareError(f"input {input_path} has no video stream")
    return container


def source_fps(stream: av.video.stream.VideoStream) -> Fraction:
    """Nominal frame rate: the stream's r_frame_rate when plausible, else its average rate."""
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate and 1 <= rate <= 240:
            return Fraction(rate).limit_denominator(1001)
    raise PrepareError("cannot determine the input frame rate")


def count_video_packets(input_path: Path) -> int:
    """Number of non-empty video packets: the planned frame count (demux only, no decode)."""
    with av.open(str(input_path)) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def rendition_of(stream: av.video.stream.VideoStream, fps: Fraction, position_seconds: float,
                 height: int | None) -> Rendition:
    """The rendition of `stream`: its even-cropped size, or scaled to `height` (even sides)."""
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


def audio_plan(container: av.container.InputContainer) -> dict[str, Any] | None:
    """The manifest's audio description (AAC, the source's rate when AAC has it, mono or stereo), or None."""
    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    rate = stream.codec_context.sample_rate or _DEFAULT_SAMPLE_RATE
    channels = stream.codec_context.channels or 2
    return {
        "codec": "aac",
        "source_codec": stream.codec_context.name,
        "sample_rate": rate if rate in _AAC_SAMPLE_RATES else _DEFAULT_SAMPLE_RATE,
        "layout": "mono" if channels == 1 else "stereo",
        "bit_rate": AUDIO_BITRATE,
    }


def plane(frame: av.VideoFrame, index: int) -> np.ndarray:
    """View of plane `index` of a decoded frame, uint8 (plane height, plane width)."""
    p = frame.planes[index]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]


class FrameConverter:
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
        out[: r.height] = plane(frame, 0)[: r.height, : r.width]
        chroma = out[r.height:].reshape(2, r.height // 2, r.width // 2)
        chroma[0] = plane(frame, 1)[: r.height // 2, : r.width // 2]
        chroma[1] = plane(frame, 2)[: r.height // 2, : r.width // 2]
        return out


class PlannedFrames:
    """The input's video as prepare() encodes it: exactly `planned` converted frames, in decode order.

    Frames beyond the plan are not used; if the decoder yields fewer (undecodable packets), the last
    frame is repeated to fill the plan (`padded`). With `on_audio`, the audio frames met on the way go
    to it, up to `audio_until` (seconds, the input's clock) once the video is complete.
    """

    def __init__(self, container: av.container.InputContainer, planned: int, convert: FrameConverter, *,
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


def source_frames(input_path: str | os.PathLike[str], manifest: dict[str, Any]) -> Iterator[np.ndarray]:
    """The input's frames as prepare() encoded them: yuv420p arrays (height*3/2, width), n_frames of them."""
    with open_input(Path(input_path)) as container:
        yield from PlannedFrames(container, manifest["n_frames"], FrameConverter(manifest_rendition(manifest)))
