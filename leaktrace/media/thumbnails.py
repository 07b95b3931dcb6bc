"""Thumbnail presets, JPEG thumbnails of a video, and the `thumbnail_zip` archive.

A preset takes either `count` pictures spread evenly over the duration or one every `every_s`
seconds (at most MAX_THUMBNAILS), each `width` pixels wide (the height follows the video's display
aspect ratio, and a video narrower than `width` is not enlarged). Picture i (0-based) of n is
taken at (i + 0.5) x duration / n: the middle of n equal slices, which avoids the black first and
last frames most titles have.

Names: `names` is a template (default DEFAULT_NAMES) with the placeholders `{resolution}` (the
output's, e.g. "720p") and `{index}` (1-based, zero-padded to three digits); without `{index}`,
"_{index}" is appended, so "thumb_{resolution}" gives thumb_720p_001.jpg, thumb_720p_002.jpg, ….
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from leaktrace.media import ffmpeg
from leaktrace.media.errors import MediaError, from_os_error

MAX_THUMBNAILS = 100
DEFAULT_NAMES = "thumb_{resolution}"
JPEG_QUALITY = 3  # ffmpeg's -q:v for MJPEG: 2 (best) .. 31; 3 is visually clean at a fraction of 2's size
INDEX_DIGITS = 3
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")  # a plain file name: no folders, no spaces


@dataclass(frozen=True)
class ThumbnailPreset:
    name: str
    width: int  # pixels
    count: int | None = None  # pictures spread over the duration, or
    every_s: float | None = None  # one picture every so many seconds

    @property
    def description(self) -> str:
        how = f"{self.count} thumbnails spread over the video" if self.count else f"one thumbnail every {self.every_s:g} s"
        return f"{how}, {self.width} px wide, JPEG"

    def times_s(self, duration_s: float) -> list[float]:
        """When each picture is taken, in seconds from the start."""
        if duration_s <= 0:
            return [0.0]
        count = self.count or max(1, int(duration_s // (self.every_s or duration_s)))
        count = min(count, MAX_THUMBNAILS)
        return [(index + 0.5) * duration_s / count for index in range(count)]

    def listing(self) -> dict[str, object]:
        """The preset as the API lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "width": self.width,
            "count": self.count,
            "interval": self.every_s,
            "format": "jpeg",
        }


THUMBNAIL_PRESETS: dict[str, ThumbnailPreset] = {
    preset.name: preset
    for preset in (
        ThumbnailPreset("thumbnails_small", width=160, count=6),
        ThumbnailPreset("thumbnails_medium", width=320, count=10),
        ThumbnailPreset("thumbnails_large", width=640, count=10),
        ThumbnailPreset("thumbnails_every_10s", width=320, every_s=10.0),
    )
}


def check_thumbnail_preset(name: str) -> ThumbnailPreset:
    """The preset called `name`; ValueError (a message for the caller) when there is none."""
    preset = THUMBNAIL_PRESETS.get(name)
    if preset is None:
        raise ValueError(f"unknown thumbnail_preset {name!r}; the thumbnail presets are listed at /v1/presets/thumbnails")
    return preset


def thumbnail_names(names: str | None, *, resolution: str, count: int) -> list[str]:
    """The file names of `count` thumbnails from the `names` template (see the module's doc).

    ValueError when the template has other placeholders or would make a path.
    """
    template = names or DEFAULT_NAMES
    if "{index}" not in template:
        template += "_{index}"
    result = []
    for index in range(1, count + 1):
        try:
            name = template.format(resolution=resolution, index=f"{index:0{INDEX_DIGITS}d}") + ".jpg"
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"thumbnail_names {names!r}: the only placeholders are {{resolution}} and {{index}}") from None
        if not _NAME.match(name) or name.startswith("."):
            raise ValueError(f"thumbnail_names {names!r} must make plain file names (letters, digits, _ - .)")
        result.append(name)
    return result


def make_thumbnails(
    input: Path,
    outdir: Path,
    *,
    preset: str,
    names: str | None,
    resolution: str,
    duration_ms: int,
    cancelled: Callable[[], bool] | None = None,
) -> list[Path]:
    """Write the preset's JPEG thumbnails of `input` into `outdir`; returns their paths in order.

    Each picture is one ffmpeg run seeking straight to its time (a few frames decoded, not the
    whole title). The pictures are written into a scratch folder inside `outdir` and moved out
    only when all are made, so a failure or cancel leaves none behind.
    """
    chosen = check_thumbnail_preset(preset)
    times = chosen.times_s(duration_ms / 1000)
    files = thumbnail_names(names, resolution=resolution, count=len(times))
    scale = f"scale='min({chosen.width},iw)':-2:flags=bicubic,setsar=1"
    with tempfile.TemporaryDirectory(prefix=".thumbnails.", dir=outdir) as scratch:
        made = []
        for at_s, name in zip(times, files, strict=True):
            target = Path(scratch) / name
            ffmpeg.run(
                ["-ss", f"{at_s:.3f}", "-i", str(input), "-map", "0:v:0", "-frames:v", "1", "-vf", scale,
                 "-q:v", str(JPEG_QUALITY), "-f", "image2", "-update", "1", str(target)],
                duration_s=None, cancelled=cancelled, redact=(input, target),
            )  # fmt: skip
            if not target.exists():
                raise MediaError("unreadable_input", f"{input.name} has no picture at {at_s:.1f} s for a thumbnail")
            made.append(target)
        try:
            return [path.replace(outdir / path.name) for path in made]
        except OSError as error:
            raise from_os_error(error, outdir / made[0].name) from None


def zip_files(paths: Iterable[Path], zip_path: Path) -> Path:
    """Store `paths` (by file name) in the archive `zip_path`, written whole or not at all.

    JPEGs do not compress further, so members are stored, not deflated.
    """
    partial = zip_path.with_name(f".{zip_path.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in paths:
                archive.write(path, arcname=path.name)
        return partial.replace(zip_path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise from_os_error(error, zip_path) from None
