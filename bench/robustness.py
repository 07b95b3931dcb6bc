"""Robustness of tracing: attack suite, collusion, null test and the invisible-watermark peer.

What it does, top to bottom:

1. builds a >= 3 min master from the real clips in ../shared/testdata (bench/media.py);
2. prepares it twice with our engine: 2 s positions and 1 s positions;
3. makes copies for several tags and, for every single-leaker attack, cuts an excerpt at an odd
   start time (120 s of the 2 s-position title, 60 s of the 1 s-position title), applies the attack
   and traces the leak with `--simulate-tags 1000000` plus every real tag;
4. collusion on the full 2 s-position master: pixel average of two copies, segment-wise mixing of
   two and of three copies;
5. null test: the unmarked encode of the master and another title against >= 10,000 innocent
   tags, plus the empirical innocent score distribution against the bound;
6. the peer (invisible-watermark dwtDctSvd and rivaGan) through the same attacks (bench/peers.py).

Targets (exit status 1 and the failing ones named when missed): the right tag accused in every
single-leaker case, at least one colluder accused in every collusion case, zero innocent tags
accused anywhere.

    .venv/bin/python -m bench.robustness            # full run, writes BENCHMARKS.md (~1 h)
    .venv/bin/python -m bench.robustness --quick    # tiny inputs, a minute or two, no write
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from bench import engine, media, peers, report


@dataclass(frozen=True)
class Profile:
    """One prepared title and the excerpt its single-leaker cases are cut to (None = whole)."""

    name: str
    position_seconds: float
    excerpt_start: float | None
    excerpt_seconds: float | None


@dataclass(frozen=True)
class Config:
    master: media.MasterSpec
    profiles: tuple[Profile, ...]
    attacks: tuple[media.Attack, ...]
    collusion: tuple[media.Attack, ...]
    tags_per_title: int
    simulate_tags: int
    null_tags: int
    peer_samples: int
    peer_window_seconds: float
    peer_attacks: tuple[media.Attack, ...]


def full_config() -> Config:
    spec = media.MasterSpec()
    attacks = tuple(media.attack_suite())
    return Config(
        master=spec,
        profiles=(Profile("2 s", 2.0, 31.37, 120.0), Profile("1 s", 1.0, 97.61, 60.0)),
        attacks=attacks,
        collusion=tuple(media.collusion_suite(spec.seconds)),
        tags_per_title=8,
        simulate_tags=1_000_000,
        null_tags=10_000,
        peer_samples=6,
        peer_window_seconds=2.0,
        peer_attacks=attacks,
    )


def quick_config() -> Config:
    spec = media.QUICK_MASTER
    crf30 = media.attack_suite()[1]
    return Config(
        master=spec,
        profiles=(Profile("1 s", 1.0, None, None),),
        attacks=(crf30,),
        collusion=(),
        tags_per_title=3,
        simulate_tags=1000,
        null_tags=1000,
        peer_samples=1,
        peer_window_seconds=0.4,
        peer_attacks=(crf30,),
    )


@dataclass
class Case:
    """One traced leak and its verdict."""

    kind: str  # "single", "collusion" or "null"
    profile: str
    attack: str
    true_tags: list[str]
    accused: list[dict] = field(default_factory=list)  # {"tag", "log10_bound", "score"}
    positions_observed: int | None = None
    runner_up: dict | None = None
    trace_seconds: float = float("nan")
    attack_seconds: float = float("nan")
    leak_seconds: float = float("nan")
    ok: bool = False
    innocents_accused: list[str] = field(default_factory=list)
    error: str = ""
    leak_path: str = ""
    reason: str = ""
    positions: list[dict] = field(default_factory=list)  # per observed position: zA, zB, symbol (trace --json)


# Marked leaks whose innocents also go through the empirical bound check (names from media).
NULL_MARKED_LEAKS = ("H.264 CRF 30", "average of 2 copies", "mix of 3 copies (10-20 s segments)")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Our engine
# --------------------------------------------------------------------------------------------------


def title_tags(profile: Profile, count: int) -> list[str]:
    """The real tags (viewers) that get a copy of one prepared title."""
    return [f"viewer-{profile.name.replace(' ', '')}-{i:02d}" for i in range(count)]


def trace_case(case: Case, leak: Path, outdir: Path, tags: list[str], *, simulate: int,
               workdir: Path) -> Case:
    """Trace `leak` against every real tag plus `simulate` innocents and fill in the verdict."""
    case.leak_path = str(leak)
    try:
        tags_file = workdir / "tags" / f"{case.kind}-{case.profile.replace(' ', '')}-{media.slug(case.attack)}.txt"
        tags_file.parent.mkdir(parents=True, exist_ok=True)
        result = engine.trace(leak, outdir, tags, simulate_tags=simulate, tags_file=tags_file)
    except engine.EngineError as exc:
        case.error = str(exc).splitlines()[-1][:200]
        log(f"trace failed: {case.attack}: {exc}")
        return case
    case.accused = [asdict(a) for a in result.accused]
    case.positions_observed = result.positions_observed
    case.runner_up = asdict(result.runner_up) if result.runner_up else None
    case.trace_seconds = result.seconds
    case.reason = str(result.raw.get("reason", ""))
    case.positions = list(result.raw.get("positions", []))
    accused = set(result.accused_tags)
    case.innocents_accused = sorted(accused - set(case.true_tags))
    if case.kind == "single":
        case.ok = case.true_tags[0] in accused and not case.innocents_accused
    elif case.kind == "collusion":
        case.ok = bool(accused & set(case.true_tags)) and not case.innocents_accused
    else:
        case.ok = not accused
    return case


@dataclass
class Title:
    """One prepared title of the run, its real tags and the copies made so far."""

    profile: Profile
    outdir: Path
    tags: list[str]
    copies_dir: Path
    copies: dict[str, Path] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def copy_of(self, tag: str) -> Path:
        """The tag's copy (written once with `leaktrace autograph copy`)."""
        with self.lock:
            if tag not in self.copies:
                path = self.copies_dir / f"{tag}.mp4"
                engine.copy(self.outdir, tag, path)
                self.copies[tag] = path
            return self.copies[tag]


