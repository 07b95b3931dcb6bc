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
import time
from dataclasses import asdict, dataclass, field
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
        peer_samples=12,
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
        result = engine.trace(leak, outdir, tags, simulate_tags=simulate,
                              tags_file=workdir / "tags.txt")
    except engine.EngineError as exc:
        case.error = str(exc).splitlines()[-1][:200]
        log(f"trace failed: {case.attack}: {exc}")
        return case
    case.accused = [asdict(a) for a in result.accused]
    case.positions_observed = result.positions_observed
    case.runner_up = asdict(result.runner_up) if result.runner_up else None
    case.trace_seconds = result.seconds
    accused = set(result.accused_tags)
    case.innocents_accused = sorted(accused - set(case.true_tags))
    if case.kind == "single":
        case.ok = case.true_tags[0] in accused and not case.innocents_accused
    elif case.kind == "collusion":
        case.ok = bool(accused & set(case.true_tags)) and not case.innocents_accused
    else:
        case.ok = not accused
    return case


def run_engine_cases(config: Config, master: Path, workdir: Path) -> tuple[list[Case], dict]:
    """Prepare each profile, run every single-leaker, collusion and null case; return the cases
    and facts for the report (prepare times, the unmarked encode, the other title)."""
    cases: list[Case] = []
    facts: dict = {"prepare_seconds": {}}
    info = media.probe(master)
    for profile in config.profiles:
        outdir = workdir / f"title-{profile.name.replace(' ', '')}"
        log(f"prepare {profile.name} positions ...")
        facts["prepare_seconds"][profile.name] = engine.prepare(
            master, outdir, position_seconds=profile.position_seconds)
        log(f"prepared in {facts['prepare_seconds'][profile.name]:.0f} s")
        tags = title_tags(profile, config.tags_per_title)
        copies: dict[str, Path] = {}

        def copy_of(tag: str) -> Path:
            if tag not in copies:
                copies[tag] = workdir / "copies" / f"{tag}.mp4"
                engine.copy(outdir, tag, copies[tag])
            return copies[tag]

        for index, attack in enumerate(config.attacks):
            tag = tags[index % len(tags)]
            case = Case("single", profile.name, attack.name, [tag])
            leak = workdir / "leaks" / f"{profile.name.replace(' ', '')}-{media.slug(attack.name)}"
            log(f"{profile.name}: {attack.name} on {tag}")
            leak_path, case.attack_seconds = media.apply_attack(
                attack, [copy_of(tag)], leak, start=profile.excerpt_start or 0.0,
                duration=profile.excerpt_seconds)
            case.leak_seconds = media.probe(leak_path).duration
            cases.append(trace_case(case, leak_path, outdir, tags, simulate=config.simulate_tags,
                                    workdir=workdir))
            log(f"  -> accused {[a['tag'] for a in case.accused]} ok={case.ok}")
        if profile is config.profiles[0]:
            # Collusion on the whole master of the first (2 s) profile, distinct colluders per case.
            first = 0
            for attack in config.collusion:
                colluders = tags[first:first + attack.copies]
                first += attack.copies
                case = Case("collusion", profile.name, attack.name, list(colluders))
                log(f"{profile.name}: {attack.name} by {colluders}")
                leak = workdir / "leaks" / f"{profile.name.replace(' ', '')}-{media.slug(attack.name)}"
                leak_path, case.attack_seconds = media.apply_attack(
                    attack, [copy_of(t) for t in colluders], leak)
                case.leak_seconds = media.probe(leak_path).duration
                cases.append(trace_case(case, leak_path, outdir, tags, simulate=config.simulate_tags,
                                        workdir=workdir))
                log(f"  -> accused {[a['tag'] for a in case.accused]} ok={case.ok}")
            # Null test: nothing of ours is in these leaks, so every candidate is innocent.
            unmarked = media.plain_encode(master, media.OUT / "masters" / f"{master.stem}-unmarked-crf23.mp4",
                                          crf=23, preset="fast")
            other = media.TESTDATA / media.OTHER_TITLE_CLIP
            innocents = [f"innocent-{i:06d}" for i in range(config.null_tags)]
            for label, leak_path in (("unmarked encode of the master", unmarked),
                                     (f"other title ({media.OTHER_TITLE_CLIP})", other)):
                case = Case("null", profile.name, label, [])
                case.leak_seconds = media.probe(leak_path).duration
                log(f"null: {label} against {len(innocents)} innocent tags")
                cases.append(trace_case(case, leak_path, outdir, innocents, simulate=0, workdir=workdir))
                log(f"  -> accused {[a['tag'] for a in case.accused]} ok={case.ok}")
            facts["null_title"] = outdir
            facts["unmarked"] = unmarked
            facts["other"] = other
    facts["master_info"] = info
    return cases, facts


