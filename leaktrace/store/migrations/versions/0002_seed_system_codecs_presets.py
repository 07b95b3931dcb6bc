"""Seed the system codecs (H.264, H.265, AAC) and presets (1080p/720p/480p/360p H.264 + AAC MP4).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

The data is written out here rather than imported, so this migration keeps meaning the same thing
when the application code changes. Capability values follow the MediaHub convention: a two-number
array is a [min, max] range, any other array is the set of allowed values.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEEDED_AT = 1763856000000  # 2025-11-23T00:00:00Z, fixed so seeded objects are identical everywhere

H264_ID = "525ce63284aed52635e85d05"  # the ids MediaHub's own examples use for H.264 and AAC
AAC_ID = "525ce63284aed52635e85d06"
H265_ID = "525ce63284aed52635e85d07"

VIDEO_CAPS = {
    "interlaced": [False],
    "max_key_distance": [1, 30],
    "max_width": [64, 4096],
    "max_height": [64, 2304],
    "max_framerate": [1, 120],
    "max_bitrate": [64, 100000],
    "max_ref_frames": [1, 16],
    "max_buffersize": [64, 200000],
}
AUDIO_CAPS = {
    "max_bitdepth": [16],
    "max_channels": [1, 8],
    "max_samplingrate": [8000, 96000],
    "max_bitrate": [8, 512],
}

CODECS = [
    {
        "id": H264_ID,
        "name": "H.264",
        "description": "H.264 / AVC Encoder",
        "type": "video",
        "passes": [1, 2],
        "autograph": [True],
        "profiles": [
            {"name": name, "containers": ["mp4", "mkv", "mov"], "capabilities": VIDEO_CAPS}
            for name in ("Baseline", "Main", "High")
        ],
    },
    {
        "id": H265_ID,
        "name": "H.265",
        "description": "H.265 / HEVC Encoder",
        "type": "video",
        "passes": [1, 2],
        "autograph": [True],
        "profiles": [
            {"name": name, "containers": ["mp4", "mkv"], "capabilities": VIDEO_CAPS}
            for name in ("Main", "Main10")
        ],
    },
    {
        "id": AAC_ID,
        "name": "AAC",
        "description": "AAC Encoder",
        "type": "audio",
        "passes": [1, 1],
        "autograph": [False],
        "profiles": [{"name": "LC", "containers": ["mp4", "mkv", "mov"], "capabilities": AUDIO_CAPS}],
    },
]


def _preset(preset_id: str, label: str, width: int, height: int, kbps: int, profile: str) -> dict:
    return {
        "id": preset_id,
        "name": f"MP4 {label} H.264 AAC",
        "description": f"{width}x{height} H.264 {profile} at up to {kbps} kbps with stereo AAC, in MP4",
        "type": "system",
        "target_format": {
            "extension": "mp4",
            "container": "mp4",
            "vcodec": {
                "codec": {"id": H264_ID},
                "profile": profile,
                "passes": 1,
                "caps": {
                    "interlaced": False,
                    "max_key_distance": 2,
                    "max_width": width,
                    "max_height": height,
                    "max_framerate": 60,
                    "max_bitrate": kbps,
                    "max_ref_frames": 4,
                    "max_buffersize": 2 * kbps,
                },
            },
            "acodec": {
                "codec": {"id": AAC_ID},
                "profile": "LC",
                "passes": 1,
                "caps": {"max_bitdepth": 16, "max_channels": 2, "max_samplingrate": 48000, "max_bitrate": 128},
            },
        },
        "settings": {"subtitle_policy": "ignore"},
    }


PRESETS = [
    _preset("525ce63284aed52635e85e01", "1080p", 1920, 1080, 6000, "High"),
    _preset("525ce63284aed52635e85e02", "720p", 1280, 720, 3500, "High"),
    _preset("525ce63284aed52635e85e03", "480p", 854, 480, 1500, "Main"),
    _preset("525ce63284aed52635e85e04", "360p", 640, 360, 800, "Main"),
]

_stamp = {"version": 1, "created_at": SEEDED_AT, "updated_at": SEEDED_AT}


def upgrade() -> None:
    codecs = sa.table(
        "codecs",
        *(sa.column(name) for name in ("id", "name", "description", "type", "version", "created_at", "updated_at")),
        sa.column("passes", sa.JSON),
        sa.column("autograph", sa.JSON),
        sa.column("profiles", sa.JSON),
    )
    presets = sa.table(
        "presets",
        *(sa.column(name) for name in ("id", "user_id", "type", "name", "description", "version", "created_at", "updated_at")),
        sa.column("target_format", sa.JSON),
        sa.column("settings", sa.JSON),
    )
    op.bulk_insert(codecs, [{**codec, **_stamp} for codec in CODECS])
    op.bulk_insert(presets, [{**preset, "user_id": None, **_stamp} for preset in PRESETS])


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM presets WHERE type = 'system'"))
    op.execute(sa.text("DELETE FROM codecs"))
