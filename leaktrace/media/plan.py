"""Planning an output: what to encode, from the source's probe, the preset and the job's settings.

`plan_output` is pure (no files, no processes), so every rule below is tested on exact numbers.

- Sizes. `settings.video.width` / `height` are "N%" of the source's display size (after its
  orientation, `force_aspect_ratio` and the requested `rotate`) or absolute pixels. Given one,
  the other follows the source's display aspect ratio; given none, the source's size is kept.
  The result then shrinks uniformly (aspect ratio kept) to fit the preset's max_width x
  max_height, so nothing is ever scaled past the caps, and each side is rounded to an even
  number (4:2:0 chroma needs it). Output pixels are square unless `aspect_ratio` is set.
- Video bitrate. Rate control is a target bitrate with a VBV cap (x264/x265 ABR: `-b:v` target,
  `-maxrate` the preset's max_bitrate, `-bufsize` its max_buffersize), not CRF: presets are
  ladders defined by bitrate and clients check outputs against them, so the average must land
  on what was asked. The target is `settings.video.bitrate` ("N%" of the source's video
  bitrate, or kbps), else the preset's bits per pixel at the output size
  (max_bitrate x pixels / (max_width x max_height)), never above max_bitrate.
- Frame rate. `input.force_framerate` replaces the source's rate; `settings.video.framerate`
  ("N%" or fps) sets the output's; above max_framerate the rate is divided by the smallest
  integer that brings it under (59.94 -> 29.97 with a cap of 30), so frames drop evenly.
  Keyframes are at most max_key_distance seconds apart (`-g` in frames).
- Audio (AAC). Channels, sampling rate and bitrate from `settings.audio` (bitrate "N%" of the
  source's or kbps), else the source's, else the preset's cap; each capped by the preset.
- Time. `input.start_time` (s) skips the input's start; `settings.max_duration` (s) limits the
  output's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from leaktrace.media.errors import MediaError
from leaktrace.media.probe import AudioTrack, MediaInfo, VideoTrack

# The system codecs (seeded by store migration 0002), by the ids presets reference them with.
H264_CODEC_ID = "525ce63284aed52635e85d05"
AAC_CODEC_ID = "525ce63284aed52635e85d06"
H265_CODEC_ID = "525ce63284aed52635e85d07"


@dataclass(frozen=True)
class Encoder:
    name: str  # ffmpeg encoder
    profiles: dict[str, str]  # preset profile -> ffmpeg `-profile` value
    pixel_formats: dict[str, str]  # preset profile -> pixel format (video only)


VIDEO_ENCODERS: dict[str, Encoder] = {
    H264_CODEC_ID: Encoder(
        "libx264", {"Baseline": "baseline", "Main": "main", "High": "high"}, {"Baseline": "yuv420p", "Main": "yuv420p", "High": "yuv420p"}
    ),
    H265_CODEC_ID: Encoder("libx265", {"Main": "main", "Main10": "main10"}, {"Main": "yuv420p", "Main10": "yuv420p10le"}),
}
AUDIO_ENCODERS: dict[str, Encoder] = {AAC_CODEC_ID: Encoder("aac", {"LC": "aac_low"}, {})}
AUTOGRAPH_CODEC_IDS = (H264_CODEC_ID,)  # the engine prepares H.264 renditions
MUXERS = {"mp4": "mp4", "mkv": "matroska", "mov": "mov"}  # preset container -> ffmpeg muxer
DEMUXERS = {"mp4": "mov", "mov": "mov", "m4v": "mov", "mkv": "matroska", "webm": "matroska", "ts": "mpegts", "avi": "avi", "flv": "flv"}
ROTATIONS = (0, 90, 180, 270)  # settings.video.rotate, degrees clockwise

FALLBACK_BITS_PER_PIXEL = 0.1  # video bits per pixel per frame when the preset caps no bitrate
FALLBACK_FRAMERATE = 25.0  # when neither the source nor the job says
DEFAULT_KEY_DISTANCE_S = 2.0
MIN_VIDEO_KBPS = 64  # the codecs' lowest max_bitrate
DEFAULT_AUDIO_KBPS = 128
DEFAULT_CHANNELS = 2
DEFAULT_SAMPLINGRATE_HZ = 48000
VBV_BUFFER_SECONDS = 2  # -bufsize in seconds of -maxrate when the preset caps no buffer
UNCAPPED_PEAK_RATIO = 1.5  # -maxrate over -b:v when the preset caps no bitrate


@dataclass(frozen=True)
class VideoPlan:
    encoder: str
    profile: str
    pixel_format: str
    width: int
    height: int
    bitrate_kbps: int  # -b:v, the average
    maxrate_kbps: int  # -maxrate, the VBV peak
    bufsize_kbit: int  # -bufsize
    framerate: float  # output frames per second
    change_framerate: bool  # False: keep the source's timestamps as they are
    key_interval_frames: int  # -g
    max_ref_frames: int | None
    passes: int
    rotate: int  # degrees clockwise applied after the source's own orientation
    aspect_ratio: str | None  # display aspect ratio to signal (setdar), None: square pixels
    deinterlace: bool


@dataclass(frozen=True)
class AudioPlan:
    encoder: str
    profile: str
    bitrate_kbps: int
    channels: int
    samplingrate: int  # Hz


@dataclass(frozen=True)
class EncodePlan:
    container: str  # the preset's container key (mp4, mkv, mov)
    muxer: str
    video: VideoPlan | None
    audio: AudioPlan | None
    start_time_s: float  # skipped at the input's start
    duration_s: float  # expected output length, for progress
    max_duration_s: float | None  # -t, when the job limits the length
    input_format: str | None  # demuxer forced by input.force_container
    input_framerate: float | None  # input.force_framerate
    autograph: bool

    @property
    def height(self) -> int | None:
        """Output height in pixels (what the AutoGraph prepare scales to), None without video."""
        return self.video.height if self.video else None

    @property
    def resolution(self) -> str:
        """The `{resolution}` placeholder: "720p" from the output height, "audio" without video."""
        return f"{self.video.height}p" if self.video else "audio"


# Bits per pixel per frame of an intermediate encode: well above what x264 needs to be visually
# transparent, so a second encode (the AutoGraph prepare) starts from what the source showed.
INTERMEDIATE_BITS_PER_PIXEL = 1.0
INTERMEDIATE_CONTAINER = "mkv"


def needs_intermediate(plan: EncodePlan, *, logo: bool) -> bool:
    """True when an AutoGraph rendition needs a first encode: the engine marks what it is given,
    so a logo, a start time or a length limit must be applied before it."""
    return logo or plan.start_time_s > 0 or plan.max_duration_s is not None


def intermediate(plan: EncodePlan) -> EncodePlan:
    """`plan` as a near-lossless H.264 stage in Matroska, at the same size, time span and rate."""
    if plan.video is None:
        raise MediaError("unsupported_codec", "an intermediate encode needs a video stream")
    video = plan.video
    kbps = math.ceil(video.width * video.height * video.framerate * INTERMEDIATE_BITS_PER_PIXEL / 1000)
    return replace(
        plan,
        container=INTERMEDIATE_CONTAINER,
        muxer=MUXERS[INTERMEDIATE_CONTAINER],
        video=replace(video, encoder=VIDEO_ENCODERS[H264_CODEC_ID].name, profile="high", pixel_format="yuv420p",
                      bitrate_kbps=kbps, maxrate_kbps=2 * kbps, bufsize_kbit=2 * kbps, passes=1),  # fmt: skip
    )


def plan_output(
    source: MediaInfo,
    *,
    target_format: dict[str, Any],
    preset_settings: dict[str, Any] | None,
    output_settings: dict[str, Any] | None,
    input_options: dict[str, Any],
    autograph: bool,
) -> EncodePlan:
    """Resolve one `outputs[]` entry against its source into exact encoder settings.

    `target_format` is the preset's (container, vcodec, acodec with caps); `output_settings` the
    entry's `settings` (max_duration, video{...}, audio{...}); `input_options` the job's
    input.start_time and force_* values. Raises MediaError("unsupported_codec") for a preset codec
    or profile we cannot encode, or an AutoGraph output that is not H.264, and
    MediaError("unreadable_input") when the start time is past the input's end or a forced
    container is unknown. `preset_settings` (subtitle policy, …) need nothing here today: subtitles
    are never copied.
    """
    del preset_settings
    settings = output_settings or {}
    container = str(target_format.get("container", "")).lower()
    if container not in MUXERS:
        raise MediaError("unsupported_codec", f"the preset's container {container!r} is not one we write ({', '.join(MUXERS)})")
    vcodec, acodec = target_format.get("vcodec"), target_format.get("acodec")
    if autograph and (not vcodec or vcodec.get("codec", {}).get("id") not in AUTOGRAPH_CODEC_IDS):
        raise MediaError("unsupported_codec", "AutoGraph outputs are H.264: choose a preset with the H.264 codec")
    source_video = source.video_tracks[0] if source.video_tracks and source.subtype == "video" else None
    source_audio = source.audio_tracks[0] if source.audio_tracks else None
    if autograph and source_video is None:
        raise MediaError("unreadable_input", "AutoGraph needs an input with a video track")
    start_s = float(input_options.get("start_time") or 0.0)
    total_s = (source.duration or 0) / 1000
    if total_s and start_s >= total_s:
        raise MediaError("unreadable_input", f"input.start_time {start_s:g} s is past the input's end ({total_s:g} s)")
    max_duration = settings.get("max_duration")
    max_duration_s = float(max_duration) if max_duration else None
    remaining_s = max(total_s - start_s, 0.0)
    forced_container = input_options.get("force_container")
    if forced_container and str(forced_container).lower() not in DEMUXERS:
        raise MediaError("unreadable_input", f"input.force_container {forced_container!r} is not one of {', '.join(DEMUXERS)}")
    forced_fps = _rate(input_options.get("force_framerate"))
    video = (
        _video_plan(source_video, vcodec, settings.get("video") or {}, input_options, forced_fps=forced_fps, interlaced=source.interlaced)
        if vcodec and source_video
        else None
    )
    audio = _audio_plan(source_audio, acodec, settings.get("audio") or {}) if acodec and source_audio else None
    if video is None and audio is None:
        raise MediaError("unsupported_codec", "the preset encodes no stream the input has (no video codec for a video, or no audio)")
    return EncodePlan(
        container=container,
        muxer=MUXERS[container],
        video=video,
        audio=audio,
        start_time_s=start_s,
        duration_s=min(remaining_s, max_duration_s) if max_duration_s else remaining_s,
        max_duration_s=max_duration_s,
        input_format=DEMUXERS[str(forced_container).lower()] if forced_container else None,
        input_framerate=forced_fps,
        autograph=autograph,
    )


def _video_plan(
    track: VideoTrack,
    vcodec: dict[str, Any],
    wanted: dict[str, Any],
    input_options: dict[str, Any],
    *,
    forced_fps: float | None,
    interlaced: bool,
) -> VideoPlan:
    encoder = _encoder(VIDEO_ENCODERS, vcodec, "video")
    profile = str(vcodec.get("profile", ""))
    caps = vcodec.get("caps") or {}
    rotate = int(wanted.get("rotate") or 0) % 360
    if rotate not in ROTATIONS:
        raise MediaError("encode_failed", f"settings.video.rotate must be one of {ROTATIONS}, not {rotate}")
    width, height = output_size(
        source_display_size(track, force_aspect_ratio=input_options.get("force_aspect_ratio"), rotate=rotate),
        width=wanted.get("width"),
        height=wanted.get("height"),
        max_width=_number(caps.get("max_width")),
        max_height=_number(caps.get("max_height")),
    )
    max_bitrate = _number(caps.get("max_bitrate"))
    source_fps = forced_fps or track.framerate or FALLBACK_FRAMERATE
    fps = capped_framerate(_scaled(wanted.get("framerate"), source_fps) or source_fps, _number(caps.get("max_framerate")))
    if max_bitrate:
        cap_pixels = (_number(caps.get("max_width")) or width) * (_number(caps.get("max_height")) or height)
        default_kbps = max_bitrate * min(width * height / cap_pixels, 1.0)
    else:
        default_kbps = FALLBACK_BITS_PER_PIXEL * width * height * fps / 1000
    bitrate = _scaled(wanted.get("bitrate"), track.video_bitrate) or default_kbps
    bitrate_kbps = max(MIN_VIDEO_KBPS, round(min(bitrate, max_bitrate) if max_bitrate else bitrate))
    maxrate_kbps = round(max_bitrate) if max_bitrate else round(bitrate_kbps * UNCAPPED_PEAK_RATIO)
    buffer = _number(caps.get("max_buffersize"))
    force_interlaced = input_options.get("force_interlaced")
    return VideoPlan(
        encoder=encoder.name,
        profile=encoder.profiles[profile],
        pixel_format=encoder.pixel_formats[profile],
        width=width,
        height=height,
        bitrate_kbps=bitrate_kbps,
        maxrate_kbps=maxrate_kbps,
        bufsize_kbit=round(buffer) if buffer else maxrate_kbps * VBV_BUFFER_SECONDS,
        framerate=fps,
        change_framerate=fps != source_fps or forced_fps is not None,
        key_interval_frames=max(1, round(fps * (_number(caps.get("max_key_distance")) or DEFAULT_KEY_DISTANCE_S))),
        max_ref_frames=int(caps["max_ref_frames"]) if caps.get("max_ref_frames") else None,
        passes=2 if int(vcodec.get("passes") or 1) == 2 else 1,
        rotate=rotate,
        aspect_ratio=wanted.get("aspect_ratio"),
        deinterlace=bool(force_interlaced) or (interlaced and force_interlaced is None),
    )


def _audio_plan(track: AudioTrack, acodec: dict[str, Any], wanted: dict[str, Any]) -> AudioPlan:
    encoder = _encoder(AUDIO_ENCODERS, acodec, "audio")
    caps = acodec.get("caps") or {}
    channels = int(wanted.get("channels") or track.nb_channels or DEFAULT_CHANNELS)
    rate = int(wanted.get("samplingrate") or track.samplingrate or DEFAULT_SAMPLINGRATE_HZ)
    max_bitrate = _number(caps.get("max_bitrate"))
    bitrate = _scaled(wanted.get("bitrate"), track.audio_bitrate) or max_bitrate or DEFAULT_AUDIO_KBPS
    return AudioPlan(
        encoder=encoder.name,
        profile=encoder.profiles[str(acodec.get("profile", ""))],
        bitrate_kbps=round(_at_most(bitrate, max_bitrate)),
        channels=int(_at_most(channels, _number(caps.get("max_channels")))),
        samplingrate=int(_at_most(rate, _number(caps.get("max_samplingrate")))),
    )


def source_display_size(track: VideoTrack, *, force_aspect_ratio: str | None, rotate: int) -> tuple[float, float]:
    """The source picture as it is shown: orientation applied, anamorphic pixels made square
    (the height is kept, the width follows the display aspect ratio), then `rotate` applied."""
    width, height = float(track.width), float(track.height)
    ratio = _ratio(force_aspect_ratio) or _ratio(track.aspect_ratio)
    if ratio:
        width = height * ratio
    turns = (_orientation_degrees(track.orientation) + rotate) % 180
    return (height, width) if turns == 90 else (width, height)


def output_size(
    display: tuple[float, float],
    *,
    width: Any,
    height: Any,
    max_width: float | None,
    max_height: float | None,
) -> tuple[int, int]:
    """Even output size from the requested width/height ("N%" of `display`, or pixels), the
    display aspect ratio when only one is given, then shrunk uniformly to fit the caps."""
    source_w, source_h = display
    w, h = _scaled(width, source_w), _scaled(height, source_h)
    if w is None and h is None:
        w, h = source_w, source_h
    elif h is None:
        h = w * source_h / source_w
    elif w is None:
        w = h * source_w / source_h
    shrink = min(1.0, (max_width or math.inf) / w, (max_height or math.inf) / h)
    return _even(w * shrink, max_width), _even(h * shrink, max_height)


def capped_framerate(fps: float, cap: float | None) -> float:
    """`fps`, or `fps` divided by the smallest integer that brings it to `cap` or below."""
    if not cap or fps <= cap:
        return round(fps, 3)
    return round(fps / math.ceil(fps / cap - 1e-9), 3)


def _encoder(encoders: dict[str, Encoder], choice: dict[str, Any], kind: str) -> Encoder:
    codec_id = choice.get("codec", {}).get("id")
    encoder = encoders.get(codec_id or "")
    if encoder is None:
        raise MediaError("unsupported_codec", f"the preset's {kind} codec {codec_id!r} is not one we can encode")
    if str(choice.get("profile", "")) not in encoder.profiles:
        raise MediaError(
            "unsupported_codec", f"the preset's {kind} profile {choice.get('profile')!r} is not one of {', '.join(encoder.profiles)}"
        )
    return encoder


def _scaled(value: Any, reference: float | None) -> float | None:
    """A setting's value: "N%" of `reference` (None when there is no reference), or a number."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.endswith("%"):
        return float(value[:-1]) / 100 * reference if reference else None
    return float(value)


