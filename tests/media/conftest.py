"""Clips, presets and decoding helpers for the media tests."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from leaktrace.media.plan import AAC_CODEC_ID, H264_CODEC_ID, H265_CODEC_ID

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


@pytest.fixture(scope="session")
def clip():
    """Path of a clip in ../shared/testdata; skips when it is missing."""

    def path(name: str) -> Path:
        found = TESTDATA / name
        if not found.is_file():
            pytest.skip(f"{found} is missing")
        return found

    return path


def target_format(
    *, codec_id: str = H264_CODEC_ID, profile: str = "High", container: str = "mp4", width: int = 1280, height: int = 720,
    kbps: int = 3500, passes: int = 1,
) -> dict[str, Any]:
    """A preset's target_format shaped like the seeded system presets (migration 0002)."""
    return {
        "extension": container,
        "container": container,
        "vcodec": {
            "codec": {"id": codec_id},
            "profile": profile,
            "passes": passes,
            "caps": {
                "interlaced": False, "max_key_distance": 2, "max_width": width, "max_height": height,
                "max_framerate": 60, "max_bitrate": kbps, "max_ref_frames": 4, "max_buffersize": 2 * kbps,
            },
        },
        "acodec": {
            "codec": {"id": AAC_CODEC_ID},
            "profile": "LC",
            "passes": 1,
            "caps": {"max_bitdepth": 16, "max_channels": 2, "max_samplingrate": 48000, "max_bitrate": 128},
        },
    }  # fmt: skip


H265 = H265_CODEC_ID


def decoded(path: Path) -> dict[str, Any]:
    """What PyAV decodes from `path`: video codec, profile, size, frame count, rates, duration."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        sizes: dict[int, int] = {}
        frames = 0
        for packet in container.demux():
            if packet.size:
                sizes[packet.stream.index] = sizes.get(packet.stream.index, 0) + packet.size
        container.seek(0)
        for frame in container.decode(video=0):
            frames += 1
            last_time = frame.time
        duration_s = float(container.duration / av.time_base) if container.duration else 0.0
        return {
            "codec": video.codec_context.name,
            "profile": video.codec_context.profile,
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "fps": Fraction(video.average_rate) if video.average_rate else None,
            "frames": frames,
            "last_frame_s": last_time,
            "duration_s": duration_s,
            "video_kbps": sizes.get(video.index, 0) * 8 / duration_s / 1000,
            "audio": None if audio is None else {
                "codec": audio.codec_context.name, "channels": audio.codec_context.channels, "rate": audio.codec_context.sample_rate,
            },
        }  # fmt: skip


def ffmpeg_children() -> list[int]:
    """Pids of ffmpeg processes whose parent is this test process (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if name == "ffmpeg" and parent == os.getpid():
            found.append(int(entry.name))
    return found
