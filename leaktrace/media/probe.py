"""What a media file holds: the File object's media fields of the reference's §2.8.

`probe(path)` reads the headers with ffprobe (one JSON call), then demuxes every packet once
(no decoding) to check that the data the headers announce is really there, and to measure each
stream's bitrate and duration from its packets, which works the same for every container (MP4
states bitrates in its index, Matroska does not). A file that is cut short (its packets end more
than TRUNCATION_SLACK_S plus TRUNCATION_SLACK_FRACTION of the announced duration early) is
refused, like a file ffprobe cannot open at all.

Units follow the reference: durations in milliseconds, bitrates in kbps, sampling rates in Hz.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from math import gcd
from pathlib import Path
from typing import Any

from leaktrace.media import ffmpeg
from leaktrace.media.errors import MediaError

MD5_CHUNK_BYTES = 1 << 20
TRUNCATION_SLACK_S = 1.0
TRUNCATION_SLACK_FRACTION = 0.02
LOSSY_AUDIO_WIDTH_BITS = 16  # lossy codecs store no sample width; 16 is what they decode to for playback

# ffprobe format names -> (container label, MIME type of a file with video). Audio-only MP4 is
# audio/mp4; Matroska is video/webm when the file is named .webm.
_CONTAINERS: dict[str, tuple[str, str]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": ("ISO MP4/M4A", "video/mp4"),
    "matroska,webm": ("Matroska / WebM", "video/x-matroska"),
    "mpegts": ("MPEG-TS", "video/mp2t"),
    "avi": ("AVI", "video/x-msvideo"),
    "flv": ("Flash Video", "video/x-flv"),
    "ogg": ("Ogg", "video/ogg"),
    "mp3": ("MPEG Audio", "audio/mpeg"),
    "wav": ("WAVE", "audio/wav"),
    "flac": ("FLAC", "audio/flac"),
    "aac": ("ADTS AAC", "audio/aac"),
    "png_pipe": ("PNG", "image/png"),
    "jpeg_pipe": ("JPEG", "image/jpeg"),
    "webp_pipe": ("WebP", "image/webp"),
    "gif": ("GIF", "image/gif"),
}
_QUICKTIME_BRAND = "qt"
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif"}
_VIDEO_CODECS = {
    "h264": "H.264 / AVC", "hevc": "H.265 / HEVC", "vp8": "VP8", "vp9": "VP9", "av1": "AV1",
    "mpeg4": "MPEG-4 Visual", "mpeg2video": "MPEG-2 Video", "mpeg1video": "MPEG-1 Video",
    "prores": "Apple ProRes", "mjpeg": "Motion JPEG", "png": "PNG", "gif": "GIF",
}  # fmt: skip
_AUDIO_CODECS = {
    "aac": "MPEG-4 AAC", "mp3": "MPEG Audio Layer 3", "mp2": "MPEG Audio Layer 2", "opus": "Opus",
    "vorbis": "Vorbis", "ac3": "Dolby AC-3", "eac3": "Dolby E-AC-3", "flac": "FLAC", "alac": "Apple Lossless",
}  # fmt: skip
_UNKNOWN_CODEC = "none"  # ffprobe's codec_name for a stream no decoder or parser knows
_INTERLACED = {"tt", "bb", "tb", "bt"}


@dataclass(frozen=True)
class VideoTrack:
    video_codec: str
    video_bitrate: int | None  # kbps
    width: int
    height: int
    framerate: float | None  # frames per second, 2 decimals (23.98)
    aspect_ratio: str | None  # display aspect ratio, "16:9"
    video_duration: int | None  # ms
    orientation: str | None  # "rotate-90" when players must turn the picture 90° clockwise


@dataclass(frozen=True)
class AudioTrack:
    audio_codec: str
    audio_bitrate: int | None  # kbps
    audio_width: int | None  # bits per sample
    samplingrate: int | None  # Hz
    nb_channels: int | None
    audio_duration: int | None  # ms


@dataclass(frozen=True)
class SubtitleTrack:
    subtitle_codec: str
    language: str | None


@dataclass(frozen=True)
class MediaInfo:
    """The §2.8 media fields of one file, plus `interlaced` which planning needs (not a column)."""

    container: str | None
    mime_type: str
    md5_checksum: str
    size: int  # bytes
    duration: int | None  # ms
    subtype: str  # video | audio | image | zip
    video_tracks: list[VideoTrack] = field(default_factory=list)
    audio_tracks: list[AudioTrack] = field(default_factory=list)
    subtitle_tracks: list[SubtitleTrack] = field(default_factory=list)
    interlaced: bool = False

    def file_columns(self) -> dict[str, Any]:
        """The values of the File table's media columns (store.models.File), tracks as dicts."""
        columns = asdict(self)
        del columns["interlaced"]
        return columns


