"""Shared fixtures of the engine tests: the real test clips and one small prepared title.

`prepared_title` is built once per test session from 6 s of a real clip with audio
(squirrel_720p25_10s.mp4, H.264 + AAC) scaled to 640x360, with 1 s positions: 6 positions of
25 frames. It uses a fixed key so runs are reproducible. Tests must not modify its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTDATA = (REPO_ROOT / ".." / "shared" / "testdata").resolve()

PREPARED_CLIP = "squirrel_720p25_10s.mp4"
PREPARED_SECONDS = 6.0
PREPARED_HEIGHT = 360
PREPARED_POSITION_SECONDS = 1.0
PREPARED_KEY = bytes(range(32))


def clip_path(name: str) -> Path:
    """Path of a clip in ../shared/testdata; skips the test when the folder or clip is missing."""
    path = TESTDATA / name
    if not path.is_file():
        pytest.skip(f"test clip {name} not found in {TESTDATA} (the shared test data folder is missing)")
    return path


@pytest.fixture(name="clip_path", scope="session")
def clip_path_fixture():
    """`clip_path(name)`: the path of a shared test clip; skips the test when it is missing."""
    return clip_path


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The shared test clip folder (skips when it is missing)."""
    if not TESTDATA.is_dir():
        pytest.skip(f"shared test data folder {TESTDATA} is missing")
    return TESTDATA


@dataclass(frozen=True)
class PreparedFixture:
    """A prepared title built once per session: its folder, manifest, source clip and key."""

    outdir: Path
    manifest: dict[str, Any]
    source: Path
    key: bytes


@pytest.fixture(scope="session")
def prepared_title(tmp_path_factory: pytest.TempPathFactory) -> PreparedFixture:
    """6 s of squirrel_720p25_10s.mp4 at 640x360, 25 fps, 1 s positions (6 x 25 frames), audio, medium."""
    from leaktrace.autograph.embed import prepare

    source = clip_path(PREPARED_CLIP)
    outdir = tmp_path_factory.mktemp("prepared") / "title"
    manifest = prepare(source, outdir, strength="medium", position_seconds=PREPARED_POSITION_SECONDS,
                       height=PREPARED_HEIGHT, duration=PREPARED_SECONDS, key=PREPARED_KEY)
    return PreparedFixture(outdir=outdir, manifest=manifest, source=source, key=PREPARED_KEY)
