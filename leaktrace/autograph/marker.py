"""Marking one position per variant, measuring what each variant carries, and marking it again when off.

Per position (one closed GOP of U): U's intra pictures are decoded, each gets its own perceptual
mask, the variants' keyed noise shaped by it is added and the pictures are intra-coded anew
(`intra.IntraMarker`); the variants and their twins are decoded beside U, which gives each
variant's MSE against U, the detection templates, and the feedback for the strength control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np

from leaktrace.autograph import h264, pattern
from leaktrace.autograph.encoder import retimed
from leaktrace.autograph.intra import IntraMarker, split_delta
from leaktrace.autograph.plan import Position, PrepareError, Rendition
from leaktrace.autograph.source import plane
from leaktrace.autograph.strength import MAX_MARKS, StrengthControl

# Lowest mask gain in flat areas, per strength: stronger marks need more flat-area attenuation.
MASK_FLOOR = {"light": 0.35, "medium": 0.3, "strong": 0.2}
# Pictures the perceptual mask of a marked picture is taken from: itself and evenly spaced ones that
# carry its mark, up to the next intra picture (every picture of a 2 s position: 0.2 s per position
# at 960x540, 8 of them: 0.05 s).
MASK_SAMPLES = 8

Packet = av.Packet
"""U's packets of a position: anything with bytes(), pts, dts, time_base, duration and is_keyframe."""


@dataclass
class Mark:
    """One marking of a position for one variant: its RMS, marked pictures (by packet number), MSE, the MSE of
    its worst frame, and template."""

    rms: float
    pictures: dict[int, bytes]
    mse: float
    peak_mse: float
    template: np.ndarray


