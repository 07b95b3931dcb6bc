"""Speed of the engine, each number a ratio against a plain baseline measured in the same run.

1. prepare / one plain `ffmpeg -c:v libx264` encode of the same rendition with the same preset,
   CRF and GOP, in wall time (target <= 2.3) and in CPU time, the process's and its children's
   (target <= 1.3; a figure that does not depend on the core count: prepare encodes once, then
   re-encodes every intra picture four times and decodes each position five times to measure the
   marks); and the parallel efficiency of the chunked prepare, T1 / (2 x T2) with the wall times of
   `--workers 1` and `--workers 2`;
2. copy assembly throughput / plain file copy of the same number of bytes (target >= 0.5);
3. trace / `ffmpeg` just decoding the leak (target <= 2);
4. scoring 10^6 candidates over a 3600-position title (target < 30 s).

The machine is shared, so each baseline is measured next to its engine step: the plain encode
after each of two prepares, the leak decode before each of three traces (ratios of medians), and
copies are repeated (median).

    .venv/bin/python -m bench.speed            # full run, writes BENCHMARKS.md
    .venv/bin/python -m bench.speed --quick    # tiny inputs, seconds, no write
    .venv/bin/python -m bench.speed --quick --write   # tiny inputs, written (labelled quick) to BENCHMARKS.md
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import engine, media, report

TARGETS = {"prepare": 2.3, "prepare_cpu": 1.3, "copy": 0.5, "trace": 2.0, "scoring_seconds": 30.0}


@dataclass(frozen=True)
class Config:
    master: media.MasterSpec
    copy_repeats: int
    trace_tags: int
    trace_repeats: int
    prepare_repeats: int
    scoring_candidates: int
    scoring_positions: int
    position_seconds: float


# The quick master is short, so it uses 1 s positions: enough of them for the trace to accuse.
FULL = Config(master=media.MasterSpec(), copy_repeats=5, trace_tags=100, trace_repeats=3, prepare_repeats=2,
              scoring_candidates=1_000_000, scoring_positions=3600, position_seconds=2.0)
QUICK = Config(master=media.QUICK_MASTER, copy_repeats=3, trace_tags=10, trace_repeats=1, prepare_repeats=1,
               scoring_candidates=10_000, scoring_positions=360, position_seconds=1.0)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children, theirs included once reaped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain_x264_seconds(master: Path, out_path: Path, manifest: dict) -> float:
    """One plain ffmpeg libx264 encode of the master with the title's preset, CRF and GOP."""
    enc = manifest["encoder"]
    gop = manifest["frames_per_position"]
    cmd = [media.FFMPEG, "-y", "-hide_banner", "-loglevel", "error", "-i", str(master),
           "-c:v", "libx264", "-preset", enc["preset"], "-crf", str(enc["crf"]),
           "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-pix_fmt", "yuv420p",
           "-an", str(out_path)]
    return media.run(cmd, what="plain x264 encode")


def measure_prepare(master: Path, workdir: Path, position_seconds: float, repeats: int) -> dict:
    """Prepare with the default settings and a plain encode of the same rendition and settings,
    alternately, `repeats` times each, in wall and CPU time; the ratios are of the medians."""
    outdir = workdir / "title"
    prepares, plain, prepare_cpu, plain_cpu = [], [], [], []
    for run in range(repeats):
        shutil.rmtree(outdir, ignore_errors=True)
        log(f"prepare {run + 1}/{repeats} (engine defaults) ...")
        began = children_cpu_seconds()
        prepares.append(engine.prepare(master, outdir, position_seconds=position_seconds))
        manifest = json.loads((outdir / "manifest.json").read_text())
        # the worker processes are the fork server's children, not reaped into ours: they report their own
        prepare_cpu.append(children_cpu_seconds() - began + manifest["worker_cpu_seconds"])
        log(f"plain x264 encode {run + 1}/{repeats} ...")
        began = children_cpu_seconds()
        plain.append(plain_x264_seconds(master, workdir / "plain.mp4", manifest))
        plain_cpu.append(children_cpu_seconds() - began)
    prepare_s, plain_s = statistics.median(prepares), statistics.median(plain)
    prepare_cpu_s, plain_cpu_s = statistics.median(prepare_cpu), statistics.median(plain_cpu)
    return {"outdir": outdir, "manifest": manifest, "prepare_s": prepare_s, "prepare_runs": prepares,
            "plain_s": plain_s, "plain_runs": plain, "ratio": prepare_s / plain_s,
            "prepare_cpu_s": prepare_cpu_s, "prepare_cpu_runs": prepare_cpu, "plain_cpu_s": plain_cpu_s,
            "plain_cpu_runs": plain_cpu, "cpu_ratio": prepare_cpu_s / plain_cpu_s}


