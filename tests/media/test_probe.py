"""probe(): the File media fields of real clips, and refusals of what is not complete media."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from leaktrace.media.errors import MediaError
from leaktrace.media.probe import probe


def test_probe_mp4_with_video_only(clip):
    path = clip("tears_of_steel_360p24_10s.mp4")
    columns = probe(path).file_columns()
    assert columns == {
        "container": "ISO MP4/M4A",
        "mime_type": "video/mp4",
        "md5_checksum": hashlib.md5(path.read_bytes()).hexdigest(),
        "size": 760792,
        "duration": 10000,
        "subtype": "video",
        "video_tracks": [
            {
                "video_codec": "H.264 / AVC", "video_bitrate": 606, "width": 640, "height": 360, "framerate": 24.0,
                "aspect_ratio": "16:9", "video_duration": 10000, "orientation": None,
            }
        ],
        "audio_tracks": [],
        "subtitle_tracks": [],
    }  # fmt: skip


def test_probe_webm_measures_bitrates_matroska_does_not_state(clip):
    info = probe(clip("bbb_0-30s_720p24.webm"))
    assert (info.container, info.mime_type, info.subtype) == ("Matroska / WebM", "video/webm", "video")
    assert info.duration == pytest.approx(30000, abs=50)
    (video,) = info.video_tracks
    assert (video.video_codec, video.width, video.height, video.framerate, video.aspect_ratio) == ("VP8", 1280, 720, 24.0, "16:9")
    (audio,) = info.audio_tracks
    assert (audio.audio_codec, audio.samplingrate, audio.nb_channels, audio.audio_width) == ("Vorbis", 44100, 2, 16)
    # Bitrates from packet sizes: all packets' bytes add up to the file minus the container's overhead.
    total_kbps = info.size * 8 / (info.duration / 1000) / 1000
    assert 0.95 * total_kbps < video.video_bitrate + audio.audio_bitrate <= total_kbps
    assert audio.audio_duration == pytest.approx(30000, abs=100)


def test_probe_aac_track_and_fractional_framerate(clip):
    info = probe(clip("box_handheld_480p30_15s.mp4"))
    (video,) = info.video_tracks
    assert (video.framerate, video.aspect_ratio, video.width, video.height) == (29.97, "4:3", 640, 480)
    assert info.audio_tracks[0].audio_codec == "MPEG Audio Layer 3"
    squirrel = probe(clip("squirrel_720p25_10s.mp4"))
    assert squirrel.audio_tracks[0].audio_codec == "MPEG-4 AAC"
    assert squirrel.audio_tracks[0].samplingrate == 48000


def test_orientation_is_the_clockwise_turn_players_apply(clip, tmp_path: Path):
    source = clip("caminandes_360p24_10s.mp4")
    upright = _first_frame(source)
    for tag in ("90", "270"):
        rotated = tmp_path / f"rotated_{tag}.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", str(source), "-t", "1", "-c", "copy", "-metadata:s:v:0", f"rotate={tag}", str(rotated)],
            check=True,
        )  # fmt: skip
        shown = _first_frame(rotated)  # as ffmpeg shows it, turned by the display matrix
        clockwise = np.array_equal(shown, np.rot90(upright, k=-1))
        assert clockwise or np.array_equal(shown, np.rot90(upright, k=1))
        assert probe(rotated).video_tracks[0].orientation == ("rotate-90" if clockwise else "rotate-270")


def _first_frame(path: Path) -> np.ndarray:
    """The first picture as ffmpeg's command line shows it (display matrix applied), grey."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    width, height = (360, 640) if "rotated" in path.name else (640, 360)
    return np.frombuffer(raw, np.uint8).reshape(height, width)


def test_text_named_mp4_is_unreadable(tmp_path: Path):
    fake = tmp_path / "movie.mp4"
    fake.write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError) as raised:
        probe(fake)
    assert raised.value.code == "unreadable_input"
    assert "movie.mp4" in raised.value.message and str(tmp_path) not in raised.value.message


def test_truncated_mp4_is_unreadable_with_index_first_or_last(clip, tmp_path: Path):
    source = clip("tears_of_steel_360p24_10s.mp4")  # moov after mdat
    faststart = tmp_path / "faststart.mp4"  # moov before mdat: the headers survive the cut
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(source), "-c", "copy", "-movflags", "+faststart", str(faststart)], check=True)
    for original in (source, faststart):
        cut = tmp_path / f"cut_{original.name}"
        cut.write_bytes(original.read_bytes()[: original.stat().st_size // 2])
        with pytest.raises(MediaError) as raised:
            probe(cut)
        assert raised.value.code == "unreadable_input", original.name
    assert probe(faststart).duration == 10000  # the same file whole is fine


def test_zip_and_image(tmp_path: Path, clip):
    archive = tmp_path / "a.zip"
    shutil.make_archive(str(tmp_path / "a"), "zip", root_dir=str(clip("tears_of_steel_360p24_10s.mp4").parent), base_dir="README.md")
    info = probe(archive)
    assert (info.subtype, info.container, info.mime_type, info.video_tracks) == ("zip", "ZIP", "application/zip", [])
    picture = tmp_path / "p.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=red:size=64x48", "-frames:v", "1", str(picture)], check=True)
    image = probe(picture)
    assert (image.subtype, image.mime_type, image.video_tracks[0].width, image.video_tracks[0].height) == ("image", "image/png", 64, 48)
