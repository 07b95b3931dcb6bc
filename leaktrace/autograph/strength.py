"""How strong each position's mark is: a model of what a GOP keeps of a delta, and the feedback that
steers the title's PSNR to its target.

The decoded MSE is the intra re-encoding's own error plus a share of the delta's power
(`StrengthModel`); prepare() measures what every position really gets, marks it again when it
lands off, and steers the RMS of the next ones towards the target (`StrengthControl`). A control
serves one chunk of positions (`plan.Chunk`): its history starts with the chunk, so a chunk's
marks do not depend on how the title is shared out between workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leaktrace.autograph.plan import Position


@dataclass(frozen=True)
class StrengthModel:
    """Luma MSE per frame of a variant against U for a position's delta of a given RMS: floor + gain x rms^2.

    The floor is the intra re-encodings' own error, carried through the GOP; the gain is the share of
    the delta's power that the decoded GOP keeps (the mark fades where U codes intra blocks).
    """

    floor_mse: float
    gain: float

    def mse(self, rms: float) -> float:
        return self.floor_mse + self.gain * rms * rms

    def rms(self, mse: float) -> float:
        return math.sqrt(max(mse - self.floor_mse, 0.0) / self.gain)


# The starting point of every title, typical of ../shared/testdata at CRF 20 (floor 0.3-0.9,
# gain 0.4-0.85); `StrengthControl` rescales it to what the title measures.
DEFAULT_MODEL = StrengthModel(floor_mse=0.5, gain=0.6)
# Each position's RMS stays within these factors of the target MSE's RMS. The upper bound limits
# the step where positions switch: a position whose content keeps little of its mark (a fade to
# black, measured on caminandes: 2.4x the target's RMS sought, 1.23x an independent pattern's step)
# is left weaker and the other positions make up (1.75: 1.13x, with the PSNR still within 1 dB).
RMS_RANGE = (0.5, 1.75)
# A position is marked again when it would leave the title's MSE further than this from the
# target, at most MAX_MARKS times in all; the closest mark is kept.
REMARK_TOLERANCE_DB = 0.5
MAX_MARKS = 3
# No frame of a variant may differ from U by more than this many times the target MSE (6 dB below
# the target PSNR; a fresh intra picture at the RMS cap is about 3.1x). On fast action the mark
# grew within the GOP (sintel, strong: a frame at 8.7x, in blocky patches) while U's intra blocks in
# P pictures predicted from their marked neighbours (now off: `constrained-intra`, X264_PARAMS);
# U's motion can still copy marked blocks into flat areas, so the rule stays as the guard: such a
# position is marked lower.
PEAK_MSE_FACTOR = 4.0


class StrengthControl:
    """Chooses each position's delta RMS so that the title's MSE against U converges on the target.

    The model's prediction is scaled by what recent marks measured (measured over predicted MSE,
    each earlier mark's weight halved by every later one: content changes from scene to scene, and
    the last positions predict the next best). A position aims at the MSE that brings the title's
    average, weighted by frames, to the target (`wanted`), and starts from the RMS the scaled model
    gives for it. If it lands off, `retry_rms` fits the position's own measurements. RMS stays
    within RMS_RANGE of the target's RMS; a title whose floor alone exceeds the target keeps the
    lowest, so it stays marked. Positions are marked in order, each recorded before the next; the
    title of a control is the chunk it serves.
    """

    def __init__(self, model: StrengthModel, *, target_mse: float, positions: list[Position] | tuple[Position, ...]):
        self.model, self.target_mse = model, target_mse
        self.frames = {position["index"]: position["frame_count"] for position in positions}
        base = math.sqrt(target_mse)
        self.bounds = (RMS_RANGE[0] * base, RMS_RANGE[1] * base)
        self.peak_mse = PEAK_MSE_FACTOR * target_mse
        self._title = [0.0, 0]          # squared-error sum (MSE x frames) and frames of the positions kept
        self._recent = [0.0, 0.0]       # measured and predicted MSE of recent marks, decaying
        self.wanted: dict[int, float] = {}
        self.chosen: dict[int, float] = {}

    @property
    def scale(self) -> float:
        """Measured over predicted MSE of recent marks (1 before any measurement)."""
        measured, predicted = self._recent
        return measured / predicted if predicted > 0 else 1.0

    def rms_for(self, index: int) -> float:
        """The first RMS to try for position `index`."""
        squared_error, done = self._title
        frames = self.frames[index]
        self.wanted[index] = wanted = (self.target_mse * (done + frames) - squared_error) / frames
        return self._clip(self.model.rms(wanted / self.scale))

    def miss_db(self, index: int, mse: float) -> float:
        """How far (dB) the title so far would be from the target with position `index` at `mse`."""
        squared_error, done = self._title
        frames = self.frames[index]
        title_mse = (squared_error + mse * frames) / (done + frames)
        return abs(10.0 * math.log10(max(title_mse, 1e-9) / self.target_mse))

    def rms_ceiling(self, peaks: list[tuple[float, float]]) -> float:
        """The highest RMS for a position whose marks (rms, MSE of the worst frame) are `peaks`.

        A mark's worst frame is its delta carried (or grown) through the GOP, so its MSE scales with
        rms^2; the ceiling aims 10 % under `peak_mse` from every mark that went over it.
        """
        return min((rms * math.sqrt(0.9 * self.peak_mse / peak) for rms, peak in peaks if peak > self.peak_mse),
                   default=math.inf)

    def rank(self, index: int, *, mse: float, peak_mse: float) -> tuple[float, float]:
        """Sort key of a position's marks, best first: within `peak_mse` (else the least over), then `miss_db`."""
        return max(peak_mse / self.peak_mse, 1.0), self.miss_db(index, mse)

    def retry_rms(self, index: int, tried: list[tuple[float, float]], *, ceiling: float = math.inf) -> float | None:
        """The RMS to mark position `index` with again after the (rms, mse) `tried`; None when done.

        A position is done when its latest RMS is within `ceiling` (`rms_ceiling`) and it leaves
        the title within REMARK_TOLERANCE_DB of the target: early positions must land close, later
        ones only when far off (a drifting mark), since the next positions make up for small misses.

        One measurement rescales the model to this position; two fit mse = a + b x rms^2 through
        the latest two, which covers both a fading mark (small b) and a drifting one (large b). The
        ceiling may take the RMS below RMS_RANGE: a weaker mark is better than a visible one.
        """
        rms, mse = tried[-1]
        if rms <= ceiling and self.miss_db(index, mse) <= REMARK_TOLERANCE_DB:
            return None
        wanted = self.wanted[index]
        slope = 0.0
        if len(tried) > 1 and abs(rms - tried[-2][0]) > 1e-6:
            r0, m0 = tried[-2]
            slope = (mse - m0) / (rms * rms - r0 * r0)
        if slope > 0:
            better = math.sqrt(max(wanted - (mse - slope * rms * rms), 0.0) / slope)
        else:
            better = self.model.rms(wanted * self.model.mse(rms) / max(mse, 1e-9))
        better = min(self._clip(better), ceiling)
        return None if any(abs(better - r) <= 0.02 * r for r, _ in tried) else better

    def record(self, index: int, *, tried: list[tuple[float, float]], kept: tuple[float, float]) -> None:
        """The (rms, mse) marks `tried` for position `index` in order, and the one `kept`."""
        for rms, mse in tried:
            self._recent = [0.5 * self._recent[0] + mse, 0.5 * self._recent[1] + self.model.mse(rms)]
        self._title[0] += kept[1] * self.frames[index]
        self._title[1] += self.frames[index]
        self.chosen[index] = kept[0]

    def _clip(self, rms: float) -> float:
        return float(np.clip(rms, *self.bounds))


