"""Logo presets and the ffmpeg overlay that burns a logo into an output.

A logo preset is named `logo_<percent>_<corner>`: the logo is scaled to <percent> % of the output
video's width (its height follows the image's own aspect ratio) and placed in <corner>, a margin of
MARGIN_PERCENT % of the video width away from both edges. Sizes relative to the video keep a logo
the same visual size in every rendition of a ladder (a 1080p and a 360p output look alike).
Images with an alpha channel (PNG) are blended; opaque images cover their rectangle.

The short names `Logo<percent>` (as in the reference's job example, `Logo15`) place a logo of
that width in the bottom right corner, where broadcasters put theirs.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Literal

Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right"]
CORNERS: tuple[Corner, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")
WIDTH_PERCENTS = (10, 20, 30)
SHORT_WIDTH_PERCENTS = (5, 10, 15, 20, 25, 30)  # the `Logo<percent>` names
SHORT_CORNER: Corner = "bottom_right"
MARGIN_PERCENT = 2

# overlay's x and y for each corner; W/H are the video's size, w/h the scaled logo's, m the margin.
_POSITIONS: dict[Corner, tuple[str, str]] = {
    "top_left": ("{m}", "{m}"),
    "top_right": ("W-w-{m}", "{m}"),
    "bottom_left": ("{m}", "H-h-{m}"),
    "bottom_right": ("W-w-{m}", "H-h-{m}"),
}


@dataclass(frozen=True)
class LogoPreset:
    name: str
    width_percent: int  # logo width as a percentage of the output video's width
    corner: Corner
    margin_percent: int = MARGIN_PERCENT

    @property
    def description(self) -> str:
        place = self.corner.replace("_", " ")
        return f"Logo {self.width_percent}% of the video width, {place}, {self.margin_percent}% margin"

    def listing(self) -> dict[str, object]:
        """The preset as the API lists it."""
        return {
            "name": self.name,
            "description": self.description,
            "width_percent": self.width_percent,
            "corner": self.corner,
            "margin_percent": self.margin_percent,
        }


LOGO_PRESETS: dict[str, LogoPreset] = {
    **{
        f"logo_{percent}_{corner}": LogoPreset(name=f"logo_{percent}_{corner}", width_percent=percent, corner=corner)
        for percent, corner in product(WIDTH_PERCENTS, CORNERS)
    },
    **{
        f"Logo{percent}": LogoPreset(name=f"Logo{percent}", width_percent=percent, corner=SHORT_CORNER)
        for percent in SHORT_WIDTH_PERCENTS
    },
}


def check_logo_preset(name: str) -> LogoPreset:
    """The preset called `name`; ValueError (a message for the caller) when there is none."""
    preset = LOGO_PRESETS.get(name)
    if preset is None:
        raise ValueError(f"unknown logo_preset {name!r}; the logo presets are listed at /v1/presets/logos")
    return preset


@dataclass(frozen=True)
class LogoOverlay:
    """A logo image (a local file) to burn into an output with the named preset."""

    image: Path
    preset: str

    def __post_init__(self) -> None:
        check_logo_preset(self.preset)

    def filter(self, *, video: str, logo: str, out: str, video_width: int) -> str:
        """filter_complex text that scales input pad `logo` and overlays it on `video` into `out`.

        `video_width` is the output width in pixels (the plan's, after scaling), from which the
        logo width and the margin are computed, so the filter needs no expressions on the logo.
        """
        preset = check_logo_preset(self.preset)
        logo_width = max(2, round(video_width * preset.width_percent / 100))
        margin = round(video_width * preset.margin_percent / 100)
        x, y = (part.format(m=margin) for part in _POSITIONS[preset.corner])
        return f"[{logo}]scale={logo_width}:-1[scaled_logo];[{video}][scaled_logo]overlay=x={x}:y={y}:format=auto[{out}]"
