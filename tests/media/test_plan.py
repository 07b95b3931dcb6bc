"""plan_output(): exact sizes, bitrates, rates and times from preset caps and job settings (pure)."""

from __future__ import annotations

import pytest

from leaktrace.media.errors import MediaError
from leaktrace.media.plan import capped_framerate, plan_output
from leaktrace.media.probe import AudioTrack, MediaInfo, VideoTrack
from tests.media.conftest import H265, target_format


def source(*, width: int = 1920, height: int = 1080, fps: float = 25.0, kbps: int = 5000, aspect: str | None = None,
           orientation: str | None = None, audio: bool = True, duration_ms: int = 60_000) -> MediaInfo:  # fmt: skip
    video = VideoTrack("H.264 / AVC", kbps, width, height, fps, aspect or f"{width}:{height}", duration_ms, orientation)
    sound = [AudioTrack("MPEG-4 AAC", 192, 16, 48000, 6, duration_ms)] if audio else []
    return MediaInfo("ISO MP4/M4A", "video/mp4", "0" * 32, 1, duration_ms, "video", [video], sound)


def plan(info: MediaInfo | None = None, *, settings: dict | None = None, options: dict | None = None, autograph: bool = False, **preset):
    return plan_output(
        info or source(), target_format=target_format(**preset), preset_settings=None,
        output_settings=settings, input_options=options or {}, autograph=autograph,
    )  # fmt: skip


def test_source_bigger_than_caps_is_fitted_and_bitrate_is_the_cap():
    result = plan()
    video = result.video
    assert (video.width, video.height, video.bitrate_kbps, video.maxrate_kbps, video.bufsize_kbit) == (1280, 720, 3500, 3500, 7000)
    assert (video.encoder, video.profile, video.key_interval_frames, video.max_ref_frames) == ("libx264", "high", 50, 4)
    assert (result.resolution, result.height, result.muxer) == ("720p", 720, "mp4")


def test_percentages_of_the_source():
    video = plan(settings={"video": {"width": "50%", "bitrate": "10%"}}).video
    assert (video.width, video.height, video.bitrate_kbps) == (960, 540, 500)  # height keeps 16:9


def test_absolute_height_keeps_aspect_ratio_and_even_sizes():
    video = plan(source(width=1920, height=818), settings={"video": {"height": 301}}).video
    assert (video.width, video.height) == (706, 302)  # 301 * 1920 / 818 = 706.5 -> even 706; 301 -> 302


def test_never_upscaled_past_the_caps_and_default_bitrate_is_the_presets_bits_per_pixel():
    small = source(width=640, height=360, kbps=600)
    assert (plan(small).video.width, plan(small).video.height) == (640, 360)  # kept, not enlarged
    assert plan(small).video.bitrate_kbps == 875  # 3500 kbps x (640 x 360) / (1280 x 720)
    doubled = plan(small, settings={"video": {"width": "300%"}}).video
    assert (doubled.width, doubled.height) == (1280, 720)  # 1920x1080 asked, shrunk to the caps
    both = plan(small, settings={"video": {"width": 2000, "height": 500}}).video
    assert (both.width, both.height) == (1280, 320)  # both given: their ratio kept while fitting


def test_bitrate_is_capped_and_audio_follows_caps():
    result = plan(settings={"video": {"bitrate": 9000}, "audio": {"bitrate": "50%"}})
    assert result.video.bitrate_kbps == 3500
    audio = result.audio
    assert (audio.encoder, audio.profile, audio.bitrate_kbps, audio.channels, audio.samplingrate) == ("aac", "aac_low", 96, 2, 48000)
    no_audio = plan(source(audio=False))
    assert no_audio.audio is None


def test_framerate_forced_and_capped():
    assert capped_framerate(59.94, 30) == 29.97
    assert capped_framerate(120, 50) == 40.0
    assert capped_framerate(25, 30) == 25
    forced = plan(options={"force_framerate": "30000/1001"}).video
    assert (forced.framerate, forced.change_framerate, forced.key_interval_frames) == (29.97, True, 60)
    half = plan(settings={"video": {"framerate": "50%"}}).video
    assert (half.framerate, half.change_framerate) == (12.5, True)
    assert plan().video.change_framerate is False


def test_anamorphic_rotated_and_forced_aspect():
    anamorphic = plan(source(width=720, height=576, aspect="16:9"), settings={"video": {"width": "100%"}}).video
    assert (anamorphic.width, anamorphic.height) == (1024, 576)  # square pixels at the display ratio
    phone = plan(source(width=1920, height=1080, orientation="rotate-90")).video
    assert (phone.width, phone.height) == (406, 720)  # upright 1080x1920 fitted into 1280x720
    forced = plan(source(width=1440, height=1080), options={"force_aspect_ratio": "4:3"}, settings={"video": {"height": 480}}).video
    assert (forced.width, forced.height) == (640, 480)
    turned = plan(source(width=640, height=360), settings={"video": {"rotate": 90}}).video
    assert (turned.width, turned.height, turned.rotate) == (360, 640, 90)


def test_times():
    result = plan(options={"start_time": 10.5}, settings={"max_duration": 20})
    assert (result.start_time_s, result.max_duration_s, result.duration_s) == (10.5, 20.0, 20.0)
    tail = plan(options={"start_time": 50})
    assert (tail.duration_s, tail.max_duration_s) == (10.0, None)
    with pytest.raises(MediaError) as raised:
        plan(options={"start_time": 60})
    assert raised.value.code == "unreadable_input"


def test_hevc_mkv_two_pass_and_refusals():
    hevc = plan(codec_id=H265, profile="Main10", container="mkv", passes=2)
    assert (hevc.video.encoder, hevc.video.profile, hevc.video.pixel_format, hevc.video.passes, hevc.muxer) == (
        "libx265", "main10", "yuv420p10le", 2, "matroska"
    )
    for preset, code in (
        ({"codec_id": "0" * 24}, "unsupported_codec"),
        ({"profile": "Extended"}, "unsupported_codec"),
        ({"container": "flv"}, "unsupported_codec"),
    ):
        with pytest.raises(MediaError) as raised:
            plan(**preset)
        assert raised.value.code == code
    with pytest.raises(MediaError) as raised:
        plan(codec_id=H265, profile="Main", autograph=True)
    assert raised.value.code == "unsupported_codec" and "H.264" in raised.value.message
    assert plan(autograph=True).autograph is True