def measure_workers(master: Path, workdir: Path, position_seconds: float, repeats: int) -> dict:
    """Wall time of prepare with one worker and with two, alternately, `repeats` times each;
    parallel efficiency = T1 / (2 x T2) of the medians (1: two workers take half the time)."""
    outdir = workdir / "title-workers"
    runs: dict[int, list[float]] = {1: [], 2: []}
    for run in range(repeats):
        for workers in runs:
            shutil.rmtree(outdir, ignore_errors=True)
            log(f"prepare --workers {workers} ({run + 1}/{repeats}) ...")
            runs[workers].append(engine.prepare(master, outdir, position_seconds=position_seconds, workers=workers))
    t1, t2 = statistics.median(runs[1]), statistics.median(runs[2])
    return {"t1_s": t1, "t2_s": t2, "runs": runs, "efficiency": t1 / (2 * t2),
            "chunks": len(json.loads((outdir / "manifest.json").read_text())["chunks"])}


def measure_copy(outdir: Path, workdir: Path, repeats: int) -> dict:
    """Median time of write_copy for a tag against shutil.copyfile of a file of the same size."""
    from leaktrace.autograph.assemble import TagCopy, write_copy

    size = TagCopy(outdir, "speed-viewer-0").size
    same_size = workdir / "same-size.bin"
    with same_size.open("wb") as fh:
        fh.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    copy_runs, plain_runs = [], []
    for i in range(repeats):
        # Alternate, so both see the same page-cache and machine-load conditions.
        began = time.perf_counter()
        write_copy(outdir, f"speed-viewer-{i}", workdir / "copy.mp4")
        copy_runs.append(time.perf_counter() - began)
        began = time.perf_counter()
        shutil.copyfile(same_size, workdir / "plain-copy.bin")
        plain_runs.append(time.perf_counter() - began)
    copy_s, plain_s = statistics.median(copy_runs), statistics.median(plain_runs)
    return {"bytes": size, "copy_s": copy_s, "plain_s": plain_s,
            "copy_mb_s": size / copy_s / 1e6, "plain_mb_s": size / plain_s / 1e6,
            "ratio": plain_s / copy_s}


def measure_trace(master: Path, outdir: Path, workdir: Path, n_tags: int, repeats: int) -> dict:
    """Trace an H.264 CRF 23 re-encode of a copy (whole title) against `n_tags` real tags, `repeats`
    times, each run after an ffmpeg decode of the same leak; the ratio is of the medians."""
    tags = [f"speed-viewer-{i}" for i in range(n_tags)]
    copy = workdir / "leak-source.mp4"
    engine.copy(outdir, tags[0], copy)
    leak, _ = media.apply_attack(media.attack_suite()[0], [copy], workdir / "leak")
    decode_cmd = [media.FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(leak), "-f", "null", "-"]
    decodes, traces = [], []
    for run in range(repeats):
        decodes.append(media.run(decode_cmd, what="decode leak"))
        log(f"trace {run + 1}/{repeats} ...")
        result = engine.trace(leak, outdir, tags, tags_file=workdir / "tags.txt")
        traces.append(result.seconds)
    decode_s, trace_s = statistics.median(decodes), statistics.median(traces)
    return {"leak_seconds": media.probe(leak).duration, "trace_s": trace_s, "decode_s": decode_s,
            "trace_runs": traces, "decode_runs": decodes,
            "ratio": trace_s / decode_s, "accused": result.accused_tags, "true_tag": tags[0],
            "stages": result.raw.get("seconds", {})}