class PositionMarker:
    """Marks one position (a closed GOP of U) per variant, measures what each variant carries, re-marks it when off.

    The position's keyed noise is added to each of U's intra pictures in the GOP: its IDR, and any
    intra picture x264 placed at a scene cut (`X264_PARAMS`). Each picture shapes it with its own
    perceptual mask, taken from U's decoded pictures that carry its mark: itself and some of those
    up to the next intra picture (`pattern.perceptual_mask` keeps the places that stay busy in all
    of them, and limits the mark's local RMS by the content's activity there). A mask of the
    position's frames averaged put the mark where content would be later (on plane_clouds, the
    plane's path through a flat sky showed as speckles in the sky of the IDR, seen at 1:1); a mask
    of the marked picture alone left a ghost of the plane behind.

    A variant's decoded difference to U is that delta carried through the GOP plus the intra
    re-encoding's own error. That error is partly the same for every re-encode of a picture, so
    differences to U (or to a re-encode without delta) share a part between A and B that a copy does
    not carry in that proportion, and the absent variant then scored away from zero (+2 and -0.15 x
    the present z, measured). So each variant has a twin (`twin(v)`, never delivered) whose pictures
    carry the negated delta: half the twins' difference is the delta as the GOP carries it, and the
    error, even in the delta, cancels. A variant's template for a position is that half difference
    averaged over the position's interior frames (the frames tracing averages; a position of one or
    two frames uses all of them).

    U is decoded once per position and kept (luma, and the intra pictures whole); each marking
    then decodes its variants and twins. The twins decode only reference pictures (`skip_frame`
    NONREF, 40 % less decoding), so the templates average those; the non-reference B pictures only
    interpolate their references' marks. The variants decode every picture: the MSE over reference
    pictures alone read up to 0.75 dB low.

    How much of a delta a GOP keeps depends on its content (intra blocks drop it; on rare
    positions U's intra prediction makes it drift and grow), so a variant whose position would
    leave the title off target is marked again with the RMS that the measurements predict
    (`StrengthControl.retry_rms`), up to MAX_MARKS times. Where the mask's limit holds the delta
    below the RMS asked, the measured MSE stays low and the retries raise the RMS to its bound,
    which is as far as a position goes. U's prediction could also gather the mark into whole
    frames far above the target (fast action: sintel, strong, a frame at 8.7x the target MSE,
    before constrained intra prediction, `X264_PARAMS`); a variant whose worst frame goes over
    PEAK_MSE_FACTOR x the target is marked lower (`StrengthControl.rms_ceiling`). The mark kept is
    the closest to the target among those within the peak, else the one least over it.
    """

    def __init__(self, rendition: Rendition, positions: Sequence[Position], marker: IntraMarker,
                 controls: Mapping[str, StrengthControl], *, mask_floor: float):
        self.rendition, self.marker = rendition, marker
        self.positions = {position["index"]: position for position in positions}
        self.mask_floor = mask_floor
        self.controls = controls
        self._headers = h264.annex_b(marker.parameter_sets)
        self.squared_error = dict.fromkeys(controls, 0.0)
        self.frames = 0
        self.intra_pictures = 0

    def mark(self, index: int, packets: list[Packet], noise: Mapping[str, np.ndarray]
             ) -> tuple[dict[str, dict[int, bytes]], dict[str, np.ndarray]]:
        """Mark position `index` from U's `packets` (decode order, its IDR first) with each variant's keyed
        `noise`; return each variant's pictures and its template.

        The pictures are the marked access units by packet number (the other packets are U's); the
        templates are float32 (height, width), the mark the variant carries (see the class docstring).
        """
        unmarked, intra = self._decode_unmarked(packets)
        masks = self._masks(unmarked, intra)
        tried: dict[str, list[Mark]] = {v: [] for v in self.controls}

        def measured(v: str) -> list[tuple[float, float]]:
            return [(m.rms, m.mse) for m in tried[v]]

        def ceiling(v: str) -> float:
            return self.controls[v].rms_ceiling([(m.rms, m.peak_mse) for m in tried[v]])

        rms = {v: control.rms_for(index) for v, control in self.controls.items()}
        while rms:
            pictures: dict[str, dict[int, bytes]] = {}
            for v, value in rms.items():
                deltas = {number: split_delta(pattern.position_delta(noise[v], mask, rms=value))
                          for number, mask in masks.items()}
                for name, sign in ((v, 1), (twin(v), -1)):
                    pictures[name] = {number: self.marker.mark(access_unit, picture, deltas[number][::sign])
                                      for number, (access_unit, picture, _) in intra.items()}
            for v, (mse, peak_mse, template) in self._measure(index, packets, pictures, unmarked).items():
                tried[v].append(Mark(rms[v], pictures[v], mse, peak_mse, template))
            retries = {v: self.controls[v].retry_rms(index, measured(v), ceiling=ceiling(v)) for v in rms}
            rms = {v: value for v, value in retries.items() if value is not None and len(tried[v]) < MAX_MARKS}
        kept = {v: min(marks, key=lambda m: self.controls[v].rank(index, mse=m.mse, peak_mse=m.peak_mse))
                for v, marks in tried.items()}
        frames = self.positions[index]["frame_count"]
        for v, chosen in kept.items():
            self.controls[v].record(index, tried=measured(v), kept=(chosen.rms, chosen.mse))
            self.squared_error[v] += chosen.mse * frames * self.rendition.width * self.rendition.height
        self.frames += frames
        self.intra_pictures += len(intra)
        return ({v: chosen.pictures for v, chosen in kept.items()},
                {v: chosen.template for v, chosen in kept.items()})

    def _decoder(self, name: str) -> av.codec.context.CodecContext:
        decoder = av.CodecContext.create("h264", "r")
        decoder.extradata = self._headers
        decoder.thread_type = "NONE"
        if name not in ("U", *self.controls):
            decoder.skip_frame = "NONREF"
        return decoder

    def _masks(self, lumas: dict[int, np.ndarray], intra: dict[int, tuple[bytes, np.ndarray, int]]
               ) -> dict[int, pattern.Mask]:
        """The perceptual mask of each intra picture (by packet number), from U's decoded `lumas` (by pts)
        of the picture and of those after it up to the next intra picture (MASK_SAMPLES in all)."""
        starts = sorted(pts for _, _, pts in intra.values())
        frames = sorted(lumas)
        masks = {}
        for number, (_, _, pts) in intra.items():
            later = [p for p in starts if p > pts]
            carried = [p for p in frames if pts <= p < (later[0] if later else math.inf)]
            samples = np.linspace(0, len(carried) - 1, min(MASK_SAMPLES, len(carried))).round().astype(int)
            masks[number] = pattern.perceptual_mask([lumas[carried[i]] for i in samples], floor=self.mask_floor)
        return masks

    def _decode_unmarked(self, packets: list[Packet]
                         ) -> tuple[dict[int, np.ndarray], dict[int, tuple[bytes, np.ndarray, int]]]:
        """U's decoded GOP: luma by pts, and by packet number each intra picture's access unit, yuv420p
        picture and pts."""
        r = self.rendition
        access_units = [bytes(packet) for packet in packets]
        intra = {packet.pts: number for number, (packet, access_unit) in enumerate(zip(packets, access_units))
                 if h264.is_intra_picture(access_unit)}
        if 0 not in intra.values():
            raise PrepareError("a position does not start with an intra picture")
        decoder = self._decoder("U")
        lumas, pictures = {}, {}
        for frame in [f for packet in packets for f in decoder.decode(packet)] + decoder.decode(None):
            lumas[frame.pts] = plane(frame, 0)[: r.height, : r.width].copy()
            if frame.pts in intra:
                number = intra[frame.pts]
                pictures[number] = (access_units[number], frame.to_ndarray(format="yuv420p"), frame.pts)
        return lumas, dict(sorted(pictures.items()))

    def _measure(self, index: int, packets: list[Packet], pictures: dict[str, dict[int, bytes]],
                 unmarked: dict[int, np.ndarray]) -> dict[str, tuple[float, float, np.ndarray]]:
        """Decode the position with each output's marked `pictures`: per variant, its MSE against U, the MSE of
        its worst frame, and its template."""
        r = self.rendition
        first, count = self.positions[index]["first_frame"], self.positions[index]["frame_count"]
        variants = [name for name in pictures if name in self.controls]
        decoders = {name: self._decoder(name) for name in pictures}
        latest = dict.fromkeys(decoders, -1)
        lumas: dict[int, dict[str, np.ndarray]] = {}   # pts -> decoded luma per stream, until measured
        errors = dict.fromkeys(variants, 0.0)
        peaks = dict.fromkeys(variants, 0.0)
        sums: dict[str, np.ndarray] = {}
        interior_frames = frames = 0

        def take(name: str, decoded: list[av.VideoFrame]) -> None:
            for frame in decoded:
                lumas.setdefault(frame.pts, {})[name] = plane(frame, 0)[: r.height, : r.width].copy()
                latest[name] = frame.pts

        for number, packet in enumerate(packets):
            own = bytes(packet)
            for name, decoder in decoders.items():
                take(name, decoder.decode(retimed(pictures[name].get(number, own), packet)))
            flushing = number == len(packets) - 1
            if flushing:
                for name, decoder in decoders.items():
                    take(name, decoder.decode(None))
            for pts in sorted(lumas):
                got = lumas[pts]
                # a twin skips non-reference pictures: once it is past `pts` without it, none will come
                complete = all(v in got for v in variants)
                settled = all(twin(v) in got or latest[twin(v)] > pts for v in variants)
                if flushing and not (complete and pts in unmarked):
                    raise PrepareError(f"picture {pts} of position {index} is missing from a decoded variant")
                if not (complete and (settled or flushing)):
                    break
                del lumas[pts]
                for v in variants:
                    error = cv2.norm(got[v], unmarked[pts], cv2.NORM_L2SQR)
                    errors[v] += error
                    peaks[v] = max(peaks[v], error)
                interior = count <= 2 or first < pts < first + count - 1
                if interior and all(twin(v) in got for v in variants):
                    interior_frames += 1
                    for v in variants:
                        diff = cv2.subtract(got[v], got[twin(v)], dtype=cv2.CV_16S)
                        sums[v] = diff.astype(np.int32) if v not in sums else cv2.add(sums[v], diff, dtype=cv2.CV_32S)
                frames += 1
        if frames != count or len(unmarked) != count:
            raise PrepareError(f"position {index} decoded to {frames} pictures instead of {count}")
        pixels = count * r.width * r.height
        empty = np.zeros((r.height, r.width), np.float32)
        return {v: (errors[v] / pixels, peaks[v] / (r.width * r.height),
                    sums[v].astype(np.float32) / (2 * interior_frames) if interior_frames else empty)
                for v in variants}


def twin(variant: str) -> str:
    """Name of the never-delivered twin of a variant, whose pictures carry the negated delta (`PositionMarker`)."""
    return f"{variant}-"