def _tolerated(alpha: float, n: int) -> float:
    """Most innocents with bound <= alpha that a valid bound explains: alpha*n plus 4 binomial
    standard deviations (the bound caps the mean of a Binomial(n, <= alpha) count)."""
    return alpha * n + 4 * math.sqrt(alpha * (1 - alpha) * n) + 1


def null_distribution(outdir: Path, leaks: list[tuple[str, Path]], n_tags: int) -> list[list[object]]:
    """Empirical check of the bound: score `n_tags` innocent tags against each leak's observations
    and count how many get a bound <= alpha. A valid bound keeps each count near or below alpha * n
    (it is an upper bound on the chance, so counts well below are expected)."""
    from leaktrace.autograph import code, package
    from leaktrace.autograph import trace as trace_module
    from leaktrace.autograph.reference import load_reference

    key = package.load_title(outdir).key
    ref = load_reference(outdir)
    tags = [f"null-{i:06d}" for i in range(n_tags)]
    rows: list[list[object]] = []
    for label, leak in leaks:
        _, alignment, detection, _ = trace_module.observe(leak, ref)
        if detection is None:
            rows.append([label, n_tags, "-", "-", "-", "-", "-",
                         f"no observations (leak not matched to the title: {alignment.reason})"])
            continue
        symbols = detection.symbols
        z = np.nan_to_num(detection.z, nan=0.0).astype(np.float32)
        scores = code.score_candidates(code.Observations(symbols=symbols, z=z), key=key, tags=tags)
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


def run_peer_comparison(config: Config, master: Path) -> dict:
    """Peer bit accuracy per method and attack (cached under bench/out/peers/ by its inputs)."""
    info = media.probe(master)
    fps = float(info.fps)
    window = max(2, int(round(config.peer_window_seconds * fps)))
    samples = peers.sample_frames(info.frames, fps, config.peer_samples)
    bits = peers.payload()
    recipe = [master.name, samples, window, bits.tolist(), peers.PROTOCOL,
              [media.attack_command(a, [Path("in.mp4")], Path("out.mp4")) for a in config.peer_attacks]]
    cache = media.OUT / "peers" / f"peers-{media.short_hash(*recipe)}.json"
    if cache.exists():
        log(f"peer results reused from {cache.relative_to(media.REPO_ROOT)} (same master, frames, attacks)")
        return json.loads(cache.read_text())
    workdir = cache.with_suffix("")
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"samples": samples, "window_frames": window, "methods": {},
                     "computed_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for method in peers.METHODS:
        clip = workdir / f"{method}.mp4"
        log(f"peer {method}: marking {len(samples)} sample frames")
        stats = peers.build_peer_clip(master, clip, method=method, bits=bits, samples=samples,
                                      window=window, progress=log)
        marked = _sample_frames(master, samples)
        rows = {}
        read, decode_s = peers.read_peer_bits(clip, method=method, marked_frames=marked, window=window,
                                              clip_fps=fps)
        rows["no attack (distribution encode)"] = peers.bit_accuracy(read, bits)
        for attack in config.peer_attacks:
            log(f"peer {method}: {attack.name}")
            leak, _ = media.apply_attack(attack, [clip], workdir / f"{method}-{media.slug(attack.name)}")
            read, _ = peers.read_peer_bits(leak, method=method, marked_frames=marked, window=window,
                                           clip_fps=fps)
            rows[attack.name] = peers.bit_accuracy(read, bits)
        results["methods"][method] = {**stats, "decode_s_per_frame": decode_s, "attacks": rows}
    cache.write_text(json.dumps(results, indent=1))
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