def _even(value: float, cap: float | None) -> int:
    """`value` rounded to the nearest even integer (halves up), at least 2 and not above an even `cap`."""
    even = max(2, math.floor(value / 2 + 0.5) * 2)
    return min(even, int(cap) // 2 * 2) if cap else even


def _at_most(value: float, cap: float | None) -> float:
    return min(value, cap) if cap else value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else None


def _ratio(text: str | None) -> float | None:
    """"16:9" (or "1.777") as a float, None when absent or meaningless."""
    if not text:
        return None
    try:
        numerator, _, denominator = str(text).partition(":")
        ratio = Fraction(numerator) / Fraction(denominator) if denominator else Fraction(numerator)
    except (ValueError, ZeroDivisionError):
        return None
    return float(ratio) if ratio > 0 else None


def _rate(value: Any) -> float | None:
    """A frame rate given as a number, "25", or "30000/1001"."""
    if value in (None, ""):
        return None
    try:
        rate = float(Fraction(str(value)))
    except (ValueError, ZeroDivisionError):
        raise MediaError("unreadable_input", f"input.force_framerate {value!r} is not a frame rate") from None
    return rate if rate > 0 else None


def _orientation_degrees(orientation: str | None) -> int:
    return int(orientation.removeprefix("rotate-")) if orientation else 0
