"""Imperceptibility per clip and strength: luma PSNR, SSIM, VMAF (when ffmpeg has libvmaf), stills.

For every clip in ../shared/testdata and every strength (light 48 dB, medium 44 dB, strong 40 dB
targets, each within 1 dB), the clip is prepared with our engine and each variant (A and B),
decoded, is compared with the unmarked encode of the same rendition and encoder settings, decoded
(`leaktrace.autograph.quality.measure_psnr`, the measurement the strengths are defined on).

Stills, under bench/out/stills/, for a person to look at at 1:1 (crops, no scaling):
- the flat, hazy sky of plane_clouds for the unmarked encode and variant A at each strength, plus
  the difference x8 around mid-grey;
- for every clip at `medium` and `strong`, where the mark shows most: the frame and block of
  variant A with the largest `quality.visibility` (unmarked | variant A | difference x8), and the
  position switch where the mark's step is largest against the content's own change (unmarked
  before | after, above a copy going from A to B: before | after).

    .venv/bin/python -m bench.imperceptibility           # full run, writes BENCHMARKS.md
    .venv/bin/python -m bench.imperceptibility --quick   # one clip, 2 s, no write
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench import media, report

STRENGTHS = {"light": 48.0, "medium": 44.0, "strong": 40.0}
TOLERANCE_DB = 1.0
STILL_CLIP = "plane_clouds_720p30_6s.mp4"
SKY_CROP = (680, 170, 480, 360)  # x, y, width, height of the flat sky in the 1280x720 frame
STILL_TIME = 1.0
SPOT_STRENGTHS = ("medium", "strong")   # the default and the most visible level
SPOT_CROP = (320, 240)     # width, height of the crops around the spot


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def has_libvmaf() -> bool:
    """Whether the ffmpeg CLI at hand has the libvmaf filter."""
    out = subprocess.run([media.FFMPEG, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == ["libvmaf"] for line in out.splitlines() if line.strip())


def vmaf(distorted: Path, reference: Path) -> float:
    """Mean VMAF of `distorted` against `reference` through ffmpeg's libvmaf filter."""
    out = subprocess.run([media.FFMPEG, "-hide_banner", "-i", str(distorted), "-i", str(reference),
                          "-lavfi", "libvmaf", "-f", "null", "-"], capture_output=True, text=True).stderr
    for line in out.splitlines():
        if "VMAF score" in line:
            return float(line.rsplit(":", 1)[1])
    raise RuntimeError("libvmaf printed no score")


def clip_list(quick: bool) -> list[str]:
    if quick:
        return [STILL_CLIP]
    return sorted(p.name for p in media.require_testdata().iterdir()
                  if p.suffix in (".mp4", ".mkv", ".webm"))


