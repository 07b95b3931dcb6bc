"""Robustness of tracing: attack suite, collusion, null test and the invisible-watermark peer.

What it does, top to bottom:

1. builds a >= 3 min master from the real clips in ../shared/testdata (bench/media.py);
2. prepares it twice with our engine: 2 s positions and 1 s positions;
3. makes copies for several tags and, for every single-leaker attack, cuts an excerpt at an odd
   start time (120 s of the 2 s-position title, 60 s of the 1 s-position title), applies the attack
   and traces the leak with `--simulate-tags 1000000` plus every real tag;
4. collusion on the collusion profile: its own >= 6 min master (360p to save time) prepared with
   1 s positions, because mixing needs ~240 (two copies) to ~360 (three copies) positions of 1 s
   at 10^6 candidates (`python -m bench.scoring --plan`); pixel average of two copies,
   segment-wise mixing of two and of three copies, each on the whole master;
5. null test: the unmarked encode of the master and another title against >= 10,000 innocent
   tags, plus the empirical innocent score distribution against the bound;
6. the peer (invisible-watermark dwtDctSvd and rivaGan) through the same attacks (bench/peers.py).

Targets (exit status 1 and the failing ones named when missed): the right tag accused in every
single-leaker case, at least one colluder accused in every collusion case, zero innocent tags
accused anywhere.

    .venv/bin/python -m bench.robustness            # full run, writes BENCHMARKS.md (~1 h)
    .venv/bin/python -m bench.robustness --quick    # tiny inputs, a minute or two, no write
    .venv/bin/python -m bench.robustness --kinds collusion --skip-peers --no-write --jobs 2
        # one part only (saved in bench/out/robustness-collusion/cases.json), then merge the parts:
    .venv/bin/python -m bench.robustness --report-from bench/out/RUN-1/cases.json bench/out/RUN-2/cases.json
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
from typing import TYPE_CHECKING

import numpy as np

from bench import engine, media, peers, report

if TYPE_CHECKING:
    from leaktrace.autograph import code


@dataclass(frozen=True)
class Profile:
    """One prepared title: its master (None = the config's master), position length and the
    excerpt its single-leaker cases are cut to (None = whole)."""

    name: str
    position_seconds: float
    excerpt_start: float | None
    excerpt_seconds: float | None
    master: media.MasterSpec | None = None

    @property
    def folder(self) -> str:
        """The prepared title's folder name inside a run's folder."""
        return f"title-{self.name.replace(' ', '')}"


@dataclass(frozen=True)
class Config:
    master: media.MasterSpec
    profiles: tuple[Profile, ...]  # single-leaker titles; the first one also hosts the null test
    attacks: tuple[media.Attack, ...]
    collusion_profile: Profile | None  # the title the collusion cases run on, whole
    collusion: tuple[media.Attack, ...]
    tags_per_title: int
    simulate_tags: int
    null_tags: int
    peer_samples: int
    peer_window_seconds: float
    peer_attacks: tuple[media.Attack, ...]


# Collusion master: >= 6 min for ~370 positions of 1 s; 640x360 because prepare time grows with
# pixels and the run shares two cores (the mark's detection does not need the larger frame).
COLLUSION_MASTER = media.MasterSpec(width=640, height=360, seconds=370.0)


def full_config() -> Config:
    spec = media.MasterSpec()
    attacks = tuple(media.attack_suite())
    return Config(
        master=spec,
        profiles=(Profile("2 s", 2.0, 31.37, 120.0), Profile("1 s", 1.0, 97.61, 60.0)),
        attacks=attacks,
        collusion_profile=Profile("long 1 s", 1.0, None, None, master=COLLUSION_MASTER),
        collusion=tuple(media.collusion_suite(COLLUSION_MASTER.seconds)),
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
        collusion_profile=None,
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
    """Prepare the profiles the requested kinds need, then run the single-leaker cases (attack by
    attack, alternating the titles), the collusion cases and the null cases, `jobs` at a time (each
    case is ffmpeg and `leaktrace` subprocesses). Cases not started before `deadline` (time.time())
    are recorded as not run. Progress is saved to workdir/cases.json after each case. With
    `titles_from`, the titles prepared by an earlier or concurrent run in that folder are used
    instead of preparing."""
    facts: dict = {"command": report.command_line("bench.robustness"), "prepare_seconds": {}, "titles": {}}
    needed: list[Profile] = []
    if "single" in kinds:
        needed += config.profiles
    if "null" in kinds and config.profiles[0] not in needed:
        needed.append(config.profiles[0])
    if "collusion" in kinds and config.collusion and config.collusion_profile is not None:
        needed.append(config.collusion_profile)

    def prepare(profile: Profile) -> Title:
        outdir = workdir / profile.folder
        source = master if profile.master is None else media.build_master(profile.master)
        log(f"prepare {profile.name} positions of {source.name} ...")
        facts["prepare_seconds"][profile.name] = engine.prepare(
            source, outdir, position_seconds=profile.position_seconds)
        log(f"prepared {profile.name} positions in {facts['prepare_seconds'][profile.name]:.0f} s")
        return Title(profile, outdir, title_tags(profile, config.tags_per_title), workdir / "copies")

    if titles_from is not None:
        titles = [Title(p, titles_from / p.folder, title_tags(p, config.tags_per_title), workdir / "copies")
                  for p in needed]
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            titles = list(pool.map(prepare, needed))
    by_name = {title.profile.name: title for title in titles}
    facts["titles"] = {name: str(title.outdir) for name, title in by_name.items()}
    (workdir / "facts.json").write_text(json.dumps(facts, indent=1))

    plan: list[tuple[Case, Callable[[], tuple[Path, float]], Title, list[str], int]] = []
    if "single" in kinds:
        for index in attack_order if attack_order is not None else range(len(config.attacks)):
            attack = config.attacks[index]
            for p in config.profiles:
                title = by_name[p.name]
                tag = title.tags[index % len(title.tags)]
                leak = workdir / "leaks" / f"{p.name.replace(' ', '')}-{media.slug(attack.name)}"
                make = partial(_single_leak, attack, title, tag, leak)
                plan.append((Case("single", p.name, attack.name, [tag]), make, title, title.tags,
                             config.simulate_tags))

    # Collusion on the whole master of the collusion title, distinct colluders per case.
    if "collusion" in kinds and config.collusion_profile is not None:
        title = by_name.get(config.collusion_profile.name)
        for attack, colluders in zip(config.collusion, collusion_colluders(config)):
            leak = workdir / "leaks" / f"{title.profile.name.replace(' ', '')}-{media.slug(attack.name)}"
            make = partial(_collusion_leak, attack, title, colluders, leak)
            plan.append((Case("collusion", title.profile.name, attack.name, colluders), make,
                         title, title.tags, config.simulate_tags))

    # Null test: nothing of ours is in these leaks, so every candidate is innocent.
    if "null" in kinds:
        first_title = by_name[config.profiles[0].name]
        unmarked = media.OUT / "masters" / f"{master.stem}-unmarked-crf23.mp4"
        other = media.TESTDATA / media.OTHER_TITLE_CLIP
        innocents = [f"innocent-{i:06d}" for i in range(config.null_tags)]
        plan.append((Case("null", first_title.profile.name, "unmarked encode of the master", []),
                     lambda: (media.plain_encode(master, unmarked, crf=23, preset="fast"), 0.0),
                     first_title, innocents, 0))
        plan.append((Case("null", first_title.profile.name, f"other title ({media.OTHER_TITLE_CLIP})", []),
                     lambda: (other, 0.0), first_title, innocents, 0))

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


def collusion_colluders(config: Config) -> list[list[str]]:
    """The colluding tags of each collusion case: distinct tags of the collusion title, in order."""
    if config.collusion_profile is None:
        return []
    tags = title_tags(config.collusion_profile, config.tags_per_title)
    groups, first = [], 0
    for attack in config.collusion:
        groups.append(tags[first:first + attack.copies])
        first += attack.copies
    return groups


def _collusion_leak(attack: media.Attack, title: Title, colluders: list[str], leak: Path) -> tuple[Path, float]:
    return media.apply_attack(attack, [title.copy_of(t) for t in colluders], leak)


def _tolerated(alpha: float, n: int) -> float:
    """Most innocents with bound <= alpha that a valid bound explains: alpha*n plus 4 binomial
    standard deviations (the bound caps the mean of a Binomial(n, <= alpha) count)."""
    return alpha * n + 4 * math.sqrt(alpha * (1 - alpha) * n) + 1


def traced_observations(case: Case, n_positions: int) -> code.Observations:
    """The scorer's observations rebuilt from the per-position (zA, zB, symbol) that `trace --json`
    printed for the case (z rounded to 0.01); unexamined positions are erased."""
    from leaktrace.autograph import code

    names = {"A": code.SYMBOL_A, "B": code.SYMBOL_B, "both": code.SYMBOL_BOTH, "erased": code.SYMBOL_ERASED}
    symbols = np.full(n_positions, code.SYMBOL_ERASED, dtype=np.int8)
    z = np.full((n_positions, 2), np.nan, dtype=np.float32)
    for entry in case.positions:
        symbols[entry["position"]] = names[entry["symbol"]]
        z[entry["position"]] = (entry["zA"], entry["zB"])
    return code.Observations(symbols=symbols, z=z)


def colluder_bounds(title_dirs: dict[str, Path], cases: list[Case], *, simulate: int, real_tags: int
                    ) -> list[list[object]]:
    """Every colluder's own log10 bound in each collusion case, beside the accusation threshold, so
    a miss shows how far each colluder was from it. Scored as `trace` does (same candidate count:
    the colluders, the other real tags, `simulate` fresh innocents) on the traced observations."""
    from leaktrace.autograph import code, package

    rows: list[list[object]] = []
    for case in cases:
        if not case.positions:
            rows.append([case.attack, "-", "-", "-", f"no observations ({case.reason or case.error})"])
            continue
        title = package.load_title(title_dirs[case.profile])
        observations = traced_observations(case, len(title.manifest["positions"]))
        others = [f"other-{i}" for i in range(real_tags - len(case.true_tags))]
        scores = code.score_candidates(observations, key=title.key, tags=[*case.true_tags, *others],
                                       simulate_tags=simulate)
        log10 = scores.log_bound[: len(case.true_tags)] / math.log(10)
        rows.append([case.attack, case.positions_observed, f"{math.log10(scores.threshold):.1f}",
                     ", ".join(f"{tag} ({value:.1f})" for tag, value in zip(case.true_tags, log10)),
                     "ok" if case.ok else "FAIL"])
    return rows


def null_distribution(title_dirs: dict[str, Path], cases: list[Case], n_tags: int) -> list[list[object]]:
    """Empirical check of the bound: score `n_tags` innocent tags against the observations of each
    given case (with the key of its profile's title in `title_dirs`) and count how many get a
    bound <= alpha. A valid bound keeps each count near or
    below alpha * n (it is an upper bound on the chance, so counts well below are expected).

    The observations are the per-position (zA, zB, symbol) that `trace --json` printed for the
    case (z rounded to 0.01), scored with `code.score_candidates`, the function `trace` uses."""
    from leaktrace.autograph import code, package

    tags = [f"null-{i:06d}" for i in range(n_tags)]
    rows: list[list[object]] = []
    for case in cases:
        label = case.attack if case.kind == "null" else f"marked leak: {case.attack} ({case.profile} positions)"
        if not case.positions:
            rows.append([label, n_tags, "0", "-", "-", "-", "-", f"no observations ({case.reason or case.error})"])
            continue
        title = package.load_title(title_dirs[case.profile])
        observations = traced_observations(case, len(title.manifest["positions"]))
        symbols = observations.symbols
        scores = code.score_candidates(observations, key=title.key, tags=tags)
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
        elif c.kind == "collusion" and config.collusion_profile is not None:
            spec = config.collusion_profile.master or config.master
            title += f", full {spec.width}x{spec.height} {spec.seconds:g} s master"
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


def planned_placeholders(config: Config) -> list[Case]:
    """A "not run" case for every case of the full plan, so a merged report shows missing ones."""
    note = "not run: not finished when the report was written"
    cases = [Case("single", p.name, a.name, [title_tags(p, config.tags_per_title)[i % config.tags_per_title]],
                  error=note) for i, a in enumerate(config.attacks) for p in config.profiles]
    cases += [Case("collusion", config.collusion_profile.name, a.name, colluders, error=note)
              for a, colluders in zip(config.collusion, collusion_colluders(config))]
    cases += [Case("null", config.profiles[0].name, label, [], error=note)
              for label in ("unmarked encode of the master", f"other title ({media.OTHER_TITLE_CLIP})")]
    return cases


def merge_cases(plan: list[Case], runs: list[list[Case]]) -> tuple[list[Case], list[Case]]:
    """The planned cases filled in from several runs, in plan order (a case that ran wins over a
    "not run" placeholder), and the runs' cases that are not in the plan (an earlier plan's)."""
    merged: dict[tuple[str, str, str], Case] = {(c.kind, c.profile, c.attack): c for c in plan}
    outside: list[Case] = []
    for case in (c for run in runs for c in run):
        key = (case.kind, case.profile, case.attack)
        if key not in merged:
            if not case.error.startswith("not run"):
                outside.append(case)
        elif merged[key].error.startswith("not run"):
            merged[key] = case
    return list(merged.values()), outside


def saved_facts(config: Config, cases_files: list[Path]) -> dict:
    """Commands, prepare times and title folders of the runs that wrote `cases_files`, merged (a run
    without a titles entry prepared its titles in its own folder)."""
    facts: dict = {"prepare_seconds": {}, "titles": {}, "commands": {}}
    profiles = [*config.profiles, *([config.collusion_profile] if config.collusion_profile else [])]
    for path in cases_files:
        run_dir = path.parent
        saved = json.loads((run_dir / "facts.json").read_text()) if (run_dir / "facts.json").exists() else {}
        facts["prepare_seconds"].update(saved.get("prepare_seconds", {}))
        if "command" in saved:
            facts["commands"][str(path)] = saved["command"]
        found = {p.name: str(run_dir / p.folder) for p in profiles if (run_dir / p.folder / "key.json").exists()}
        for name, folder in {**found, **saved.get("titles", {})}.items():
            facts["titles"].setdefault(name, folder)
    return facts


def describe_master(spec: media.MasterSpec, info: media.VideoInfo) -> str:
    """One line on a built master: size, rate, length and what it is made of."""
    passes = media.master_passes(spec)
    flips = ", ".join(f or "as shot" for f in media.MASTER_PASS_FLIPS[:passes])
    return (f"{info.width}x{info.height}, {float(info.fps):g} fps, {info.duration:.1f} s, {info.frames} frames, "
            f"built from {len(spec.clips)} clips of ../shared/testdata in {passes} passes ({flips})")


def summary(case: Case) -> str:
    """A case's outcome in a few words: accused tags, or the best candidate, with positions read."""
    accused = ", ".join(f"{a['tag']} ({_fmt_log10(a['log10_bound'])})" for a in case.accused)
    runner = (f"best {case.runner_up['tag']} ({_fmt_log10(case.runner_up['log10_bound'])})"
              if case.runner_up else "")
    return (f"accused {accused}" if accused else f"nobody accused, {runner}") + \
        f", {case.positions_observed} positions, {'ok' if case.ok else 'FAIL'}"


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
    superseded: list[Case] = []
    facts: dict = {}
    dist_rows: list[list[object]] = []
    collusion_rows: list[list[object]] = []
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
            # The plan's placeholders filled in from the runs: the table keeps the plan's order.
            cases, superseded = merge_cases(planned_placeholders(config),
                                            [[Case(**c) for c in json.loads(path.read_text())]
                                             for path in args.report_from])
            facts = saved_facts(config, args.report_from)
        else:
            cases, facts = run_engine_cases(config, master, workdir, deadline=time.time() + 60 * args.max_minutes,
                                            jobs=args.jobs, kinds=kinds, titles_from=args.titles_from,
                                            attack_order=[int(i) for i in args.attack_order.split(",")]
                                            if args.attack_order else None)
        try:
            # Innocents against marked leaks too: the bound must hold whatever the leak contains.
            hosts = {config.profiles[0].name, config.collusion_profile.name if config.collusion_profile else ""}
            chosen = [c for c in cases if c.kind == "null" or (c.profile in hosts and c.attack in NULL_MARKED_LEAKS)]
            dist_rows = null_distribution({k: Path(v) for k, v in facts["titles"].items()}, chosen,
                                          config.null_tags)
        except Exception as exc:  # report, do not hide, a failure of this check
            dist_rows = [["all", config.null_tags, "-", "-", "-", "-", "-",
                          f"ERROR {type(exc).__name__}: {exc}"[:200]]]
        collusion_cases = [c for c in cases if c.kind == "collusion"]
        try:
            collusion_rows = colluder_bounds({k: Path(v) for k, v in facts["titles"].items()}, collusion_cases,
                                             simulate=config.simulate_tags, real_tags=config.tags_per_title)
        except Exception as exc:  # report, do not hide, a failure of this check
            collusion_rows = [["all", "-", "-", "-", f"ERROR {type(exc).__name__}: {exc}"[:200]]]

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
    sections = [f"Master: {describe_master(config.master, info)}, held-out other title "
                f"{media.OTHER_TITLE_CLIP}. Simulated innocents per trace: {config.simulate_tags:,}; "
                f"real tags per title: {config.tags_per_title}."]
    collusion_master = config.collusion_profile.master if config.collusion_profile else None
    if collusion_master is not None and (media.OUT / "masters" / f"{collusion_master.name}.mp4").exists():
        sections.append(f"Collusion master ({config.collusion_profile.name} positions title): "
                        + describe_master(collusion_master,
                                          media.probe(media.OUT / "masters" / f"{collusion_master.name}.mp4"))
                        + "; the collusion cases use the whole of it.")
    if args.report_from:
        sections.append("Cases collected from the saved results of these runs (merged; a case that ran "
                        "replaces a \"not run\" placeholder of another run): "
                        + ", ".join(f"`{Path(p).relative_to(media.REPO_ROOT) if Path(p).is_absolute() else p}`"
                                    for p in args.report_from) + ".")
        if facts["commands"]:
            sections.append("Commands of those runs (where recorded):\n\n" + "\n".join(
                f"- `{path}`: `{command}`" for path, command in facts["commands"].items()))
        if superseded:
            sections.append("Cases of those runs that the current plan no longer holds (not in the table): "
                            + "; ".join(f"{c.kind} {c.attack} on {c.profile} positions of the "
                                        f"{config.master.seconds:g} s master: {summary(c)}" for c in superseded)
                            + ".")
    if cases:
        prep = ", ".join(f"{k} positions {v:.0f} s" for k, v in facts.get("prepare_seconds", {}).items())
        if prep:
            sections.append(f"Prepare wall time: {prep}.")
        sections.append("### Our engine: accusations\n\n" + engine_table(cases, config))
        if collusion_rows:
            sections.append(
                "### Collusion: each colluder's bound\n\nA tag is accused when its bound is at or below "
                "the threshold 1e-9 / N (N = real tags + simulated innocents). Bounds recomputed with "
                "`code.score_candidates` from the observations `trace --json` printed (z rounded to 0.01) "
                "against the same number of candidates (fresh simulated innocents).\n\n"
                + report.markdown_table(["attack", "positions observed", "log10 threshold",
                                         "colluders (log10 bound)", "result"], collusion_rows))
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
