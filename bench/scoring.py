"""Accusation maths of leaktrace.autograph.code: speed, positions needed, and the null tail.

Three measurements, each printed (nothing is written to BENCHMARKS.md here):

- speed (default): score 10^6 keyed candidate tags over a 3600-position title, codeword
  generation included, against the 30 s target; also the codeword generation alone.
- --plan: how many positions each attack needs before at least one guilty tag is accused at the
  per-candidate threshold of 10^6 candidates (1e-9 / 10^6), by simulation of the observations with
  this exact statistic (single leaker: exact, from the binomial bound); then a confirmation of the
  collusion cases at the claimed lengths with 10^6 real candidates (simulated innocents).
- --null: 10^6 simulated innocents against leaks of copies of another title; the empirical tail
  P(score >= s) beside the proven bound e^-s, and the number of innocents accused (must be 0).

    .venv/bin/python -m bench.scoring                 # speed, about 10-20 s
    .venv/bin/python -m bench.scoring --plan          # positions needed, a few minutes
    .venv/bin/python -m bench.scoring --null          # null tail with 10^6 innocents, a minute
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from leaktrace.autograph import code

KEY = b"bench-scoring-title-key"
OTHER_KEY = b"bench-scoring-other-title"
PER_CANDIDATE = 1e-15  # 1e-9 total over 10^6 candidates


# ------------------------------------------------------------------------------------------ leaks


def averaged(x: np.ndarray) -> np.ndarray:
    """Pixel-averaged copies, read by a clean detector: the common variant, or "both" where they differ."""
    symbols = x[0].astype(np.int8).copy()
    symbols[x.min(axis=0) != x.max(axis=0)] = code.SYMBOL_BOTH
    return symbols


def averaged_soft(x: np.ndarray, z: float = 40.0) -> code.Observations:
    """Averaged copies with soft scores: each pattern at the share of copies that carry it."""
    share_b = x.mean(axis=0)
    za, zb = z * (1 - share_b), z * share_b
    symbols = np.where(za > zb, 0, 1).astype(np.int8)
    symbols[(za > 6) & (zb > 6)] = code.SYMBOL_BOTH
    return code.Observations(symbols, np.stack([za, zb], axis=1).astype(np.float32))


def segment_mixed(
    x: np.ndarray, position_seconds: float, rng: np.random.Generator, *, low: float = 10.0, high: float = 20.0
) -> np.ndarray:
    """Copies taking turns in segments of uniform [low, high) seconds, as bench/media.py mixes them.

    A position cut by a segment boundary holds frames of two copies: where their variants differ it
    reads as "both" when the split is between 25 % and 75 %, else as the majority copy's variant
    (a model of the detector, stated here because it matters for the boundaries).
    """
    n_copies, n = x.shape
    bounds = [0.0]
    while bounds[-1] < n * position_seconds:
        bounds.append(bounds[-1] + rng.uniform(low, high))
    edges = np.array(bounds)
    symbols = np.empty(n, dtype=np.int8)
    for i in range(n):
        start, end = i * position_seconds, (i + 1) * position_seconds
        k = int(np.searchsorted(edges, start, side="right")) - 1
        first, second = k % n_copies, (k + 1) % n_copies
        if edges[k + 1] < end and x[first, i] != x[second, i]:
            share_first = (edges[k + 1] - start) / position_seconds
            majority = first if share_first >= 0.5 else second
            symbols[i] = code.SYMBOL_BOTH if 0.25 < share_first < 0.75 else x[majority, i]
        else:
            symbols[i] = x[first, i]
    return symbols


def with_detector_errors(symbols: np.ndarray, rng: np.random.Generator, flip: float, erase: float) -> np.ndarray:
    symbols = symbols.copy()
    flipped = (rng.random(len(symbols)) < flip) & (symbols >= 0) & (symbols <= 1)
    symbols[flipped] ^= 1
    symbols[rng.random(len(symbols)) < erase] = code.SYMBOL_ERASED
    return symbols


# ------------------------------------------------------------------------------------------ speed


def measure_speed(n_candidates: int, n_positions: int) -> None:
    tags = [f"viewer-{i}" for i in range(n_candidates)]
    guilty = tags[n_candidates // 2]
    rng = np.random.default_rng(0)
    # A leak of 600 positions of one tag inside an otherwise unrelated title-length observation.
    symbols = rng.integers(0, 2, n_positions).astype(np.int8)
    symbols[:600] = code.codeword(KEY, guilty, n_positions)[:600]

    def timed(run):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        return result, time.perf_counter() - wall, time.process_time() - cpu

    def generate():
        for first in range(0, n_candidates, 1 << 16):  # in chunks, as accuse() does
            code.packed_codewords(KEY, tags[first : first + (1 << 16)], n_positions)

    load = os.getloadavg()[0]
    _, generation, generation_cpu = timed(generate)
    verdict, keyed, keyed_cpu = timed(lambda: code.accuse(code.Observations(symbols), key=KEY, tags=tags))
    simulated, simulated_s, simulated_cpu = timed(lambda: code.accuse(
        code.Observations(symbols), key=KEY, tags=[guilty], simulate_tags=n_candidates - 1, seed=1))

    ok = [a.tag for a in verdict.accused] == [guilty] and [a.tag for a in simulated.accused] == [guilty]
    print(f"machine load average at start: {load:.1f} on {os.cpu_count()} cores (wall times grow with it)")
    print(f"scoring {n_candidates:,} keyed candidates x {n_positions} positions: {keyed:.1f} s wall, "
          f"{keyed_cpu:.1f} s CPU (target < 30 s; codeword generation alone {generation:.1f} s wall, "
          f"{generation_cpu:.1f} s CPU)")
    print(f"scoring {n_candidates:,} candidates, simulated innocents, x {n_positions} positions: "
          f"{simulated_s:.1f} s wall, {simulated_cpu:.1f} s CPU")
    print(f"right tag accused, nobody else: {ok}; runner-up bound 10^{verdict.runner_up.log10_bound:.1f}")


# ------------------------------------------------------------------------------- positions needed


def single_leaker_table() -> None:
    """Smallest number of single-variant positions with which a leaker with k wrong ones is accused."""
    print("single leaker, hard symbols, 10^6 candidates (exact binomial bound / budget share):")
    for wrong in range(4):
        n = next(n for n in range(wrong + 1, 400) if code._log_binomial_tail(n)[n - wrong]
                 - math.log(code.BUDGET_BINOMIAL) <= math.log(PER_CANDIDATE))
        print(f"  {wrong} wrong: {n} positions read (erasures do not count)")


def hit_rate(make_leak, n_positions: int, n_copies: int, trials: int) -> tuple[float, float]:
    """Fraction of trials where >= 1 guilty tag is accused, and the mean evidence of the best (nats)."""
    hits, evidence = 0, []
    for trial in range(trials):
        rng = np.random.default_rng(10_007 * trial + n_positions)
        tags = [f"colluder-{trial}-{j}" for j in range(n_copies)]
        leak = make_leak(code.codewords(KEY, tags, n_positions), rng)
        observations = leak if isinstance(leak, code.Observations) else code.Observations(leak)
        # The per-candidate threshold of 10^6 candidates; innocents do not change a guilty tag's bound.
        scores = code.score_candidates(observations, key=KEY, tags=tags, total_false_alarm=PER_CANDIDATE * n_copies)
        best = -float(scores.log_bound.min())
        evidence.append(best)
        hits += best >= -math.log(PER_CANDIDATE)
    return hits / trials, float(np.mean(evidence))


def plan(trials: int) -> None:
    single_leaker_table()
    need = -math.log(PER_CANDIDATE)
    cases = [
        ("average of 2", 2, 1.0, lambda x, rng: averaged(x)),
        ("average of 3, soft scores", 3, 1.0, lambda x, rng: averaged_soft(x)),
        ("mix of 2, 10-20 s segments, 1 s positions", 2, 1.0, lambda x, rng: segment_mixed(x, 1.0, rng)),
        ("mix of 2, 10-20 s segments, 2 s positions", 2, 2.0, lambda x, rng: segment_mixed(x, 2.0, rng)),
        ("mix of 3, 10-20 s segments, 1 s positions", 3, 1.0, lambda x, rng: segment_mixed(x, 1.0, rng)),
        ("mix of 3, 10-20 s segments, 2 s positions", 3, 2.0, lambda x, rng: segment_mixed(x, 2.0, rng)),
    ]
    print(f"\ncollusion, 10^6 candidates (need {need:.1f} nats), {trials} trials per cell; "
          "'+err' adds 1 % flipped and 2 % erased positions:")
    for name, n_copies, seconds, make in cases:
        row = []
        for n_positions in (60, 75, 90, 120, 180, 240, 300, 360, 480):
            if n_positions * seconds > 960:
                continue
            clean, mean = hit_rate(make, n_positions, n_copies, trials)
            noisy, _ = hit_rate(lambda x, rng: with_detector_errors(_symbols(make(x, rng)), rng, 0.01, 0.02),
                                n_positions, n_copies, trials)
            row.append(f"{n_positions} pos ({n_positions * seconds / 60:.1f} min): "
                       f"{clean:.2f}/{noisy:.2f} +err, {mean:.0f} nats")
            if clean == 1.0 and noisy == 1.0:
                break
        print(f"  {name}:\n    " + "\n    ".join(row), flush=True)


def confirm_at_scale(trials: int = 3) -> None:
    """The collusion cases at the lengths claimed, with 10^6 real candidates (pre-screen included)."""
    print("\nconfirmation with 10^6 candidates (colluders + simulated innocents), 1 % flipped, 2 % erased:")
    cases = [
        ("average of 2, 90 positions", 2, 90, lambda x, rng: averaged(x)),
        ("mix of 2, 240 positions of 1 s", 2, 240, lambda x, rng: segment_mixed(x, 1.0, rng)),
        ("mix of 3, 360 positions of 1 s", 3, 360, lambda x, rng: segment_mixed(x, 1.0, rng)),
    ]
    for name, n_copies, n_positions, make in cases:
        for trial in range(trials):
            rng = np.random.default_rng(trial)
            tags = [f"colluder-{trial}-{j}" for j in range(n_copies)]
            symbols = with_detector_errors(make(code.codewords(KEY, tags, n_positions), rng), rng, 0.01, 0.02)
            verdict = code.accuse(code.Observations(symbols), key=KEY, tags=tags,
                                  simulate_tags=1_000_000 - n_copies, seed=trial)
            accused = ", ".join(f"{a.tag} (10^{a.log10_bound:.1f})" for a in verdict.accused) or "none"
            innocents = [a.tag for a in verdict.accused if a.tag not in tags]
            print(f"  {name}, trial {trial}: accused {accused}; innocents accused: {len(innocents)}; "
                  f"runner-up 10^{verdict.runner_up.log10_bound:.1f}", flush=True)


def _symbols(leak) -> np.ndarray:
    return leak.symbols if isinstance(leak, code.Observations) else leak


# ------------------------------------------------------------------------------------------- null


def null_tail(n_innocents: int, n_positions: int) -> None:
    other = code.codewords(OTHER_KEY, ["a", "b", "c"], n_positions)
    rng = np.random.default_rng(5)
    leaks = {
        "copy of another title": other[0].astype(np.int8),
        "average of 2, other title": averaged(other[:2]),
        "mix of 3, other title": segment_mixed(other, 1.0, rng),
        "random symbols incl. both/erased": rng.integers(-1, 3, n_positions).astype(np.int8),
    }
    levels = (1, 2, 3, 4, 5)  # s = ln(10^level)
    print(f"null: {n_innocents:,} simulated innocents x {n_positions} positions; "
          "empirical P(bound <= 10^-k) vs the proven 10^-k (only the top ~1000 get the full statistic)")
    for name, symbols in leaks.items():
        start = time.perf_counter()
        scores = code.score_candidates(code.Observations(symbols), key=KEY, tags=[], simulate_tags=n_innocents, seed=11)
        log10 = scores.log_bound / math.log(10)
        cells = "  ".join(f"10^-{k}: {np.mean(log10 <= -k):.1e}" for k in levels)
        accused = int((scores.log_bound <= math.log(scores.threshold)).sum())
        seconds = time.perf_counter() - start
        print(f"  {name:34s} {cells}  min 10^{log10.min():.1f}  accused {accused}  ({seconds:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", action="store_true", help="positions needed per attack")
    parser.add_argument("--null", action="store_true", help="null tail with simulated innocents")
    parser.add_argument("--candidates", type=int, default=1_000_000)
    parser.add_argument("--positions", type=int, default=3600)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    if args.plan:
        plan(args.trials)
        confirm_at_scale()
    elif args.null:
        null_tail(args.candidates, 360)
    else:
        measure_speed(args.candidates, args.positions)


if __name__ == "__main__":
    main()