def frame_at(source: Path | object, index: int) -> np.ndarray:
    """Frame `index` of a file or a readable binary stream, uint8 BGR (H, W, 3)."""
    import av

    with av.open(source if not isinstance(source, Path) else str(source)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i == index:
                return frame.to_ndarray(format="bgr24")
    raise IndexError(f"frame {index} not found")


def diff_x8(marked: np.ndarray, unmarked: np.ndarray) -> np.ndarray:
    """The luma difference of two BGR frames x8 around mid-grey, uint8 (H, W)."""
    return np.clip(128 + 8 * (media.luma(marked) - media.luma(unmarked)), 0, 255).astype(np.uint8)


def save_stills(title_dirs: dict[str, Path], unmarked: Path, fps: float, out_dir: Path) -> list[Path]:
    """Crop the flat sky at 1:1 from the unmarked encode and variant A per strength; save PNGs
    (colour), and the luma difference x8 around mid-grey."""
    from leaktrace.autograph.assemble import variant_copy
    from leaktrace.autograph.package import load_title

    out_dir.mkdir(parents=True, exist_ok=True)
    index = int(STILL_TIME * fps)
    x, y, w, h = SKY_CROP
    base = frame_at(unmarked, index)
    saved = [out_dir / "plane_clouds_sky_unmarked.png"]
    cv2.imwrite(str(saved[0]), base[y:y + h, x:x + w])
    for strength, outdir in title_dirs.items():
        with variant_copy(load_title(outdir), "A") as copy, copy.open() as stream:
            marked = frame_at(stream, index)
        path = out_dir / f"plane_clouds_sky_{strength}.png"
        cv2.imwrite(str(path), marked[y:y + h, x:x + w])
        diff = diff_x8(marked, base)
        diff_path = out_dir / f"plane_clouds_sky_{strength}_diff_x8.png"
        cv2.imwrite(str(diff_path), diff[y:y + h, x:x + w])
        saved += [path, diff_path]
    return saved


def worst_switch(title_dir: Path, unmarked: Path, frames_per_position: int) -> tuple[float, int, int, int]:
    """The position switch where a copy going from A to B steps most against the content's own change:
    (score, frame, block row, block column), the score being the block RMS of the mark's step over 1 +
    that of the unmarked picture's change (`quality.block_rms`); score -1 for a single position."""
    from leaktrace.autograph.assemble import variant_copy
    from leaktrace.autograph.package import load_title
    from leaktrace.autograph.quality import block_rms, decode_luma

    title = load_title(title_dir)
    best = (-1.0, 0, 0, 0)
    with variant_copy(title, "A") as copy_a, copy_a.open() as stream_a, \
            variant_copy(title, "B") as copy_b, copy_b.open() as stream_b:
        previous = None
        for frame, lumas in enumerate(zip(decode_luma(unmarked), decode_luma(stream_a), decode_luma(stream_b))):
            u, a, b = (luma.astype(np.float32) for luma in lumas)
            if previous is not None and frame % frames_per_position == 0:
                previous_u, previous_mark = previous
                score = block_rms(b - u - previous_mark) / (1.0 + block_rms(u - previous_u))
                row, col = np.unravel_index(int(np.argmax(score)), score.shape)
                if score[row, col] > best[0]:
                    best = (float(score[row, col]), frame, int(row), int(col))
            previous = (u, a - u)
    return best


def _crop(image: np.ndarray, row: int, col: int) -> np.ndarray:
    """The SPOT_CROP window of `image` centred on block (row, col), kept inside the frame."""
    from leaktrace.autograph.quality import VISIBILITY_BLOCK as block

    w, h = min(SPOT_CROP[0], image.shape[1]), min(SPOT_CROP[1], image.shape[0])
    x = int(np.clip((col + 0.5) * block - w / 2, 0, image.shape[1] - w))
    y = int(np.clip((row + 0.5) * block - h / 2, 0, image.shape[0] - h))
    return image[y:y + h, x:x + w]


def _montage(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Images side by side and rows one above the other, with 4 black pixels between them."""
    def gap(height: int, width: int) -> np.ndarray:
        return np.zeros((height, width, 3), np.uint8)

    lines = []
    for images in rows:
        line = [images[0]]
        for image in images[1:]:
            line += [gap(image.shape[0], 4), image]
        lines.append(np.hstack(line))
    out = [lines[0]]
    for line in lines[1:]:
        out += [gap(4, line.shape[1]), line]
    return np.vstack(out)


def save_spots(title_dir: Path, unmarked: Path, most_visible: tuple[int, int, int], out_dir: Path,
               stem: str, strength: str) -> list[Path]:
    """Save 1:1 crops of where variant A's mark shows most (`most_visible`: frame, block row, column, from
    `quality.compare_luma`) and of the `worst_switch`; return the PNG paths."""
    from leaktrace.autograph.assemble import variant_copy
    from leaktrace.autograph.package import load_title

    out_dir.mkdir(parents=True, exist_ok=True)
    title = load_title(title_dir)

    def marked(variant: str, frame: int) -> np.ndarray:
        with variant_copy(title, variant) as copy, copy.open() as stream:
            return frame_at(stream, frame)

    frame, row, col = most_visible
    base, mark = frame_at(unmarked, frame), marked("A", frame)
    diff = diff_x8(mark, base)
    spot = out_dir / f"{stem}_{strength}_spot_frame{frame}.png"
    crops = [_crop(image, row, col) for image in (base, mark, cv2.cvtColor(diff, cv2.COLOR_GRAY2BGR))]
    cv2.imwrite(str(spot), _montage([crops]))
    saved = [spot]
    score, frame, row, col = worst_switch(title_dir, unmarked, title.manifest["frames_per_position"])
    if score >= 0:
        switch = out_dir / f"{stem}_{strength}_switch_frame{frame}.png"
        cv2.imwrite(str(switch), _montage([
            [_crop(frame_at(unmarked, frame - 1), row, col), _crop(frame_at(unmarked, frame), row, col)],
            [_crop(marked("A", frame - 1), row, col), _crop(marked("B", frame), row, col)]]))
        saved.append(switch)
    return saved


def _larger_step(a: Any, b: Any, name: str) -> float | None:
    """The larger of two variants' (`QualityResult`) steps; None when the title has a single position."""
    steps = [getattr(q, name) for q in (a, b) if getattr(q, name) is not None]
    return max(steps) if steps else None


def _steps(switch: float | None, within: float | None) -> str:
    return " / ".join("n/a" if x is None else f"{x:.2f}" for x in (switch, within))


def held_status(idr_db: float, target: float) -> str:
    """Why a title landed above its target: its IDRs, marked directly, are above it too (`held: limit`,
    the mask's visibility limit), or they carry the target and the GOP loses it (`held: fades`)."""
    return "held: limit" if idr_db > target + TOLERANCE_DB else "held: fades"


def measure_clip(clip: str, seconds: float | None, workdir: Path, with_vmaf: bool) -> dict:
    """Prepare `clip` at every strength and measure each variant against the unmarked encode;
    return the table rows, the JSON results, the misses and (for the sky clip) the stills."""
    from leaktrace.autograph.embed import prepare
    from leaktrace.autograph.quality import codec_quality, measure_psnr

    out: dict = {"rows": [], "results": [], "misses": [], "held": [], "stills": []}
    source = media.TESTDATA / clip
    unmarked = workdir / f"{Path(clip).stem}-unmarked.mp4"
    title_dirs: dict[str, Path] = {}
    most_visible: dict[str, tuple[int, int, int]] = {}
    codec = None
    for strength, target in STRENGTHS.items():
        outdir = workdir / f"{Path(clip).stem}-{strength}"
        log(f"{clip}: prepare {strength}")
        manifest = prepare(source, outdir, strength=strength, duration=seconds)
        title_dirs[strength] = outdir
        quality = measure_psnr(source, outdir, unmarked_path=unmarked)
        if codec is None:   # the unmarked encode against the source, once per clip
            codec = codec_quality(source, unmarked, manifest)
        vmaf_text = "n/a: no libvmaf"
        if with_vmaf:
            from leaktrace.autograph.assemble import variant_copy
            from leaktrace.autograph.package import load_title

            copy_a = outdir / "variant-A.mp4"
            variant_copy(load_title(outdir), "A").write_to(copy_a)
            vmaf_text = f"{vmaf(copy_a, unmarked):.2f}"
        a, b = quality["A"], quality["B"]
        most_visible[strength] = a.most_visible
        # a variant is the unmarked encode with other intra pictures: its cost in bytes
        init = (outdir / "init.mp4").stat().st_size
        growth = np.mean([(init + (outdir / f"{v}.m4s").stat().st_size) / unmarked.stat().st_size - 1
                          for v in ("A", "B")])
        within = all(abs(q.psnr_db - target) <= TOLERANCE_DB for q in (a, b))
        # above the target: less mark than the strength asks for, held by the content; below it:
        # more mark than asked, a miss
        over = any(q.psnr_db < target - TOLERANCE_DB for q in (a, b))
        idr_db = min(a.idr_psnr_db, b.idr_psnr_db)
        status = "ok" if within else "MISSED" if over else held_status(idr_db, target)
        if not within:
            out["misses" if over else "held"].append(
                f"{clip} {strength}: A {a.psnr_db:.2f} dB, B {b.psnr_db:.2f} dB, IDRs {idr_db:.2f} dB "
                f"(target {target:g}){'' if over else ', ' + status}")
        r = manifest["rendition"]
        out["rows"].append([clip, f"{r['width']}x{r['height']}", strength, f"{target:g}",
                            f"{a.psnr_db:.2f}", f"{b.psnr_db:.2f}",
                            f"{min(a.min_frame_psnr_db, b.min_frame_psnr_db):.2f}", f"{idr_db:.2f}",
                            f"{a.ssim:.4f} / {b.ssim:.4f}", vmaf_text, f"{100 * growth:+.1f} %",
                            _steps(_larger_step(a, b, "switch_step"), _larger_step(a, b, "frame_step")),
                            _steps(codec.switch_step, codec.frame_step),
                            f"{max(a.max_visibility, b.max_visibility):.1f}", status])
        out["results"].append({"clip": clip, "strength": strength, "target_db": target,
                               "A": a.as_dict(), "B": b.as_dict(), "vmaf": vmaf_text,
                               "unmarked_vs_source": codec.as_dict(),
                               "size_vs_unmarked": float(growth), "within": within, "status": status})
    if clip == STILL_CLIP:
        fps = manifest["rendition"]["fps"][0] / manifest["rendition"]["fps"][1]
        out["stills"] = save_stills(title_dirs, unmarked, fps, media.OUT / "stills")
    log(f"{clip}: where the mark shows most")
    out["spots"] = [path for strength in SPOT_STRENGTHS
                    for path in save_spots(title_dirs[strength], unmarked, most_visible[strength],
                                           media.OUT / "stills", Path(clip).stem, strength)]
    return out


def main(argv: list[str] | None = None) -> int:
    from leaktrace.autograph.quality import VISIBILITY_BLOCK, independent_step

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one clip, 2 s, no BENCHMARKS.md write")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch BENCHMARKS.md")
    parser.add_argument("--seconds", type=float, default=None,
                        help="prepare only the first SECONDS of each clip (default: whole clips; quick 2)")
    parser.add_argument("--jobs", type=int, default=1, help="clips measured at the same time (processes)")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    seconds = args.seconds or (2.0 if args.quick else None)
    workdir = media.OUT / ("imperceptibility-quick" if args.quick else "imperceptibility")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    with_vmaf = has_libvmaf()
    clips = clip_list(args.quick)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        per_clip = list(pool.map(measure_clip, clips, [seconds] * len(clips), [workdir] * len(clips),
                                 [with_vmaf] * len(clips)))
    rows = [row for part in per_clip for row in part["rows"]]
    results = [r for part in per_clip for r in part["results"]]
    misses = [m for part in per_clip for m in part["misses"]]
    held = [m for part in per_clip for m in part["held"]]
    statuses = Counter(r["status"] for r in results)
    stills: list[Path] = [p for part in per_clip for p in part["stills"]]
    spots: list[Path] = [p for part in per_clip for p in part["spots"]]

    table = report.markdown_table(
        ["clip", "rendition", "strength", "target dB", "Y-PSNR A dB", "Y-PSNR B dB", "worst frame dB", "IDRs dB",
         "SSIM A / B", "VMAF", "bytes vs unmarked", "mark step: switch / within", "codec step: IDR / within",
         "mark shows (most)", f"PSNR within {TOLERANCE_DB:g} dB"], rows)
    extent = f"first {seconds:g} s" if seconds else "whole length"
    body = (f"Each clip's {extent} prepared with the engine defaults (2 s positions, libx264 "
            f"veryfast CRF 20); Y-PSNR over all frames of each variant against the unmarked encode with the "
            f"same settings (`quality.measure_psnr`); IDRs: the same over the first picture of every position "
            f"(the IDR, which carries the mark itself; U's other pictures carry it by prediction, and content "
            f"that moves in has none), the lower of A and B; SSIM on every 10th frame; VMAF "
            f"{'with libvmaf' if with_vmaf else 'n/a: the ffmpeg at hand (Debian 5.1) has no libvmaf'}; "
            f"bytes vs unmarked: a variant's init segment and fragments against the unmarked encode's file "
            f"(both with the same audio). Steps (luma levels, RMS over the frame) measure flicker: how much "
            f"the mark (variant minus unmarked encode, the larger of A and B) changes from one frame to the "
            f"next across position switches, where a copy may change variant and a new pattern starts, and "
            f"between frames within positions; beside it the same for the codec alone (unmarked encode "
            f"minus source) at its IDR pictures and within GOPs. Any pattern drawn independently per "
            f"position steps by sqrt(2) x its RMS at a switch: "
            + ", ".join(f"{independent_step(name):.2f} levels for {name}" for name in STRENGTHS)
            + " at the target PSNR. Mark shows (most): the largest `quality.visibility` over every "
            f"{VISIBILITY_BLOCK}x{VISIBILITY_BLOCK} block of every frame of A and B, the mark's RMS there over 1 + the "
            f"unmarked picture's standard deviation (as strong as the content's own detail: about 1; in "
            f"flat sky: its RMS in levels). "
            + f"PSNR: {len(rows) - len(misses) - len(held)} of {len(rows)} clip/strength pairs within "
            f"{TOLERANCE_DB:g} dB of the target; {len(held)} held above it, with less mark than the "
            f"strength asks ({statuses['held: limit']} `held: limit`: the IDRs too, where the content cannot hide "
            f"more, `pattern.JND_FLAT` + `pattern.JND_SLOPE` x its activity; {statuses['held: fades']} "
            f"`held: fades`: the IDRs carry the target, the mark fades along the GOP, and more on the IDRs "
            f"would step up at every switch, `strength.RMS_RANGE` and `strength.PEAK_MSE_FACTOR`); "
            f"{len(misses)} below it (`MISSED`: more mark than asked).\n\n"
            f"{table}\n\nStills (1:1 crop {SKY_CROP[2]}x{SKY_CROP[3]} of the flat sky in {STILL_CLIP} at "
            f"{STILL_TIME:g} s, variant A; `_diff_x8` = 128 + 8 x (marked - unmarked)): "
            + ", ".join(f"`{p.relative_to(media.REPO_ROOT)}`" for p in stills)
            + f"\n\nWhere the mark shows most, per clip at {' and '.join(SPOT_STRENGTHS)} (1:1 crops "
            f"{SPOT_CROP[0]}x{SPOT_CROP[1]}; `_spot`: unmarked | variant A | difference x8 at A's most "
            f"visible block; `_switch`: unmarked before | after a position switch, above a copy going from A "
            f"to B, where the step's RMS over 1 + the content's change is largest): "
            + ", ".join(f"`{p.relative_to(media.REPO_ROOT)}`" for p in spots))
    print(body)
    if held:
        print("\nHeld above the target:\n" + "\n".join(f"  - {m}" for m in held), file=sys.stderr)
    if misses:
        print("\nMISSED (more mark than the strength asks):\n" + "\n".join(f"  - {m}" for m in misses), file=sys.stderr)
    if args.json_out:
        args.json_out.write_text(json.dumps({"results": results, "misses": misses, "held": held,
                                             "stills": [str(p) for p in stills],
                                             "spots": [str(p) for p in spots]}, indent=1, default=str))
    if not args.quick and not args.no_write:
        report.write_section("imperceptibility", title="Imperceptibility: luma PSNR, SSIM, VMAF, stills",
                             body=body, command=report.command_line("bench.imperceptibility"))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