def run_engine_cases(config: Config, master: Path, workdir: Path, *, deadline: float, jobs: int = 1,
                     kinds: frozenset[str] = frozenset({"single", "collusion", "null"}),
                     titles_from: Path | None = None, attack_order: list[int] | None = None
                     ) -> tuple[list[Case], dict]:
    """Prepare each profile, then run the single-leaker cases (attack by attack, alternating the
    titles), the collusion cases and the null cases, `jobs` at a time (each case is ffmpeg and
    `leaktrace` subprocesses). Cases not started before `deadline` (time.time()) are recorded as
    not run. Progress is saved to workdir/cases.json after each case. With `titles_from`, the
    titles prepared by an earlier or concurrent run in that folder are used instead of preparing."""
    facts: dict = {"prepare_seconds": {}}
    titles: list[Title] = []

    def prepare(profile: Profile) -> Title:
        outdir = workdir / f"title-{profile.name.replace(' ', '')}"
        log(f"prepare {profile.name} positions ...")
        facts["prepare_seconds"][profile.name] = engine.prepare(
            master, outdir, position_seconds=profile.position_seconds)
        log(f"prepared {profile.name} positions in {facts['prepare_seconds'][profile.name]:.0f} s")
        return Title(profile, outdir, title_tags(profile, config.tags_per_title), workdir / "copies")

    if titles_from is not None:
        titles = [Title(p, titles_from / f"title-{p.name.replace(' ', '')}", title_tags(p, config.tags_per_title),
                        workdir / "copies") for p in config.profiles]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            titles = list(pool.map(prepare, config.profiles))
    facts["null_title"] = str(titles[0].outdir)
    (workdir / "facts.json").write_text(json.dumps(facts, indent=1))

    plan: list[tuple[Case, Callable[[], tuple[Path, float]], Title, list[str], int]] = []
    for index in attack_order if attack_order is not None else range(len(config.attacks)):
        attack = config.attacks[index]
        for title in titles:
            p = title.profile
            tag = title.tags[index % len(title.tags)]
            leak = workdir / "leaks" / f"{p.name.replace(' ', '')}-{media.slug(attack.name)}"
            make = partial(_single_leak, attack, title, tag, leak)
            plan.append((Case("single", p.name, attack.name, [tag]), make, title, title.tags, config.simulate_tags))

    # Collusion on the whole master of the first (2 s) title, distinct colluders per case.
    first_title = titles[0]
    first = 0
    for attack in config.collusion:
        colluders = first_title.tags[first:first + attack.copies]
        first += attack.copies
        leak = workdir / "leaks" / f"{first_title.profile.name.replace(' ', '')}-{media.slug(attack.name)}"
        make = partial(_collusion_leak, attack, first_title, list(colluders), leak)
        plan.append((Case("collusion", first_title.profile.name, attack.name, list(colluders)), make,
                     first_title, first_title.tags, config.simulate_tags))

    # Null test: nothing of ours is in these leaks, so every candidate is innocent.
    unmarked = media.OUT / "masters" / f"{master.stem}-unmarked-crf23.mp4"
    other = media.TESTDATA / media.OTHER_TITLE_CLIP
    innocents = [f"innocent-{i:06d}" for i in range(config.null_tags)]
    plan.append((Case("null", first_title.profile.name, "unmarked encode of the master", []),
                 lambda: (media.plain_encode(master, unmarked, crf=23, preset="fast"), 0.0),
                 first_title, innocents, 0))
    plan.append((Case("null", first_title.profile.name, f"other title ({media.OTHER_TITLE_CLIP})", []),
                 lambda: (other, 0.0), first_title, innocents, 0))

    plan = [item for item in plan if item[0].kind in kinds]
    done: list[Case] = []
    lock = threading.Lock()

    def run(item: tuple[Case, Callable[[], tuple[Path, float]], Title, list[str], int]) -> Case:
        case, make_leak, title, tags, simulate = item
        if time.time() > deadline:
            case.error = "not run: time budget exhausted"
        else:
            log(f"{case.kind}: {case.profile} positions, {case.attack}, true {case.true_tags or 'none'}")
            try:
                leak_path, case.attack_seconds = make_leak()
                case.leak_seconds = media.probe(leak_path).duration
                trace_case(case, leak_path, title.outdir, tags, simulate=simulate, workdir=workdir)
            except Exception as exc:  # one broken case must not sink the others; it is reported
                case.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            log(f"  {case.attack} ({case.profile}) -> accused {[a['tag'] for a in case.accused]} "
                f"in {case.trace_seconds:.0f} s, ok={case.ok}{' ' + case.error if case.error else ''}")
        with lock:
            done.append(case)
            (workdir / "cases.json").write_text(json.dumps([asdict(c) for c in done], indent=1, default=str))
        return case

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        cases = list(pool.map(run, plan))  # in plan order
    return cases, facts