def peer_table(peer: dict, cases: list[Case]) -> str:
    """Peer bit accuracy per attack, beside our single-leaker results for the same attack."""
    methods = list(peer["methods"])
    headers = ["attack", *[f"{m} bit acc. (ID by vote)" for m in methods],
               "ours: right tag accused (2 s pos / 120 s | 1 s pos / 60 s)"]
    attacks = list(next(iter(peer["methods"].values()))["attacks"])
    rows = []
    for attack in attacks:
        ours = [c for c in cases if c.kind == "single" and c.attack == attack]
        ours_text = " | ".join(("yes" if c.ok else "NO") + f" ({_fmt_log10(c.accused[0]['log10_bound']) if c.accused else '-'})"
                               for c in ours) or "-"
        cells = []
        for m in methods:
            accuracy, identified = peer["methods"][m]["attacks"][attack]
            cells.append(f"{accuracy:.2f} ({'yes' if identified else 'no'})")
        rows.append([attack, *cells, ours_text])
    stats = [[m, f"{s['psnr_y']:.1f}", f"{s['psnr_rgb']:.1f}", f"{s['embed_s_per_frame']:.2f}",
              f"{s['decode_s_per_frame']:.2f}"] for m, s in peer["methods"].items()]
    return (report.markdown_table(headers, rows) + "\n\n"
            + report.markdown_table(["method", "Y-PSNR dB", "RGB PSNR dB", "embed s/frame", "decode s/frame"],
                                    stats))


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


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
    args = parser.parse_args(argv)
    config = quick_config() if args.quick else full_config()
    media.require_testdata()
    began = time.perf_counter()

    log(f"building master ({config.master.width}x{config.master.height}, {config.master.fps} fps, "
        f"{config.master.seconds:g} s)")
    master = media.build_master(config.master)
    info = media.probe(master)

    peer_result = None
    peer_note = ""
    if not args.skip_peers:
        ok, why = peers.available()
        if ok:
            peer_result = run_peer_comparison(config, master)
        else:
            peer_note = f"peer comparison skipped: {why}"
            log(peer_note)

    cases: list[Case] = []
    facts: dict = {}
    dist_rows: list[list[object]] = []
    if not args.skip_engine:
        missing = engine.missing_commands()
        if missing:
            print(f"engine not ready: `leaktrace autograph {'|'.join(missing)}` missing", file=sys.stderr)
            return 2
        workdir = media.OUT / ("robustness-quick" if args.quick else "robustness")
        shutil.rmtree(workdir, ignore_errors=True)  # engine output must come from the engine at hand
        workdir.mkdir(parents=True)
        cases, facts = run_engine_cases(config, master, workdir)
        try:
            leaks = [("unmarked encode of the master", facts["unmarked"]), ("other title", facts["other"])]
            # Innocents against marked leaks too: the bound must hold whatever the leak contains.
            leaks += [(f"marked leak: {c.attack} ({c.profile} positions)", Path(c.leak_path)) for c in cases
                      if c.profile == config.profiles[0].name and c.attack in NULL_MARKED_LEAKS and c.leak_path]
            dist_rows = null_distribution(facts["null_title"], leaks, config.null_tags)
        except Exception as exc:  # report, do not hide, a failure of this check
            dist_rows = [["all", config.null_tags, "-", "-", "-", "-", "-",
                          f"ERROR {type(exc).__name__}: {exc}"[:200]]]

    failures = check_targets(cases)
    failures += [f"null test: {row[0]}: {row[-1]}" for row in dist_rows
                 if str(row[-1]).startswith(("BOUND VIOLATED", "ERROR"))]
    sections = [f"Master: {info.width}x{info.height}, {float(info.fps):g} fps, {info.duration:.1f} s, "
                f"{info.frames} frames, built from {len(config.master.clips)} clips of ../shared/testdata "
                f"(then the same clips mirrored), held-out other title {media.OTHER_TITLE_CLIP}. "
                f"Simulated innocents per trace: {config.simulate_tags:,}; "
                f"real tags per title: {config.tags_per_title}."]
    if cases:
        prep = ", ".join(f"{k} positions {v:.0f} s" for k, v in facts.get("prepare_seconds", {}).items())
        sections.append(f"Prepare wall time: {prep}.")
        sections.append("### Our engine: accusations\n\n" + engine_table(cases, config))
        sections.append(
            "### Null test: empirical innocent bounds\n\nEvery tag here is innocent (its codeword is "
            "independent of the leak), so the count of tags whose bound is <= alpha must stay near or "
            "below alpha x n (the bound caps the probability; counts far below are expected when few "
            "positions are read). Observations come from `trace.observe`, scores from "
            "`code.score_candidates`, the same path `trace` takes.\n\n" + report.markdown_table(
                ["leak", "innocent tags", "positions read", "min log10 bound", "bound <= 0.1",
                 "bound <= 0.01", "bound <= 0.001", "check"], dist_rows))
        verdict = ("All targets met." if not failures else
                   "TARGETS MISSED:\n\n" + "\n".join(f"- {f}" for f in failures))
        sections.append("### Targets\n\n" + verdict)
    if peer_result:
        sections.append("### Peer: invisible-watermark 0.2.0, 32 bits per frame\n\n"
                        + peers.PROTOCOL.format(n=len(peer_result["samples"]),
                                                window=peer_result["window_frames"] / float(info.fps))
                        + f"\n\nPeer numbers computed {peer_result['computed_at']} (cached by master, frames "
                          "and attack commands).\n\n" + peer_table(peer_result, cases))
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
