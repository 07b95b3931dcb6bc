"""Encoding one output with the ffmpeg binary, from an EncodePlan (see media/plan.py).

`encode` writes to a hidden partial name beside `output` and renames it on success, so a file at
`output` is always complete; on failure or cancellation the partial file (and a two-pass log) is
removed. Video goes through one filter chain: deinterlace, rotate, scale to the planned size with
square pixels, optional display aspect ratio, frame rate, then the logo overlay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from leaktrace.media import ffmpeg
from leaktrace.media.errors import MediaError, from_os_error
from leaktrace.media.logos import LogoOverlay
from leaktrace.media.plan import AudioPlan, EncodePlan, VideoPlan, plan_output

__all__ = ["EncodePlan", "encode", "plan_output", "partial_path"]

X264_PRESET = "medium"  # libx264's and libx265's own default speed/quality trade-off
X265_LOG_LEVEL = "log-level=error"  # x265 prints its settings on stderr otherwise
_ROTATE_FILTERS = {0: [], 90: ["transpose=clock"], 180: ["hflip", "vflip"], 270: ["transpose=cclock"]}
_VIDEO_OUT = "vout"
MP4_MUXERS = ("mp4", "mov")  # ISO BMFF: moov moved to the front (+faststart), hvc1 tag for HEVC


def partial_path(output: Path) -> Path:
    """Where `encode` writes before renaming: hidden, same folder (so the rename is atomic)."""
    return output.with_name(f".{output.stem}.partial{output.suffix}")


def encode(
    input: Path,
    output: Path,
    plan: EncodePlan,
    *,
    logo: LogoOverlay | None = None,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Encode `input` to `output` per `plan`, reporting progress as a fraction 0..1.

    Raises MediaError: "cancelled" (within ffmpeg.POLL_S of `cancelled()` turning true; the
    ffmpeg process group is killed), "out_of_space", "unsupported_codec", "unreadable_input" or
    "encode_failed". No file is left at `output` nor at its partial name when it raises.
    """
    partial = partial_path(output)
    passlog = output.with_name(f".{output.stem}.passlog")
    redact = (input, output, partial, passlog, *((logo.image,) if logo else ()))
    try:
        if plan.video is not None and plan.video.passes == 2:
            first, second = _halves(progress)
            ffmpeg.run(
                _arguments(input, None, plan, logo=logo, pass_number=1, passlog=passlog),
                duration_s=plan.duration_s, progress=first, cancelled=cancelled, redact=redact,
            )  # fmt: skip
            ffmpeg.run(
                _arguments(input, partial, plan, logo=logo, pass_number=2, passlog=passlog),
                duration_s=plan.duration_s, progress=second, cancelled=cancelled, redact=redact,
            )  # fmt: skip
        else:
            ffmpeg.run(
                _arguments(input, partial, plan, logo=logo, pass_number=None, passlog=passlog),
                duration_s=plan.duration_s, progress=progress, cancelled=cancelled, redact=redact,
            )  # fmt: skip
        if not partial.exists():
            raise MediaError("encode_failed", f"ffmpeg wrote no output for {output.name}")
        partial.replace(output)
    except OSError as error:  # the rename, or a file system error around ffmpeg
        partial.unlink(missing_ok=True)
        raise from_os_error(error, output) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        for log in passlog.parent.glob(f"{passlog.name}*"):
            log.unlink(missing_ok=True)


def _halves(progress: Callable[[float], None] | None) -> tuple[Callable[[float], None] | None, Callable[[float], None] | None]:
    """Progress callbacks for the two passes: the first fills 0..0.5, the second 0.5..1."""
    if progress is None:
        return None, None
    return (lambda fraction: progress(fraction / 2)), (lambda fraction: progress(0.5 + fraction / 2))