def probe(path: Path) -> MediaInfo:
    """Read `path`'s media fields. Raises MediaError("unreadable_input") for anything that is not
    complete media (text, truncated, no audio or video stream) and MediaError("unsupported_codec")
    for an audio or video stream no decoder knows."""
    size = path.stat().st_size
    md5 = md5_of(path)
    if zipfile.is_zipfile(path):
        return MediaInfo(container="ZIP", mime_type="application/zip", md5_checksum=md5, size=size, duration=None, subtype="zip")
    info = ffmpeg.probe_json(path)
    fmt = info.get("format", {})
    streams = info.get("streams", [])
    format_name = fmt.get("format_name", "")
    if format_name in _IMAGE_FORMATS:
        return _image(fmt, streams, md5=md5, size=size)
    media_streams = [s for s in streams if s.get("codec_type") in ("video", "audio") and not _is_cover(s)]
    if not media_streams:
        raise MediaError("unreadable_input", f"{path.name} has no audio or video stream")
    for stream in media_streams:
        if stream.get("codec_name", _UNKNOWN_CODEC) == _UNKNOWN_CODEC:
            raise MediaError("unsupported_codec", f"{path.name}: stream {stream.get('index')} uses a codec ffmpeg cannot decode")
    measured = _measure_packets(path)
    start_s = _float(fmt.get("start_time")) or 0.0
    duration_s = _float(fmt.get("duration"))
    _check_complete(path, measured, start_s=start_s, duration_s=duration_s)
    video = [_video_track(s, measured.get(s["index"])) for s in media_streams if s["codec_type"] == "video"]
    audio = [_audio_track(s, measured.get(s["index"])) for s in media_streams if s["codec_type"] == "audio"]
    subtitles = [
        SubtitleTrack(subtitle_codec=s.get("codec_name", _UNKNOWN_CODEC), language=(s.get("tags") or {}).get("language"))
        for s in streams
        if s.get("codec_type") == "subtitle"
    ]
    container, mime = _container(format_name, fmt, path=path, has_video=bool(video))
    return MediaInfo(
        container=container,
        mime_type=mime,
        md5_checksum=md5,
        size=size,
        duration=_ms(duration_s),
        subtype="video" if video else "audio",
        video_tracks=video,
        audio_tracks=audio,
        subtitle_tracks=subtitles,
        interlaced=any(s.get("field_order") in _INTERLACED for s in media_streams if s["codec_type"] == "video"),
    )


def md5_of(path: Path) -> str:
    """Hex MD5 of the file's bytes, read in MD5_CHUNK_BYTES pieces (never whole in memory)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(MD5_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Packets:
    """What one stream's packets add up to: first timestamp, end of the last one, bytes."""

    first_s: float | None = None
    end_s: float | None = None
    size_bytes: int = 0

    @property
    def duration_s(self) -> float | None:
        return None if self.first_s is None or self.end_s is None else self.end_s - self.first_s

    @property
    def bitrate_kbps(self) -> int | None:
        span = self.duration_s
        return round(self.size_bytes * 8 / span / 1000) if span else None


def _measure_packets(path: Path) -> dict[int, _Packets]:
    streams: dict[int, _Packets] = defaultdict(_Packets)
    for line in ffmpeg.packet_lines(path):
        index, pts, duration, size = (line.split(",") + ["", "", "", ""])[:4]
        if not index.isdigit():
            continue
        packets = streams[int(index)]
        packets.size_bytes += int(size) if size.isdigit() else 0
        start = _float(pts)
        if start is None:
            continue
        end = start + (_float(duration) or 0.0)
        packets.first_s = start if packets.first_s is None else min(packets.first_s, start)
        packets.end_s = end if packets.end_s is None else max(packets.end_s, end)
    return streams


def _check_complete(path: Path, measured: dict[int, _Packets], *, start_s: float, duration_s: float | None) -> None:
    """Refuse a file whose packets stop well before the duration its headers announce."""
    ends = [packets.end_s for packets in measured.values() if packets.end_s is not None]
    if not ends:
        raise MediaError("unreadable_input", f"{path.name} holds no audio or video data")
    if duration_s is None:
        return
    missing_s = start_s + duration_s - max(ends)
    if missing_s > TRUNCATION_SLACK_S + TRUNCATION_SLACK_FRACTION * duration_s:
        raise MediaError(
            "unreadable_input",
            f"{path.name} is truncated: its data ends at {max(ends) - start_s:.1f} s of the {duration_s:.1f} s it announces",
        )


def _video_track(stream: dict[str, Any], packets: _Packets | None) -> VideoTrack:
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    return VideoTrack(
        video_codec=_VIDEO_CODECS.get(stream["codec_name"], stream.get("codec_long_name", stream["codec_name"])),
        video_bitrate=packets.bitrate_kbps if packets else _kbps(stream.get("bit_rate")),
        width=width,
        height=height,
        framerate=_framerate(stream),
        aspect_ratio=_aspect_ratio(stream, width, height),
        video_duration=_stream_ms(stream, packets),
        orientation=_orientation(stream),
    )


