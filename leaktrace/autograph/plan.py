"""The plan of a prepared title: its rendition, its positions and the chunks prepare works on.

Everything here is decided by the title and the options alone (never by the machine), so that the
outputs are the same bytes whatever the number of workers:

- Position length: one position is one closed GOP of G = round(position_seconds x fps) frames
  (half up). At 12.5 fps, 1 s gives 13 frames (1.04 s) and 2 s gives 25 (2.0 s); at 29.97 fps,
  2 s gives 60 frames (2.002 s). The last position holds the remaining frames.
- Chunks: consecutive positions covering about CHUNK_SECONDS each. A chunk is the unit of
  parallel work: it gets its own unmarked encoder and its own strength control, so a chunk's
  bytes depend on its frames only.
- Size: odd widths or heights lose their last column or row (4:2:0 needs even sizes); with
  `height` the frame is scaled to that height, width keeping the aspect ratio, both even.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

Progress = Callable[[int, int], None]
"""Called with (frames done, frames planned) while preparing."""

Position = dict[str, Any]
"""One position as listed in the manifest: index, first_frame, frame_count, start_s, end_s."""

# Target luma PSNR (dB) of a decoded variant against the decoded unmarked encode.
STRENGTH_PSNR_DB = {"light": 48.0, "medium": 44.0, "strong": 40.0}
# A level counts as hit when the measured PSNR is within this many dB of its target.
PSNR_TOLERANCE_DB = 1.0
MIN_POSITION_SECONDS = 1.0
MAX_POSITION_SECONDS = 2.0
# Title seconds per chunk of parallel work. Shorter chunks share a title out over more cores (a
# 180 s title makes 18 chunks); longer ones restart the strength control less often: a chunk
# cannot make up in its later positions for what another lost, so a fade to black near a chunk's
# end leaves it above target (caminandes at `strong`, 2 s positions: 40.7 dB in one 10 s chunk,
# 41.4 dB in chunks of 6 s, target 40 +- 1).
CHUNK_SECONDS = 10.0


class PrepareError(Exception):
    """The input cannot be prepared (unreadable, no video, bad options, or inconsistent output)."""


class PrepareCancelled(PrepareError):
    """prepare() was asked to stop (its `cancelled` callback returned True); the folder is left empty."""


@dataclass(frozen=True)
class Rendition:
    """Geometry and timing of the encoded variants."""

    width: int
    height: int
    fps: Fraction
    frames_per_position: int
    scaled: bool  # True: scaled to `height`; False: cropped by at most one column/row


@dataclass(frozen=True)
class Chunk:
    """Consecutive positions prepared together: `positions` are the manifest's entries."""

    index: int
    positions: tuple[Position, ...]

    @property
    def first_frame(self) -> int:
        return int(self.positions[0]["first_frame"])

    @property
    def frame_count(self) -> int:
        return sum(int(p["frame_count"]) for p in self.positions)


def frames_per_position(position_seconds: float, fps: Fraction) -> int:
    """GOP length in frames: position_seconds x fps rounded half up (at least 1)."""
    return max(1, int(math.floor(Fraction(position_seconds) * fps + Fraction(1, 2))))


def plan_positions(n_frames: int, frames_per_pos: int, fps: Fraction) -> list[Position]:
    """Positions covering frames 0..n_frames-1, each one GOP: index, first frame, count, times (s)."""
    positions = []
    for index, first in enumerate(range(0, n_frames, frames_per_pos)):
        count = min(frames_per_pos, n_frames - first)
        positions.append({
            "index": index,
            "first_frame": first,
            "frame_count": count,
            "start_s": float(first / fps),
            "end_s": float((first + count) / fps),
        })
    return positions


def plan_chunks(positions: list[Position], *, position_duration_s: float,
                chunk_seconds: float = CHUNK_SECONDS) -> list[Chunk]:
    """The positions cut into chunks of round(chunk_seconds / position duration) positions (at least one)."""
    per_chunk = max(1, round(chunk_seconds / position_duration_s))
    return [Chunk(index, tuple(positions[start:start + per_chunk]))
            for index, start in enumerate(range(0, len(positions), per_chunk))]


def target_mse(strength: str) -> float:
    """Luma MSE of a variant against the unmarked encode at the strength's target PSNR."""
    return 255.0**2 / 10.0 ** (STRENGTH_PSNR_DB[strength] / 10.0)


def psnr_db(mse: float) -> float:
    """8-bit PSNR of a mean squared error, capped at 99 dB for (near) zero errors (JSON has no inf)."""
    return min(99.0, 10.0 * math.log10(255.0**2 / max(mse, 1e-12)))


def manifest_rendition(manifest: dict[str, Any]) -> Rendition:
    """The rendition a prepared title was made in."""
    r = manifest["rendition"]
    return Rendition(r["width"], r["height"], Fraction(*r["fps"]), manifest["frames_per_position"],
                     r["geometry"] == "scaled")


def manifest_chunks(manifest: dict[str, Any]) -> list[Chunk]:
    """The chunks a prepared title was made in (`chunks` in the manifest: [first position, count] pairs)."""
    positions = manifest["positions"]
    return [Chunk(index, tuple(positions[first:first + count]))
            for index, (first, count) in enumerate(manifest["chunks"])]