def _arguments(
    input: Path, output: Path | None, plan: EncodePlan, *, logo: LogoOverlay | None, pass_number: int | None, passlog: Path
) -> list[str]:
    """ffmpeg's arguments after the global options; `output` None writes pass 1's to nowhere."""
    arguments: list[str] = []
    if plan.input_format:
        arguments += ["-f", plan.input_format]
    if plan.input_framerate:
        arguments += ["-r", f"{plan.input_framerate:g}"]
    if plan.start_time_s:
        arguments += ["-ss", f"{plan.start_time_s:.3f}"]
    arguments += ["-i", str(input)]
    if logo is not None and plan.video is not None:
        arguments += ["-i", str(logo.image)]
    if plan.video is not None:
        arguments += ["-filter_complex", _video_filters(plan.video, logo), "-map", f"[{_VIDEO_OUT}]"]
        arguments += _video_codec(plan.video, muxer=plan.muxer, pass_number=pass_number, passlog=passlog)
    audio = plan.audio if pass_number != 1 else None
    if audio is not None:
        arguments += ["-map", "0:a:0", *_audio_codec(audio)]
    arguments += ["-sn", "-dn"]
    if plan.max_duration_s:
        arguments += ["-t", f"{plan.max_duration_s:.3f}"]
    if output is None:
        return [*arguments, "-an", "-f", "null", "-"]
    if plan.muxer in MP4_MUXERS:
        arguments += ["-movflags", "+faststart"]
    return [*arguments, "-f", plan.muxer, str(output)]


def _video_filters(video: VideoPlan, logo: LogoOverlay | None) -> str:
    chain = ["yadif"] if video.deinterlace else []
    chain += _ROTATE_FILTERS[video.rotate]
    chain += [f"scale={video.width}:{video.height}", "setsar=1"]
    if video.aspect_ratio:
        chain.append(f"setdar={video.aspect_ratio.replace(':', '/')}")
    if video.change_framerate:
        chain.append(f"fps={video.framerate:g}")
    chain.append(f"format={video.pixel_format}")
    if logo is None:
        return f"[0:v:0]{','.join(chain)}[{_VIDEO_OUT}]"
    scaled = f"[0:v:0]{','.join(chain)}[scaled]"
    overlay = logo.filter(video="scaled", logo="1:v:0", out="overlaid", video_width=video.width)
    return f"{scaled};{overlay};[overlaid]format={video.pixel_format}[{_VIDEO_OUT}]"


def _video_codec(video: VideoPlan, *, muxer: str, pass_number: int | None, passlog: Path) -> list[str]:
    arguments = [
        "-c:v", video.encoder, "-preset", X264_PRESET, "-profile:v", video.profile,
        "-b:v", f"{video.bitrate_kbps}k", "-maxrate", f"{video.maxrate_kbps}k", "-bufsize", f"{video.bufsize_kbit}k",
        "-g", str(video.key_interval_frames),
    ]  # fmt: skip
    x265_params = [X265_LOG_LEVEL]
    if video.max_ref_frames:
        if video.encoder == "libx264":
            arguments += ["-refs", str(video.max_ref_frames)]
        else:
            x265_params.append(f"ref={video.max_ref_frames}")
    if pass_number is not None:
        if video.encoder == "libx264":
            arguments += ["-pass", str(pass_number), "-passlogfile", str(passlog)]
        else:
            x265_params += [f"pass={pass_number}", f"stats={passlog}"]
    if video.encoder == "libx265":
        arguments += ["-x265-params", ":".join(x265_params)]
        if muxer in MP4_MUXERS:
            arguments += ["-tag:v", "hvc1"]  # the HEVC sample entry Apple players require
    return arguments


def _audio_codec(audio: AudioPlan) -> list[str]:
    return [
        "-c:a", audio.encoder, "-profile:a", audio.profile, "-b:a", f"{audio.bitrate_kbps}k",
        "-ac", str(audio.channels), "-ar", str(audio.samplingrate),
    ]  # fmt: skip
