"""Shared media helpers for the benchmarks: test masters built from real clips, and the attack suite.

Everything here drives the `ffmpeg` command line (the Debian build at /usr/bin/ffmpeg), so every
attack is a command a reader can copy and run by hand. Builds are cached under `bench/out/`
(git-ignored) and keyed by the exact command, so a changed recipe never reuses a stale file.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTDATA = (REPO_ROOT / ".." / "shared" / "testdata").resolve()
OUT = REPO_ROOT / "bench" / "out"
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"

# The master's clips, in order. The grid talking heads are held out: they are the "other title"
# of the null test. A master longer than the clips is made of several passes over them, each
# flipped differently (MASTER_PASS_FLIPS) so no stretch of the master repeats verbatim, which would
# make time alignment of an excerpt ambiguous.
MASTER_CLIPS = [
    "bbb_0-30s_720p24.webm",
    "squirrel_720p25_10s.mp4",
    "sintel_1920x818p30_10s.mp4",
    "cockatoo_720p20_14s.mp4",
    "skateboard_puddle_2048x1080p25_7s.mkv",
    "plane_clouds_720p30_6s.mp4",
    "tears_of_steel_360p24_10s.mp4",
    "box_handheld_480p30_15s.mp4",
    "car_parkinglot_432p12_30s.mp4",
    "caminandes_360p24_10s.mp4",
    "overcast_sky_1080p30_2s_hevc.mp4",
]
OTHER_TITLE_CLIP = "grid_talking_heads_360x288p25_30s.mp4"
# Filter of each pass over the clips: as shot, mirrored, upside down, both (at least two passes).
MASTER_PASS_FLIPS = ("", "hflip", "vflip", "hflip,vflip")


def require_testdata() -> Path:
    """Return the shared test-clip folder, or raise FileNotFoundError with the reason."""
    if not TESTDATA.is_dir():
        raise FileNotFoundError(f"shared test clips not found at {TESTDATA}")
    return TESTDATA


def run(cmd: list[str], *, what: str = "") -> float:
    """Run a command, raise with its stderr tail on failure; return the wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what or cmd[0]} failed ({proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return elapsed


def cached(out_path: Path, cmd: list[str], *, what: str = "") -> Path:
    """Run `cmd` (which writes `out_path`) unless the same command already produced it."""
    stamp = out_path.with_name(out_path.name + ".cmd")
    recipe = shlex.join(cmd)
    if out_path.exists() and stamp.exists() and stamp.read_text() == recipe:
        return out_path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name("tmp-" + out_path.name)
    tmp_cmd = [tmp.as_posix() if part == out_path.as_posix() else part for part in cmd]
    run(tmp_cmd, what=what or out_path.name)
    tmp.replace(out_path)
    stamp.write_text(recipe)
    return out_path


def short_hash(*parts: object) -> str:
    """A 10-hex-digit digest of the given values, for cache file names."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:10]


# --------------------------------------------------------------------------------------------------
# Probing and decoding
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: Fraction
    duration: float
    frames: int
    codec: str


def probe(path: Path) -> VideoInfo:
    """Probe the first video stream (frames are counted by decoding-free packet count)."""
    cmd = [
        FFPROBE, "-v", "error", "-select_streams", "v:0", "-count_packets",
        "-show_entries", "stream=width,height,avg_frame_rate,r_frame_rate,codec_name,nb_read_packets",
        "-show_entries", "format=duration", "-of", "json", str(path),
    ]
    data = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    stream = data["streams"][0]
    rate = stream.get("avg_frame_rate") or stream["r_frame_rate"]
    if rate in ("0/0", "0/1"):
        rate = stream["r_frame_rate"]
    return VideoInfo(
        width=int(stream["width"]),
        height=int(stream["height"]),
        fps=Fraction(rate),
        duration=float(data["format"]["duration"]),
        frames=int(stream.get("nb_read_packets", 0)),
        codec=stream["codec_name"],
    )


def read_frames(path: Path, *, times: list[float] | None = None, gray: bool = False) -> list[np.ndarray]:
    """Decode a video and return frames as uint8 arrays: (H, W, 3) BGR, or (H, W) luma when gray.

    With `times`, return for each requested time (seconds from the start of the stream) the frame
    whose presentation interval contains it; otherwise every frame.
    """
    import av  # the house decoder; imported here so report-only use needs no PyAV

    wanted = sorted(times) if times is not None else None
    frames: list[np.ndarray] = []
    picked: dict[float, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        previous = None
        previous_t = None
        cursor = 0
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) - start
            image = frame.to_ndarray(format="gray" if gray else "bgr24")
            if wanted is None:
                frames.append(image)
                continue
            # A requested time belongs to the last frame that starts at or before it.
            while cursor < len(wanted) and wanted[cursor] < t - 1e-6:
                if previous is not None and previous_t is not None:
                    picked[wanted[cursor]] = previous
                cursor += 1
            previous, previous_t = image, t
            if cursor >= len(wanted):
                break
        while wanted is not None and cursor < len(wanted) and previous is not None:
            picked[wanted[cursor]] = previous
            cursor += 1
    if wanted is None:
        return frames
    return [picked[t] for t in times if t in picked]


def luma(image_bgr: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma of a BGR frame, float64 (H, W)."""
    b, g, r = (image_bgr[..., i].astype(np.float64) for i in range(3))
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


# --------------------------------------------------------------------------------------------------
# Masters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MasterSpec:
    """How to build a test master from the real clips: size, rate, length and mezzanine quality."""

    width: int = 960
    height: int = 540
    fps: int = 25
    seconds: float = 184.0
    crf: int = 16
    clips: tuple[str, ...] = tuple(MASTER_CLIPS)

    @property
    def name(self) -> str:
        return f"master_{self.height}p{self.fps}_{int(self.seconds)}s_{short_hash(self)}"


QUICK_MASTER = MasterSpec(width=480, height=270, fps=25, seconds=48.0, crf=18,
                          clips=("squirrel_720p25_10s.mp4", "tears_of_steel_360p24_10s.mp4",
                                 "bbb_0-30s_720p24.webm"))


def master_passes(spec: MasterSpec) -> int:
    """How many passes over the clips the master needs to last `spec.seconds` (at least two)."""
    clips_seconds = sum(probe(TESTDATA / clip).duration for clip in spec.clips)
    passes = max(2, math.ceil(spec.seconds / clips_seconds))
    if passes > len(MASTER_PASS_FLIPS):
        raise ValueError(f"a {spec.seconds:g} s master needs {passes} passes over {clips_seconds:.0f} s of "
                         f"clips; only {len(MASTER_PASS_FLIPS)} distinct flips exist")
    return passes


def master_command(spec: MasterSpec, out_path: Path) -> list[str]:
    """The ffmpeg command that builds the master: every clip scaled and padded to one size and rate,
    concatenated, then again in each further pass flipped differently, cut to `spec.seconds`."""
    require_testdata()
    passes = master_passes(spec)
    inputs: list[str] = []
    chains: list[str] = []
    norm = (
        f"scale={spec.width}:{spec.height}:force_original_aspect_ratio=decrease:flags=lanczos,"
        f"pad={spec.width}:{spec.height}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={spec.fps},format=yuv420p"
    )
    # Pass 0 is the clip as shot ([p]); passes 1, 2, 3 are [f], [v], [b] after their flip.
    pass_labels = ("p", "f", "v", "b")[:passes]
    for index, clip in enumerate(spec.clips):
        inputs += ["-i", str(TESTDATA / clip)]
        copies = "".join(f"[{label}{index}]" for label in ("p", "m", "n", "o")[:passes])
        chains.append(f"[{index}:v]{norm},split={passes}{copies}")
    for number, (source, label) in enumerate(zip(("m", "n", "o"), pass_labels[1:]), start=1):
        for index in range(len(spec.clips)):
            chains.append(f"[{source}{index}]{MASTER_PASS_FLIPS[number]}[{label}{index}]")
    labels = [f"{label}{index}" for label in pass_labels for index in range(len(spec.clips))]
    concat = "".join(f"[{label}]" for label in labels) + f"concat=n={len(labels)}:v=1:a=0[cat]"
    chains.append(concat)
    chains.append(f"[cat]trim=duration={spec.seconds},setpts=PTS-STARTPTS[out]")
    return [
        FFMPEG, "-y", "-hide_banner", "-loglevel", "error", *inputs,
        "-filter_complex", ";".join(chains), "-map", "[out]",
        "-c:v", "libx264", "-preset", "medium", "-crf", str(spec.crf), "-pix_fmt", "yuv420p",
        "-r", str(spec.fps), "-an", "-movflags", "+faststart", str(out_path),
    ]


def build_master(spec: MasterSpec) -> Path:
    """Build (or reuse) the master described by `spec`; return its path under bench/out/."""
    out_path = OUT / "masters" / f"{spec.name}.mp4"
    return cached(out_path, master_command(spec, out_path), what="build master")


def plain_encode(src: Path, out_path: Path, *, crf: int = 18, preset: str = "medium",
                 gop: int | None = None) -> Path:
    """Encode `src` with plain libx264 (the 'unmarked encode of the master'), cached."""
    cmd = [FFMPEG, "-y", "-hide_banner", "-loglevel", "error", "-i", str(src),
           "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if gop:
        cmd += ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    cmd += ["-an", str(out_path)]
    return cached(out_path, cmd, what="plain encode")


# --------------------------------------------------------------------------------------------------
# Attacks
# --------------------------------------------------------------------------------------------------

# Pirate re-encodes use fast presets: the CRF sets the damage, and the whole suite has to run on
# two shared cores.
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]


def _x264(crf: int) -> list[str]:
    return [*X264, "-crf", str(crf)]


@dataclass(frozen=True)
class Attack:
    """One pirate transformation: a video filter chain and an encoder, applied by one ffmpeg call.

    `copies` is 1 for a single leaker and 2 or 3 for collusion (`combine` says how the copies are
    merged: "average" = pixel mean, "mix" = alternating whole segments of `segment_seconds`).
    """

    name: str
    vf: str = ""
    codec: tuple[str, ...] = tuple(_x264(23))
    ext: str = "mp4"
    copies: int = 1
    combine: str = ""
    segment_seconds: tuple[float, ...] = field(default_factory=tuple)
    keeps_timing: bool = True  # frame i of the leak shows frame i of the source (no rate change)
    out_fps: float | None = None  # the leak's frame rate when it changes


def attack_suite() -> list[Attack]:
    """The attacks of the issue's "How it is shown", in table order (single leaker, then collusion)."""
    return [
        Attack("H.264 CRF 23", codec=tuple(_x264(23))),
        Attack("H.264 CRF 30", codec=tuple(_x264(30))),
        Attack("H.264 CRF 35", codec=tuple(_x264(35))),
        Attack("H.265 CRF 32", codec=("-c:v", "libx265", "-preset", "veryfast", "-crf", "32",
                                      "-x265-params", "log-level=error", "-tag:v", "hvc1",
                                      "-pix_fmt", "yuv420p")),
        Attack("VP9 CRF 36", codec=("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "36",
                                    "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1",
                                    "-pix_fmt", "yuv420p"), ext="webm"),
        Attack("352p + CRF 30", vf="scale=-2:352:flags=bicubic", codec=tuple(_x264(30))),
        Attack("360p + CRF 30", vf="scale=-2:360:flags=bicubic", codec=tuple(_x264(30))),
        Attack("crop 10 %/side + rescale", vf="crop=iw*0.8:ih*0.8:iw*0.1:ih*0.1,scale=iw/0.8:ih/0.8"),
        Attack("brightness +20, contrast x1.3", vf="lutyuv=y='clip(1.3*(val-128)+128+20,0,255)'"),
        Attack("gamma 0.8", vf="eq=gamma=0.8"),
        Attack("25 -> 30 fps", vf="fps=30", keeps_timing=False, out_fps=30.0),
    ]


def collusion_suite(seconds: float) -> list[Attack]:
    """Averaging of two copies and segment-wise mixing of two and three copies (then H.264 CRF 23)."""
    return [
        Attack("average of 2 copies", copies=2, combine="average"),
        Attack("mix of 2 copies (10-20 s segments)", copies=2, combine="mix",
               segment_seconds=mixing_segments(seconds, seed=2)),
        Attack("mix of 3 copies (10-20 s segments)", copies=3, combine="mix",
               segment_seconds=mixing_segments(seconds, seed=3)),
    ]


def mixing_segments(seconds: float, *, seed: int, low: float = 10.0, high: float = 20.0) -> tuple[float, ...]:
    """Segment lengths (s) drawn uniformly in [low, high) that cover `seconds`; fixed by `seed`."""
    rng = np.random.default_rng(seed)
    lengths: list[float] = []
    while sum(lengths) < seconds:
        lengths.append(round(float(rng.uniform(low, high)), 2))
    return tuple(lengths)


def segment_owners(segments: tuple[float, ...], copies: int) -> list[tuple[float, float, int]]:
    """(start s, end s, copy index) per segment: copies take turns, 0, 1, (2,) 0, 1, ..."""
    spans = []
    start = 0.0
    for index, length in enumerate(segments):
        spans.append((start, start + length, index % copies))
        start += length
    return spans


def attack_command(attack: Attack, sources: list[Path], out_path: Path, *,
                   start: float = 0.0, duration: float | None = None) -> list[str]:
    """The ffmpeg command applying `attack` to `sources` (one per copy), optionally to the excerpt
    [start, start + duration) of each, writing `out_path`."""
    if len(sources) != attack.copies:
        raise ValueError(f"{attack.name} needs {attack.copies} copies, got {len(sources)}")
    cut: list[str] = []
    if start:
        cut += ["-ss", f"{start:.3f}"]
    if duration is not None:
        cut += ["-t", f"{duration:.3f}"]
    inputs: list[str] = []
    for source in sources:
        inputs += [*cut, "-i", str(source)]
    if attack.copies == 1:
        video = ["-vf", attack.vf] if attack.vf else []
        return [FFMPEG, "-y", "-hide_banner", "-loglevel", "error", *inputs, *video, *attack.codec,
                "-an", str(out_path)]
    graph: list[str] = []
    if attack.combine == "average":
        # Pixel mean of the copies, frame by frame (they share timestamps).
        graph.append("[0:v][1:v]blend=all_mode=average[v0]")
    elif attack.combine == "mix":
        # Copy 0 is the base; each other copy is overlaid (opaque, same size, same timestamps, so
        # its pixels replace the base exactly) during the segments it owns.
        spans = segment_owners(attack.segment_seconds, attack.copies)
        last = "0:v"
        for copy in range(1, attack.copies):
            owned = "+".join(f"between(t,{a:.3f},{b - 0.001:.3f})" for a, b, owner in spans if owner == copy)
            label = "v0" if copy == attack.copies - 1 else f"m{copy}"
            graph.append(f"[{last}][{copy}:v]overlay=enable='{owned}'[{label}]")
            last = label
    else:
        raise ValueError(f"unknown way to combine copies: {attack.combine!r}")
    if attack.vf:
        graph[-1] = graph[-1][: -len("[v0]")] + f"[c];[c]{attack.vf}[v0]"
    return [
        FFMPEG, "-y", "-hide_banner", "-loglevel", "error", *inputs,
        "-filter_complex", ";".join(graph), "-map", "[v0]", *attack.codec, "-an", str(out_path),
    ]


def apply_attack(attack: Attack, sources: list[Path], out_path: Path, *,
                 start: float = 0.0, duration: float | None = None) -> tuple[Path, float]:
    """Apply `attack` (cached); return the leak's path and the seconds the ffmpeg call took (0 if cached)."""
    cmd = attack_command(attack, sources, out_path, start=start, duration=duration)
    began = time.perf_counter()
    cached(out_path.with_suffix("." + attack.ext), [*cmd[:-1], str(out_path.with_suffix("." + attack.ext))],
           what=attack.name)
    return out_path.with_suffix("." + attack.ext), time.perf_counter() - began


def slug(text: str) -> str:
    """A file-name-safe form of an attack name."""
    keep = [c.lower() if c.isalnum() else "_" for c in text]
    return "_".join(part for part in "".join(keep).split("_") if part)
