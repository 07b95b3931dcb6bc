"""The variants' files: U's packets muxed into every output with its own intra pictures, and one audio encode.

`prepare()` writes each variant as one fragmented MP4; `package.split_variants()` then cuts them
into the title folder. The muxer waits for every stream before writing (`max_interleave_delta`
0), so the files depend on the packets' timestamps only, never on the order in which chunks and
audio arrive.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np

from leaktrace.autograph import h264
from leaktrace.autograph.encoder import EncodedPacket, configure_x264, retimed
from leaktrace.autograph.plan import Rendition

AAC_PRIMING = 1024  # samples of encoder delay of FFmpeg's AAC encoder

_MP4_OPTIONS = {
    "movflags": "empty_moov+default_base_moof+frag_keyframe+skip_trailer",
    # wait for every stream before writing: the interleaving then depends on timestamps only, so the
    # variants get identical fragment boundaries and audio placement
    "max_interleave_delta": "0",
}
_LIMITED_RANGE = 1  # AVCOL_RANGE_MPEG


class Outputs:
    """The output files and the audio encoder.

    A libx264 encoder with the variants' settings and the AAC encoder live in an in-memory MP4 that
    only serves to open them with global headers: every output file gets its streams copied from
    them, so all outputs have the same init segment, and the SPS and PPS that U's chunks must
    produce (`parameter_sets`). Each output receives U's packets, with the intra pictures replaced
    per output (`mux_video`), and the very same audio packets.
    """

    def __init__(self, paths: dict[str, Path], rendition: Rendition, *, crf: int, preset: str,
                 audio: dict[str, Any] | None):
        self._master = av.open(io.BytesIO(), "w", format="mp4")
        self.video_encoder = self._master.add_stream("libx264", rate=rendition.fps)
        self.video_encoder.width, self.video_encoder.height = rendition.width, rendition.height
        self.video_encoder.pix_fmt = "yuv420p"
        self.video_encoder.time_base = 1 / rendition.fps
        self.video_encoder.codec_context.color_range = _LIMITED_RANGE
        configure_x264(self.video_encoder.codec_context, crf=crf, preset=preset)
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

    def mux_video(self, packet: EncodedPacket, data: dict[str, bytes] | None = None) -> None:
        """Mux U's `packet` into every output with U's timing and flags: its bytes, or an output's own in `data`."""
        own, data = bytes(packet), data or {}
        for name, container in self.containers.items():
            out = retimed(data.get(name, own), packet)
            out.stream = self.video[name]
            container.mux(out)

    def feed_audio(self, frame: av.AudioFrame, *, video_start: float, end_time: float, delay: float) -> None:
        """Encode an audio frame in sync with the video; drop audio before the first video frame or after the end.

        The fragmented MP4 muxer starts every track at its first decode time: the video shows its
        first frame `delay` seconds late (B-frame reordering) and the audio plays its encoder priming
        (AAC_PRIMING samples) first. Leading silence makes up the difference, so audio and video keep
        the source's relative timing. Times are in seconds, `video_start` on the input's clock.
        """
        if frame.time is None:
            return
        start = frame.time - video_start
        if start + frame.samples / frame.sample_rate <= 0 or start >= end_time:
            return
        if self.audio_samples == 0:
            self._encode_silence(int(round((max(start, 0.0) + delay) * self.audio_encoder.sample_rate)) - AAC_PRIMING)
        self._encode_audio(frame)

    def close(self) -> None:
        """Flush the audio and close every file (every video packet must have been muxed)."""
        if self.audio_encoder is not None:
            self._encode_audio(None)
            self._mux_audio(self.audio_encoder.encode(None))
        for container in self.containers.values():
            container.close()
        self._master.close()

    def _encode_audio(self, frame: av.AudioFrame | None) -> None:
        """Resample and encode once; mux the very same packets into every output."""
        assert self.audio_resampler is not None and self.audio_encoder is not None
        for resampled in self.audio_resampler.resample(frame):
            resampled.pts = self.audio_samples
            self.audio_samples += resampled.samples
            self._mux_audio(self.audio_encoder.encode(resampled))

    def _encode_silence(self, samples: int) -> None:
        """Start the audio with `samples` of silence (no-op when not positive)."""
        if samples <= 0:
            return
        layout = self.audio_encoder.layout.name
        channels = 1 if layout == "mono" else 2
        silence = av.AudioFrame.from_ndarray(np.zeros((channels, samples), np.float32), format="fltp", layout=layout)
        silence.sample_rate = self.audio_encoder.sample_rate
        self._encode_audio(silence)

    def _mux_audio(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            for name, container in self.containers.items():
                packet.stream = self.audio[name]
                container.mux(packet)