def _single_leak(attack: media.Attack, title: Title, tag: str, leak: Path) -> tuple[Path, float]:
    p = title.profile
    return media.apply_attack(attack, [title.copy_of(tag)], leak, start=p.excerpt_start or 0.0,
                              duration=p.excerpt_seconds)


def _collusion_leak(attack: media.Attack, title: Title, colluders: list[str], leak: Path) -> tuple[Path, float]:
    return media.apply_attack(attack, [title.copy_of(t) for t in colluders], leak)


def _tolerated(alpha: float, n: int) -> float:
    """Most innocents with bound <= alpha that a valid bound explains: alpha*n plus 4 binomial
    standard deviations (the bound caps the mean of a Binomial(n, <= alpha) count)."""
    return alpha * n + 4 * math.sqrt(alpha * (1 - alpha) * n) + 1


def null_distribution(outdir: Path, cases: list[Case], n_tags: int) -> list[list[object]]:
    """Empirical check of the bound: score `n_tags` innocent tags against the observations of each
    given case and count how many get a bound <= alpha. A valid bound keeps each count near or
    below alpha * n (it is an upper bound on the chance, so counts well below are expected).

    The observations are the per-position (zA, zB, symbol) that `trace --json` printed for the
    case (z rounded to 0.01), scored with `code.score_candidates`, the function `trace` uses."""
    from leaktrace.autograph import code, package

    title = package.load_title(outdir)
    n_positions = len(title.manifest["positions"])
    tags = [f"null-{i:06d}" for i in range(n_tags)]
    names = {"A": code.SYMBOL_A, "B": code.SYMBOL_B, "both": code.SYMBOL_BOTH, "erased": code.SYMBOL_ERASED}
    rows: list[list[object]] = []
    for case in cases:
        label = case.attack if case.kind == "null" else f"marked leak: {case.attack} ({case.profile} positions)"
        if not case.positions:
            rows.append([label, n_tags, "0", "-", "-", "-", "-", f"no observations ({case.reason or case.error})"])
            continue
        symbols = np.full(n_positions, code.SYMBOL_ERASED, dtype=np.int8)
        z = np.zeros((n_positions, 2), dtype=np.float32)
        for entry in case.positions:
            symbols[entry["position"]] = names[entry["symbol"]]
            z[entry["position"]] = (entry["zA"], entry["zB"])
        scores = code.score_candidates(code.Observations(symbols=symbols, z=z), key=title.key, tags=tags)
        log10 = scores.log_bound / math.log(10)
        counts = [int(np.sum(log10 <= math.log10(alpha))) for alpha in (1e-1, 1e-2, 1e-3)]
        single = int(np.sum((symbols == 0) | (symbols == 1)))
        rows.append([label, n_tags, f"{single} A/B, {int(np.sum(symbols == 2))} both",
                     f"{np.min(log10):.2f}",
                     f"{counts[0]} (<= {0.1 * n_tags:.0f})", f"{counts[1]} (<= {0.01 * n_tags:.0f})",
                     f"{counts[2]} (<= {0.001 * n_tags:.0f})",
                     "ok" if all(c <= _tolerated(a, n_tags) for c, a in zip(counts, (0.1, 0.01, 0.001)))
                     else "BOUND VIOLATED"])
    return rows