def _audio_track(stream: dict[str, Any], packets: _Packets | None) -> AudioTrack:
    width = int(stream.get("bits_per_raw_sample") or 0) or int(stream.get("bits_per_sample") or 0) or LOSSY_AUDIO_WIDTH_BITS
    return AudioTrack(
        audio_codec=_AUDIO_CODECS.get(stream["codec_name"], stream.get("codec_long_name", stream["codec_name"])),
        audio_bitrate=packets.bitrate_kbps if packets else _kbps(stream.get("bit_rate")),
        audio_width=width,
        samplingrate=int(stream["sample_rate"]) if stream.get("sample_rate") else None,
        nb_channels=stream.get("channels"),
        audio_duration=_stream_ms(stream, packets),
    )


def _image(fmt: dict[str, Any], streams: list[dict[str, Any]], *, md5: str, size: int) -> MediaInfo:
    label, mime = _CONTAINERS.get(fmt.get("format_name", ""), (fmt.get("format_long_name"), "application/octet-stream"))
    picture = streams[0] if streams else {}
    width, height = int(picture.get("width") or 0), int(picture.get("height") or 0)
    track = VideoTrack(
        video_codec=_VIDEO_CODECS.get(picture.get("codec_name", ""), picture.get("codec_long_name", "")),
        video_bitrate=None, width=width, height=height, framerate=None,
        aspect_ratio=_aspect_ratio(picture, width, height), video_duration=None, orientation=None,
    )  # fmt: skip
    return MediaInfo(container=label, mime_type=mime, md5_checksum=md5, size=size, duration=None, subtype="image", video_tracks=[track])


def _container(format_name: str, fmt: dict[str, Any], *, path: Path, has_video: bool) -> tuple[str, str]:
    label, mime = _CONTAINERS.get(format_name, (fmt.get("format_long_name") or format_name, "application/octet-stream"))
    if format_name.startswith("mov,"):
        if (fmt.get("tags") or {}).get("major_brand", "").strip() == _QUICKTIME_BRAND:
            return "QuickTime / MOV", "video/quicktime"
        return label, mime if has_video else "audio/mp4"
    if format_name.startswith("matroska") and path.suffix.lower() == ".webm":
        return label, "video/webm" if has_video else "audio/webm"
    if format_name == "ogg" and not has_video:
        return label, "audio/ogg"
    return label, mime


def _is_cover(stream: dict[str, Any]) -> bool:
    """An attached picture (cover art) is a video stream in ffprobe's eyes, not a video track."""
    return bool((stream.get("disposition") or {}).get("attached_pic"))


def _framerate(stream: dict[str, Any]) -> float | None:
    for key in ("avg_frame_rate", "r_frame_rate"):
        rate = _fraction(stream.get(key))
        if rate:
            return round(float(rate), 2)
    return None


def _aspect_ratio(stream: dict[str, Any], width: int, height: int) -> str | None:
    """The display aspect ratio: ffprobe's when it states one, else width x SAR : height, reduced."""
    stated = stream.get("display_aspect_ratio")
    if stated and not stated.startswith("0:"):
        return stated
    if not width or not height:
        return None
    sar = _fraction(stream.get("sample_aspect_ratio")) or Fraction(1)
    dar = Fraction(width, height) * sar
    divisor = gcd(dar.numerator, dar.denominator)
    return f"{dar.numerator // divisor}:{dar.denominator // divisor}"


def _orientation(stream: dict[str, Any]) -> str | None:
    """"rotate-90" / "rotate-180" / "rotate-270" (clockwise, as a player turns it), or None.

    ffprobe states the display matrix's rotation counter-clockwise (-90 for a phone held upright).
    """
    for side_data in stream.get("side_data_list") or []:
        if "rotation" in side_data:
            degrees = round(-float(side_data["rotation"])) % 360
            return f"rotate-{degrees}" if degrees else None
    rotate = (stream.get("tags") or {}).get("rotate")
    if rotate and rotate.lstrip("-").isdigit() and int(rotate) % 360:
        return f"rotate-{int(rotate) % 360}"
    return None


def _stream_ms(stream: dict[str, Any], packets: _Packets | None) -> int | None:
    stated = _float(stream.get("duration"))
    return _ms(stated if stated is not None else (packets.duration_s if packets else None))


def _fraction(text: str | None) -> Fraction | None:
    if not text or "/" not in text:
        return None
    numerator, _, denominator = text.partition("/")
    try:
        return Fraction(int(numerator), int(denominator)) if int(denominator) and int(numerator) else None
    except ValueError:
        return None


def _float(text: Any) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except (TypeError, ValueError):
        return None


def _kbps(bits_per_second: Any) -> int | None:
    value = _float(bits_per_second)
    return round(value / 1000) if value else None


def _ms(seconds: float | None) -> int | None:
    return round(seconds * 1000) if seconds is not None else None