def measure_scoring(n_candidates: int, n_positions: int) -> dict:
    """Score `n_candidates` keyed tags (as the service does: every tag that obtained a copy, codeword
    generation included) over `n_positions` positions read from one of them with 5 % of the
    positions wrong and 5 % erased."""
    from leaktrace.autograph import code

    key = bytes(range(32))
    tags = [f"viewer-{i:07d}" for i in range(n_candidates)]
    leaker = tags[n_candidates // 3]
    rng = np.random.default_rng(7)
    symbols = code.codeword(key, leaker, n_positions).astype(np.int8)
    flip = rng.random(n_positions) < 0.05
    symbols[flip] = 1 - symbols[flip]
    symbols[rng.random(n_positions) < 0.05] = code.SYMBOL_ERASED
    z = np.where(symbols[:, None] == np.arange(2)[None, :], 20.0, 0.0).astype(np.float32)
    z[symbols < 0] = 0.0
    began = time.perf_counter()
    verdict = code.accuse(code.Observations(symbols=symbols, z=z), key=key, tags=tags)
    seconds = time.perf_counter() - began
    accused = [a.tag for a in verdict.accused]
    return {"n_candidates": n_candidates, "n_positions": n_positions, "seconds": seconds,
            "accused": accused, "leaker": leaker,
            "how": (f"`code.accuse` with {n_candidates:,} keyed tags (codeword generation included) on "
                    f"{n_positions} positions read from {leaker}'s copy with 5 % flipped and 5 % erased; "
                    f"accused {accused}")}


def main(argv: list[str] | None = None) -> int:
    args = report.parse_run_options(argv, description=__doc__.split("\n\n")[0], quick_help="tiny inputs, no BENCHMARKS.md write")
    config = QUICK if args.quick else FULL
    media.require_testdata()
    missing = engine.missing_commands()
    if missing:
        print(f"engine not ready: `leaktrace autograph {'|'.join(missing)}` missing", file=sys.stderr)
        return 2
    workdir = media.OUT / ("speed-quick" if args.quick else "speed")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)

    master = media.build_master(config.master)
    info = media.probe(master)
    prep = measure_prepare(master, workdir, config.position_seconds, config.prepare_repeats)
    par = measure_workers(master, workdir, config.position_seconds, config.prepare_repeats)
    copy = measure_copy(prep["outdir"], workdir, config.copy_repeats)
    tr = measure_trace(master, prep["outdir"], workdir, config.trace_tags, config.trace_repeats)
    log(f"scoring {config.scoring_candidates:,} candidates x {config.scoring_positions} positions ...")
    sc = measure_scoring(config.scoring_candidates, config.scoring_positions)

    enc = prep["manifest"]["encoder"]
    rows = [
        ["prepare / plain x264 encode",
         f"{prep['prepare_s']:.1f} s / {prep['plain_s']:.1f} s (medians of {config.prepare_repeats}, alternating: prepare "
         f"{', '.join(f'{x:.1f}' for x in prep['prepare_runs'])}, plain {', '.join(f'{x:.1f}' for x in prep['plain_runs'])})",
         f"{prep['ratio']:.2f}", f"<= {TARGETS['prepare']}", _verdict(prep["ratio"] <= TARGETS["prepare"])],
        ["prepare / plain x264 encode, CPU time",
         f"{prep['prepare_cpu_s']:.1f} s / {prep['plain_cpu_s']:.1f} s CPU, processes and children (medians of "
         f"{config.prepare_repeats}: prepare {', '.join(f'{x:.1f}' for x in prep['prepare_cpu_runs'])}, plain "
         f"{', '.join(f'{x:.1f}' for x in prep['plain_cpu_runs'])})",
         f"{prep['cpu_ratio']:.2f}", f"<= {TARGETS['prepare_cpu']}", _verdict(prep["cpu_ratio"] <= TARGETS["prepare_cpu"])],
        ["parallel efficiency, T1 / (2 x T2)",
         f"{par['t1_s']:.1f} s with 1 worker / {par['t2_s']:.1f} s with 2 ({par['chunks']} chunks; medians of "
         f"{config.prepare_repeats}: 1 worker {', '.join(f'{x:.1f}' for x in par['runs'][1])}, 2 workers "
         f"{', '.join(f'{x:.1f}' for x in par['runs'][2])})",
         f"{par['efficiency']:.2f}", "reported", "info"],
        ["copy throughput / plain file copy",
         f"{copy['copy_mb_s']:.0f} MB/s / {copy['plain_mb_s']:.0f} MB/s ({copy['bytes'] / 1e6:.1f} MB, median of {config.copy_repeats})",
         f"{copy['ratio']:.2f}", f">= {TARGETS['copy']}", _verdict(copy["ratio"] >= TARGETS["copy"])],
        ["trace / ffmpeg decode of the leak",
         f"{tr['trace_s']:.1f} s / {tr['decode_s']:.1f} s (medians of {config.trace_repeats}: trace "
         f"{', '.join(f'{x:.1f}' for x in tr['trace_runs'])}, decode {', '.join(f'{x:.1f}' for x in tr['decode_runs'])}; "
         f"{tr['leak_seconds']:.0f} s leak, {config.trace_tags} tags; last run's stages "
         f"{', '.join(f'{k} {v:.1f}' for k, v in tr['stages'].items())})",
         f"{tr['ratio']:.2f}", f"<= {TARGETS['trace']}", _verdict(tr["ratio"] <= TARGETS["trace"])],
        [f"scoring {sc['n_candidates']:,} candidates x {sc['n_positions']} positions",
         f"{sc['seconds']:.1f} s", f"{sc['seconds']:.1f} s", f"< {TARGETS['scoring_seconds']:g} s",
         _verdict(sc["seconds"] < TARGETS["scoring_seconds"])],
    ]
    table = report.markdown_table(["measure", "engine / baseline", "ratio", "target", "result"], rows)
    body = (f"Input: the robustness master, {info.width}x{info.height}, {float(info.fps):g} fps, "
            f"{info.duration:.0f} s, {info.frames} frames. Prepare with the engine defaults "
            f"(libx264 preset {enc['preset']}, CRF {enc['crf']}, {prep['manifest']['frames_per_position']}-frame "
            f"closed GOPs, {config.position_seconds:g} s positions); the plain encode is the ffmpeg CLI with the same preset, CRF and GOP, "
            f"run after each prepare. Copy: `assemble.write_copy` against `shutil.copyfile` of a file of the "
            f"same size. Trace: the CLI (`leaktrace autograph trace --json`, process start included) on an "
            f"H.264 CRF 23 re-encode of a copy; accused {tr['accused']} (true {tr['true_tag']}). Decode "
            f"baseline: `ffmpeg -i LEAK -f null -`, run before each trace. Scoring: {sc['how']}.\n\n{table}")
    print(body)
    failures = [row[0] for row in rows if row[-1] == "MISSED"]
    if args.json_out:
        args.json_out.write_text(json.dumps({"prepare": {k: v for k, v in prep.items() if k not in ("outdir", "manifest")},
                                             "workers": par, "copy": copy, "trace": tr, "scoring": sc,
                                             "failures": failures},
                                            indent=1, default=str))
    if (args.write or not args.quick) and not args.no_write:
        title = "Speed: ratios against plain baselines" + (" (quick run: the small master)" if args.quick else "")
        report.write_section("speed", title=title, body=body,
                             command=report.command_line("bench.speed"))
    if failures:
        print("TARGETS MISSED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
