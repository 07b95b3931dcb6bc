"""Thumbnails: count, size, names and the zip; logo presets; refusals."""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import pytest

from leaktrace.media.errors import MediaError
from leaktrace.media.logos import LOGO_PRESETS, LogoOverlay, check_logo_preset
from leaktrace.media.thumbnails import THUMBNAIL_PRESETS, check_thumbnail_preset, make_thumbnails, thumbnail_names, zip_files


def test_small_thumbnails_count_size_and_zip(clip, tmp_path: Path):
    outdir = tmp_path / "out"
    outdir.mkdir()
    made = make_thumbnails(
        clip("tears_of_steel_360p24_10s.mp4"), outdir, preset="thumbnails_small", names="thumb_{resolution}",
        resolution="360p", duration_ms=10_000,
    )  # fmt: skip
    assert [path.name for path in made] == [f"thumb_360p_00{index}.jpg" for index in range(1, 7)]
    assert sorted(outdir.iterdir()) == sorted(made)  # no scratch folder left
    for path in made:
        with av.open(str(path)) as picture:
            stream = picture.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.width, stream.codec_context.height) == ("mjpeg", 160, 90)
    assert len({path.read_bytes() for path in made}) == 6  # six different moments
    archive = zip_files(made, outdir / "thumbnails.zip")
    with zipfile.ZipFile(archive) as opened:
        assert opened.namelist() == [path.name for path in made]
        assert all(opened.read(path.name) == path.read_bytes() for path in made)


def test_every_10s_and_no_upscale(clip, tmp_path: Path):
    made = make_thumbnails(
        clip("grid_talking_heads_360x288p25_30s.mp4"), tmp_path, preset="thumbnails_large", names="{index}_frame",
        resolution="288p", duration_ms=30_000,
    )  # fmt: skip
    assert [path.name for path in made][:2] == ["001_frame.jpg", "002_frame.jpg"] and len(made) == 10
    with av.open(str(made[0])) as picture:
        assert (picture.streams.video[0].width, picture.streams.video[0].height) == (360, 288)  # 640 asked, 360 wide source
    assert THUMBNAIL_PRESETS["thumbnails_every_10s"].times_s(30.0) == [5.0, 15.0, 25.0]
    assert THUMBNAIL_PRESETS["thumbnails_small"].times_s(6.0) == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def test_names_and_presets_refused():
    with pytest.raises(ValueError):
        check_thumbnail_preset("thumbnails_huge")
    with pytest.raises(ValueError):
        check_logo_preset("logo_35_bottom_right")
    with pytest.raises(ValueError):
        LogoOverlay(image=Path("x.png"), preset="logo_30_middle")
    for bad in ("../{index}", "a/b", "{job_id}", ".hidden"):
        with pytest.raises(ValueError):
            thumbnail_names(bad, resolution="720p", count=1)
    assert thumbnail_names(None, resolution="720p", count=2) == ["thumb_720p_001.jpg", "thumb_720p_002.jpg"]
    assert len(LOGO_PRESETS) == 12 + 6 and check_logo_preset("logo_30_bottom_right").width_percent == 30
    assert (check_logo_preset("Logo15").width_percent, check_logo_preset("Logo15").corner) == (15, "bottom_right")


def test_unreadable_input_leaves_no_thumbnail(tmp_path: Path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("text")
    outdir = tmp_path / "out"
    outdir.mkdir()
    with pytest.raises(MediaError) as raised:
        make_thumbnails(fake, outdir, preset="thumbnails_small", names=None, resolution="360p", duration_ms=10_000)
    assert raised.value.code == "unreadable_input"
    assert list(outdir.iterdir()) == []