# --------------------------------------------------------------------------------------------------
# The peer
# --------------------------------------------------------------------------------------------------


PEER_PROTOCOL_VERSION = "peer-protocol-v1"  # bump when the peer measurement changes


def run_peer_comparison(config: Config, master: Path, *, cache_only: bool = False) -> dict:
    """Peer bit accuracy per method and attack. Every step is cached under bench/out/peers/ (keyed
    by master, sample frames, window and payload; each attack by its ffmpeg command), because
    rivaGan costs seconds per frame and an interrupted run should not start over."""
    info = media.probe(master)
    fps = float(info.fps)
    window = max(2, int(round(config.peer_window_seconds * fps)))
    samples = peers.sample_frames(info.frames, fps, config.peer_samples)
    bits = peers.payload()
    workdir = media.OUT / "peers" / f"peers-{media.short_hash(PEER_PROTOCOL_VERSION, master.name, samples, window, bits.tolist())}"
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"samples": samples, "window_frames": window, "methods": {}, "computed_at": []}
    reference = _sample_frames(master, samples)
    for method in peers.METHODS:
        clip = workdir / f"{method}.mp4"
        stats_file = workdir / f"{method}.stats.json"
        if cache_only and not stats_file.exists():
            continue
        if not (clip.exists() and stats_file.exists()):
            log(f"peer {method}: marking {len(samples)} sample frames")
            stats = peers.build_peer_clip(master, clip, method=method, bits=bits, samples=samples,
                                          window=window, progress=log)
            stats_file.write_text(json.dumps(stats))
        stats = json.loads(stats_file.read_text())
        rows: dict = {}
        for attack in (None, *config.peer_attacks):
            name = attack.name if attack else "no attack (distribution encode)"
            command = (media.attack_command(attack, [clip], Path("out." + attack.ext)) if attack else [])
            cell = workdir / f"{method}-{media.slug(name)}-{media.short_hash(command)}.json"
            if cache_only and not cell.exists():
                rows[name] = None
                continue
            if not cell.exists():
                log(f"peer {method}: {name}")
                leak = (media.apply_attack(attack, [clip], workdir / f"{method}-{media.slug(name)}")[0]
                        if attack else clip)
                read, decode_s = peers.read_peer_bits(leak, method=method, marked_frames=reference,
                                                      window=window, clip_fps=fps)
                accuracy, identified = peers.bit_accuracy(read, bits)
                cell.write_text(json.dumps({"accuracy": accuracy, "identified": identified,
                                            "decode_s_per_frame": decode_s,
                                            "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
            data = json.loads(cell.read_text())
            rows[name] = (data["accuracy"], data["identified"])
            results["computed_at"].append(data["at"])
            if attack is None:
                stats["decode_s_per_frame"] = data["decode_s_per_frame"]
        results["methods"][method] = {**stats, "attacks": rows}
    stamps = sorted(results["computed_at"]) or ["never"]
    results["computed_at"] = f"{stamps[0]} to {stamps[-1]}" if stamps[0] != stamps[-1] else stamps[0]
    return results


def _sample_frames(master: Path, samples: list[int]) -> list[np.ndarray]:
    """The master's sample frames, the reference for finding each sample in an attacked clip (the
    peer's mark is far too small to change which candidate frame is nearest)."""
    fps = float(media.probe(master).fps)
    return media.read_frames(master, times=[(f + 0.5) / fps for f in samples])


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _fmt_log10(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def engine_table(cases: list[Case], config: Config) -> str:
    headers = ["kind", "title", "attack", "leak s", "true tag(s)", "accused (log10 bound)",
               "positions observed", "runner-up (log10 bound)", "trace s", "result"]
    rows = []
    for c in cases:
        accused = ", ".join(f"{a['tag']} ({_fmt_log10(a['log10_bound'])})" for a in c.accused) or "none"
        runner = (f"{c.runner_up['tag']} ({_fmt_log10(c.runner_up['log10_bound'])})"
                  if c.runner_up else "-")
        title = c.profile + " positions"
        if c.kind == "single":
            profile = next(p for p in config.profiles if p.name == c.profile)
            if profile.excerpt_seconds:
                title += f", {profile.excerpt_seconds:g} s excerpt from {profile.excerpt_start:g} s"
        elif c.kind == "collusion":
            title += ", full master"
        true_tags = ", ".join(c.true_tags) if c.true_tags else f"none ({config.null_tags} innocents)"
        result = "ok" if c.ok else ("ERROR: " + c.error if c.error else "FAIL")
        if c.innocents_accused:
            result += f" (innocent accused: {', '.join(c.innocents_accused)})"
        rows.append([c.kind, title, c.attack, f"{c.leak_seconds:.1f}", true_tags, accused,
                     c.positions_observed if c.positions_observed is not None else "n/a", runner,
                     f"{c.trace_seconds:.1f}", result])
    return report.markdown_table(headers, rows)


def _ours(case: Case) -> str:
    """'yes (log10 bound of the true tag)' / 'NO' / 'not run' for one single-leaker case."""
    if case.error:
        return "not run" if case.error.startswith("not run") else "error"
    bound = next((a["log10_bound"] for a in case.accused if a["tag"] == case.true_tags[0]), None)
    return f"yes ({_fmt_log10(bound)})" if bound is not None else "NO"


def peer_table(peer: dict, cases: list[Case]) -> str:
    """Peer bit accuracy per attack, beside our single-leaker results for the same attack."""
    methods = list(peer["methods"])
    if not methods:
        return "Peer not measured in this run (no cached peer results)."
    headers = ["attack", *[f"{m} bit acc. (ID by vote)" for m in methods],
               "ours: right tag accused (2 s pos / 120 s | 1 s pos / 60 s)"]
    attacks = list(next(iter(peer["methods"].values()))["attacks"])
    rows = []
    for attack in attacks:
        ours = [c for c in cases if c.kind == "single" and c.attack == attack]
        ours_text = " | ".join(_ours(c) for c in ours) or "-"
        cells = []
        for m in methods:
            cell = peer["methods"][m]["attacks"].get(attack)
            cells.append("not measured (time)" if cell is None else f"{cell[0]:.2f} ({'yes' if cell[1] else 'no'})")
        rows.append([attack, *cells, ours_text])
    missing = [m for m in peers.METHODS if m not in methods]
    if missing:
        rows.append([f"({', '.join(missing)}: not measured in time)", *["" for _ in methods], ""])
    stats = [[m, f"{s['psnr_y']:.1f}", f"{s['psnr_rgb']:.1f}", f"{s['embed_s_per_frame']:.2f}",
              f"{s.get('decode_s_per_frame', float('nan')):.2f}"] for m, s in peer["methods"].items()]
    return (report.markdown_table(headers, rows) + "\n\n"
            + report.markdown_table(["method", "Y-PSNR dB", "RGB PSNR dB", "embed s/frame", "decode s/frame"],
                                    stats))


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def merge_cases(runs: list[list[Case]]) -> list[Case]:
    """Cases of several runs in report order (single, collusion, null); where two runs hold the
    same case, the one that ran wins over a "not run" placeholder."""
    merged: dict[tuple[str, str, str], Case] = {}
    for case in (c for run in runs for c in run):
        key = (case.kind, case.profile, case.attack)
        if key not in merged or merged[key].error.startswith("not run"):
            merged[key] = case
    order = {"single": 0, "collusion": 1, "null": 2}
    return sorted(merged.values(), key=lambda c: order[c.kind])  # stable: plan order within a kind


def check_targets(cases: list[Case]) -> list[str]:
    """The targets that failed, in words (empty when all hold)."""
    failures = []
    for c in cases:
        if c.kind == "single" and not any(a["tag"] == c.true_tags[0] for a in c.accused):
            failures.append(f"single leaker not accused: {c.profile} positions, {c.attack} "
                            f"(tag {c.true_tags[0]}{', error: ' + c.error if c.error else ''})")
        if c.kind == "collusion" and not set(a["tag"] for a in c.accused) & set(c.true_tags):
            failures.append(f"no colluder accused: {c.attack}{' (error: ' + c.error + ')' if c.error else ''}")
        if c.kind == "null" and c.error:
            failures.append(f"null test could not run: {c.attack}: {c.error}")
        innocents = [a["tag"] for a in c.accused if a["tag"] not in c.true_tags]
        if innocents:
            failures.append(f"innocent tag(s) accused in {c.kind} case {c.attack}: {', '.join(innocents)}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs, no BENCHMARKS.md write")
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch BENCHMARKS.md")
    parser.add_argument("--skip-peers", action="store_true", help="leave out the invisible-watermark peer")
    parser.add_argument("--skip-engine", action="store_true", help="run the peer part only")
    parser.add_argument("--json-out", type=Path, help="also write every result as JSON here")
    parser.add_argument("--report-from", type=Path, nargs="+", metavar="CASES_JSON",
                        help="re-render the report from saved cases.json files (first one's folder holds "
                             "the titles); runs no case and computes no new peer cell")
    parser.add_argument("--kinds", default="single,collusion,null",
                        help="which engine cases to run (comma-separated: single, collusion, null)")
    parser.add_argument("--attack-order", metavar="I,J,...",
                        help="run only these single-leaker attacks, in this order (indices into the suite)")
    parser.add_argument("--titles-from", type=Path, metavar="DIR",
                        help="use the titles another run prepared in DIR (its title-2s, title-1s)")
    parser.add_argument("--jobs", type=int, default=1, help="engine cases run at the same time")
    parser.add_argument("--max-minutes", type=float, default=float("inf"),
                        help="start no new engine case after this many minutes (the rest is reported as not run)")
    args = parser.parse_args(argv)
    config = quick_config() if args.quick else full_config()
    media.require_testdata()
    began = time.perf_counter()

    log(f"building master ({config.master.width}x{config.master.height}, {config.master.fps} fps, "
        f"{config.master.seconds:g} s)")
    master = media.build_master(config.master)
    info = media.probe(master)

    cases: list[Case] = []
    facts: dict = {}
    dist_rows: list[list[object]] = []
    if not args.skip_engine:
        missing = engine.missing_commands()
        if missing:
            print(f"engine not ready: `leaktrace autograph {'|'.join(missing)}` missing", file=sys.stderr)
            return 2
        kinds = frozenset(args.kinds.split(","))
        workdir = media.OUT / ("robustness-quick" if args.quick else "robustness")
        if args.titles_from is not None or kinds != frozenset({"single", "collusion", "null"}):
            workdir = workdir.with_name(workdir.name + "-" + "-".join(sorted(kinds))
                                        + ("-" + args.attack_order.replace(",", "_") if args.attack_order else ""))
        if not args.report_from:
            shutil.rmtree(workdir, ignore_errors=True)  # engine output must come from the engine at hand
            workdir.mkdir(parents=True)
        if args.report_from:
            # Re-render from a run's saved progress (e.g. after an interruption): no case is re-run.
            cases = merge_cases([[Case(**c) for c in json.loads(path.read_text())] for path in args.report_from])
            facts_file = args.report_from[0].parent / "facts.json"
            first_title = args.report_from[0].parent / f"title-{config.profiles[0].name.replace(' ', '')}"
            facts = (json.loads(facts_file.read_text()) if facts_file.exists() else
                     {"prepare_seconds": {}, "null_title": str(first_title)})
        else:
            cases, facts = run_engine_cases(config, master, workdir, deadline=time.time() + 60 * args.max_minutes,
                                            jobs=args.jobs, kinds=kinds, titles_from=args.titles_from,
                                            attack_order=[int(i) for i in args.attack_order.split(",")]
                                            if args.attack_order else None)
        try:
            # Innocents against marked leaks too: the bound must hold whatever the leak contains.
            chosen = [c for c in cases if c.kind == "null" or (
                c.profile == config.profiles[0].name and c.attack in NULL_MARKED_LEAKS)]
            dist_rows = null_distribution(Path(facts["null_title"]), chosen, config.null_tags)
        except Exception as exc:  # report, do not hide, a failure of this check
            dist_rows = [["all", config.null_tags, "-", "-", "-", "-", "-",
                          f"ERROR {type(exc).__name__}: {exc}"[:200]]]

    # The peer last: its cells are cached, so a peer run started earlier in the background helps.
    peer_result = None
    peer_note = ""
    if not args.skip_peers:
        ok, why = peers.available()
        if ok:
            peer_result = run_peer_comparison(config, master, cache_only=bool(args.report_from))
        else:
            peer_note = f"peer comparison skipped: {why}"
            log(peer_note)

    failures = check_targets(cases)
    failures += [f"null test: {row[0]}: {row[-1]}" for row in dist_rows
                 if str(row[-1]).startswith(("BOUND VIOLATED", "ERROR"))]
    sections = [f"Master: {info.width}x{info.height}, {float(info.fps):g} fps, {info.duration:.1f} s, "
                f"{info.frames} frames, built from {len(config.master.clips)} clips of ../shared/testdata "
                f"(then the same clips mirrored), held-out other title {media.OTHER_TITLE_CLIP}. "
                f"Simulated innocents per trace: {config.simulate_tags:,}; "
                f"real tags per title: {config.tags_per_title}."]
    if args.report_from:
        sections.append("Cases collected from the saved results of these runs (merged; a case that ran "
                        "replaces a \"not run\" placeholder of another run): "
                        + ", ".join(f"`{Path(p).relative_to(media.REPO_ROOT) if Path(p).is_absolute() else p}`"
                                    for p in args.report_from) + ".")
    if cases:
        prep = ", ".join(f"{k} positions {v:.0f} s" for k, v in facts.get("prepare_seconds", {}).items())
        sections.append(f"Prepare wall time: {prep}.")
        sections.append("### Our engine: accusations\n\n" + engine_table(cases, config))
        sections.append(
            "### Null test: empirical innocent bounds\n\nEvery tag here is innocent (its codeword is "
            "independent of the leak), so the count of tags whose bound is <= alpha must stay near or "
            "below alpha x n (the bound caps the probability; counts far below are expected when few "
            "positions are read). Observations: the per-position (zA, zB, symbol) printed by "
            "`trace --json` for that leak; scores: `code.score_candidates`, as in `trace`.\n\n" + report.markdown_table(
                ["leak", "innocent tags", "positions read", "min log10 bound", "bound <= 0.1",
                 "bound <= 0.01", "bound <= 0.001", "check"], dist_rows))
        verdict = ("All targets met." if not failures else
                   "TARGETS MISSED:\n\n" + "\n".join(f"- {f}" for f in failures))
        sections.append("### Targets\n\n" + verdict)
    if peer_result:
        sections.append("### Peer: invisible-watermark 0.2.0, 32 bits per frame\n\n"
                        + peers.PROTOCOL.format(n=len(peer_result["samples"]),
                                                window=peer_result["window_frames"] / float(info.fps))
                        + f"\n\nPeer numbers computed {peer_result['computed_at']} (each cached under "
                          "bench/out/peers/ by master, frames, payload and attack command).\n\n"
                        + peer_table(peer_result, cases))
    elif peer_note:
        sections.append(peer_note)
    sections.append("Attack commands (ffmpeg 5.1, `-ss`/`-t` before each input for excerpts):\n\n"
                    + "\n".join(f"- {a.name}: `{' '.join(media.attack_command(a, [Path('IN') for _ in range(a.copies)], Path('OUT.' + a.ext))[5:])}`"
                                for a in (*config.attacks, *config.collusion)))
    sections.append(f"Total wall time {time.perf_counter() - began:.0f} s.")
    body = "\n\n".join(sections)
    print(body)

    if args.json_out:
        args.json_out.write_text(json.dumps({
            "cases": [asdict(c) for c in cases], "failures": failures, "peer": peer_result,
            "null_distribution": dist_rows}, indent=1, default=str))
    if not args.quick and not args.no_write and not args.skip_engine:
        report.write_section("robustness", title="Robustness: attacks, collusion, null test, peer",
                             body=body, command=report.command_line("bench.robustness"))
    if failures:
        print("\nTARGETS MISSED:\n" + "\n".join(f"  - {f}" for f in failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
