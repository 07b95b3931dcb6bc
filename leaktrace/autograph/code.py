"""Codewords, scoring every candidate tag, and a proven bound on false accusations.

Codewords
---------
A tag's codeword is derived from the title key alone (`codeword`), so nothing per viewer needs
storing and a copy is byte-identical every time it is assembled for the same tag. For anyone
without the key, the bits of an innocent tag are independent fair coins, independent of the leak.

Observations
------------
The detector reads one symbol per position of the leak: A (0), B (1), both (2, e.g. two copies
averaged) or erased (-1), optionally with soft scores (zA, zB). Soft scores only shape the weights
of the likelihood ratios below (a small margin |zA - zB| makes a read symbol count less; the
strengths of zA and zB at a "both" say which variant most averaged copies carried). The bound
never relies on the detector being right.

Why the bound holds (for any attack)
------------------------------------
Fix the observations y. An innocent tag's codeword x is uniform on {0,1}^n and independent of y
and of every other candidate's codeword. Call P0 this null law.

1. Likelihood ratios. For any non-negative g(x) chosen from y (and from anything independent of
   x), Λ(x) = g(x) / E0[g] has E0[Λ] = 1, so Markov gives P0(Λ ≥ t) ≤ 1/t. Round 1 mixes, with
   equal weights, products of per-position weights e_i(x_i) ("the leak shows the candidate's
   variant, error rate ε", four ε) and two-state hidden Markov chains ("this position came from the
   candidate / from someone else", three switch rates, switching likelier next to "both"/erased
   positions, where copy boundaries show). E0[g] is the same product or chain with each weight
   averaged over x_i, computed by one forward pass. The mixture again has mean 1.
2. Exact binomial tail. At the C positions where one variant was read, an innocent agrees with the
   leak at each independently with probability 1/2: P0(agreement ≥ a) = P(Binomial(C, 1/2) ≥ a),
   computed exactly in log space.
3. Round 2. Let A1 be the tags accused by 1 and 2. Whether a tag k ≠ j is in A1 depends only on
   (y, x_k) (every first-round decision, the pre-screen included, is a per-candidate rule with
   thresholds fixed before any codeword is read), so A1 without j is independent of x_j and a
   likelihood ratio using the accused codewords as side information (chains over {candidate, each
   accused copy, someone else}; "both" where all accused copies hold b means another colluder
   holds 1 - b) is valid for j by 1.
4. Pairs. For two averaged copies, the candidate is scored with a partner codeword x_k: a match is
   "single variant equals x_j" or "both where x_j ≠ x_k". For a fixed x_k this is a likelihood
   ratio as in 1; maximising over partners costs a union bound over the N - 1 possible partners:
   P0(max_k Λ_jk ≥ t) ≤ (N - 1)/t. Any subset of partners only lowers the maximum, so only the
   best-agreeing candidates are paired.
5. Union bound. With budget shares w (binomial 0.5, round 1 0.25, round 2 0.1, pairs 0.15, sum 1)
   and per-statistic tails p_k, the reported bound is min_k p_k / w_k, and
   P0(min_k p_k / w_k ≤ u) ≤ Σ_k w_k u = u. A tag is accused when its bound is ≤ α / N
   (α = total_false_alarm, N candidates, simulated ones included), so the expected number of
   innocents accused, hence the chance of any, is ≤ α.

Statistics not computed for a candidate (it failed the cheap pre-screen, or was not paired) count
as Λ = 0, which only enlarges its bound.

Positions needed (N = 10^6 candidates, α = 1e-9: a bound of 1e-15, 34.5 nats), from
`python -m bench.scoring --plan` with this exact statistic, 20 trials, >= 95 % of trials
accusing, also with 1 % of positions flipped and 2 % erased:

    single leaker (exact):          51 positions read (0 wrong), 57 (1 wrong), 62 (2), 67 (3)
    average of 2 copies:            75 positions (60 without detector errors)
    average of 3 copies, soft z:    300 positions
    mix of 2, 10-20 s segments:     240 positions of 1 s;  300 of 2 s
    mix of 3, 10-20 s segments:     360 positions of 1 s;  > 480 of 2 s

A colluder who contributes m positions brings at most m bits (m ln 2 nats) of evidence, so mixing
of three copies over 90 positions (3 minutes of 2 s positions) is out of reach of any statistic
at this threshold.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp, ndtr, ndtri

_DOMAIN = b"leaktrace/codeword/v1\x00"

SYMBOL_A, SYMBOL_B, SYMBOL_BOTH, SYMBOL_ERASED = 0, 1, 2, -1

# Budget shares of the union bound (sum to 1), fixed before looking at any codeword.
BUDGET_BINOMIAL = 0.5
BUDGET_ROUND1 = 0.25
BUDGET_ROUND2 = 0.1
BUDGET_PAIRS = 0.15

# Round-1 mixture: single source with error rates ε, and two-state chains with switch rates q.
_SINGLE_ERROR_RATES = (0.002, 0.02, 0.1, 0.25)
_CHAIN_SWITCH_RATES = (1 / 16, 1 / 64, 1 / 256)
_CHAIN_ERROR_RATE = 0.02
# Round 2: chains over {candidate, each accused, someone else} and the averaging model.
_ROUND2_SWITCH_RATES = (1 / 8, 1 / 32)
_ROUND2_MAX_KNOWN = 3
# Pairs (two averaged copies): error rates of the mixture, and at most this many candidates paired.
_PAIR_ERROR_RATES = (0.002, 0.02, 0.1)
_PAIR_MAX = 2000
# Switch rate next to a position that is not a confident single variant.
_SWITCH_NEAR_UNSURE = 0.2
# Probability of reading "both" from a single copy, inside the chain emission model.
_BOTH_FROM_ONE = 0.05

# Pre-screen: expected number of innocents that get the expensive statistics.
_PRESCREEN_EXPECTED = 1000
_SCORE_EVERYONE_WORK = 2_000_000  # candidates x positions up to which everyone is scored in full
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Observations:
    symbols: np.ndarray  # int8 (n_positions,): 0 = A, 1 = B, 2 = both, -1 = erased/not observed
    z: np.ndarray | None = None  # float32 (n_positions, 2): soft scores (zA, zB), nan where not observed


@dataclass(frozen=True)
class Accusation:
    tag: str
    score: float  # evidence in nats: ln(1 / bound), compare with ln(n_candidates / total_false_alarm)
    bound: float  # proven upper bound on P(an innocent tag scores >= score); 0.0 if below 1e-308
    log10_bound: float
    agreement: int  # positions where the tag's symbol matches an observed single-variant symbol
    compared: int  # positions with a single variant (A or B) observed


@dataclass(frozen=True)
class Verdict:
    accused: list[Accusation]
    runner_up: Accusation | None
    positions_observed: int
    n_candidates: int
    threshold: float  # per-candidate bound required: total_false_alarm / n_candidates
    reason: str


# --------------------------------------------------------------------------------------------
# Codewords


def codeword(key: bytes, tag: str, n_positions: int) -> np.ndarray:
    """Return the tag's codeword as a uint8 array of 0 (variant A) / 1 (variant B), shape (n_positions,)."""
    n_bytes = (n_positions + 7) // 8
    stream = hashlib.shake_256(_DOMAIN + key + b"\x00" + tag.encode("utf-8")).digest(n_bytes)
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8), bitorder="little")
    return bits[:n_positions].copy()


def packed_codewords(key: bytes, tags: Sequence[str], n_positions: int, *, n_bytes: int | None = None) -> np.ndarray:
    """Return codewords packed 8 positions per byte (little-endian bits), uint8 (n_tags, n_bytes).

    n_bytes defaults to ceil(n_positions / 8); more bytes extend the same stream (SHAKE output is
    prefix-stable). Bits past n_positions are whatever the stream holds; callers mask them.
    """
    n_bytes = (n_positions + 7) // 8 if n_bytes is None else n_bytes
    prefix = hashlib.shake_256(_DOMAIN + key + b"\x00")
    streams = []
    for tag in tags:
        h = prefix.copy()
        h.update(tag.encode("utf-8"))
        streams.append(h.digest(n_bytes))
    return np.frombuffer(b"".join(streams), dtype=np.uint8).reshape(len(tags), n_bytes)


def codewords(key: bytes, tags: Sequence[str], n_positions: int) -> np.ndarray:
    """Return the codewords of many tags, uint8 0/1 (n_tags, n_positions); row i equals codeword(key, tags[i], n)."""
    packed = packed_codewords(key, tags, n_positions)
    return np.unpackbits(packed, axis=1, bitorder="little")[:, :n_positions].copy()


# --------------------------------------------------------------------------------------------
# What the observations say, prepared once


@dataclass(frozen=True)
class _Evidence:
    n_positions: int
    observed: int  # positions not erased
    compared: int  # positions with a single variant read
    hard_mask: np.ndarray  # uint8 packed (n_words * 8,): 1 where a single variant was read, 0-padded
    hard_bits: np.ndarray  # uint8 packed (n_words * 8,): the variant read there
    log_tail: np.ndarray  # float64 (compared + 2,): ln P(Binomial(compared, 1/2) >= a), a = 0..compared+1
    single_weight: np.ndarray  # float64 (n_errors, n_positions, 2): e_i(x) of "from the candidate"
    chain_emission: np.ndarray  # float64 (n_positions, 2, 2): [i, state (candidate, other), x]
    unsure: np.ndarray  # bool (n_positions,): not a confident single variant (both, erased, small margin)
    hard: np.ndarray  # bool (n_positions,): a single variant was read
    read_b: np.ndarray  # bool (n_positions,): variant B was read
    both: np.ndarray  # bool (n_positions,): "both" was read
    n_both: int


def _log_binomial_tail(n: int) -> np.ndarray:
    """ln P(Binomial(n, 1/2) >= a) for a = 0..n+1 (the last entry is -inf)."""
    k = np.arange(n + 1)
    log_pmf = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) - n * math.log(2)
    tail = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    return np.append(np.minimum(tail, 0.0), -np.inf)


def _word_bytes(n_positions: int) -> int:
    """Packed width in bytes, rounded up to whole 64-bit words so rows can be viewed as uint64."""
    return 8 * ((n_positions + 63) // 64)


def _pack(bits: np.ndarray) -> np.ndarray:
    packed = np.packbits(bits.astype(np.uint8), bitorder="little")
    return np.pad(packed, (0, _word_bytes(bits.shape[0]) - packed.shape[0]))


def _evidence(observations: Observations) -> _Evidence:
    symbols = np.asarray(observations.symbols)
    if symbols.ndim != 1 or not np.isin(symbols, (SYMBOL_ERASED, SYMBOL_A, SYMBOL_B, SYMBOL_BOTH)).all():
        raise ValueError("symbols must be a 1-D array of -1 (erased), 0 (A), 1 (B) or 2 (both)")
    symbols = symbols.astype(np.int8)
    n = symbols.shape[0]
    if observations.z is not None and np.shape(observations.z) != (n, 2):
        raise ValueError(f"z must have shape ({n}, 2), got {np.shape(observations.z)}")
    hard = (symbols == SYMBOL_A) | (symbols == SYMBOL_B)
    both = symbols == SYMBOL_BOTH
    read_b = symbols == SYMBOL_B

    # Per-position probability that the candidate's bit is B, for a candidate that is the source
    # ("from the candidate" state). Soft scores only shape these weights; the bound never relies on them.
    detector_error = np.zeros(n)
    share_b = np.full(n, 0.5)
    if observations.z is not None:
        z = np.nan_to_num(np.asarray(observations.z, dtype=np.float64), nan=0.0)
        # A small margin zA - zB ~ N(±z, 2) means the read symbol may be wrong.
        detector_error = ndtr(-np.abs(z[:, 0] - z[:, 1]) / math.sqrt(2.0))
        positive = np.clip(z, 0.0, None)
        total = positive.sum(axis=1)
        # Averaged copies: the pattern strengths say which variant most colluders had.
        share_b = np.where(total > 0, positive[:, 1] / np.where(total > 0, total, 1.0), 0.5)
        share_b = np.clip(share_b, 0.2, 0.8)

    def weights_of(error_rate: float) -> np.ndarray:
        eps = np.maximum(error_rate, np.minimum(detector_error, 0.5))
        p_b = np.where(hard, np.where(read_b, 1.0 - eps, eps), np.where(both, share_b, 0.5))
        return np.stack([1.0 - p_b, p_b], axis=1)  # erased: (0.5, 0.5), a constant factor

    single_weight = np.stack([weights_of(eps) for eps in _SINGLE_ERROR_RATES])

    # Chain emissions: P(what was read | state, x). Candidate: the read symbol is x (error ε), or
    # "both" with probability β. Other source: A or B evenly, or "both" with probability β.
    eps = np.maximum(_CHAIN_ERROR_RATE, np.minimum(detector_error, 0.5))
    beta = _BOTH_FROM_ONE
    p_b = np.where(read_b, 1.0 - eps, eps)
    cand_hard = (1.0 - beta) * np.stack([1.0 - p_b, p_b], axis=1)
    cand_both = 2.0 * beta * np.stack([1.0 - share_b, share_b], axis=1)
    candidate = np.where(hard[:, None], cand_hard, np.where(both[:, None], cand_both, 1.0))
    other = np.where(hard, (1.0 - beta) / 2.0, np.where(both, beta, 1.0))
    chain_emission = np.stack([candidate, np.stack([other, other], axis=1)], axis=1)

    compared = int(hard.sum())
    return _Evidence(
        n_positions=n,
        observed=int((symbols != SYMBOL_ERASED).sum()),
        compared=compared,
        hard_mask=_pack(hard),
        hard_bits=_pack(read_b),
        log_tail=_log_binomial_tail(compared),
        single_weight=single_weight,
        chain_emission=chain_emission,
        unsure=~hard | (detector_error > 0.01),
        hard=hard,
        read_b=read_b,
        both=both,
        n_both=int(both.sum()),
    )


# --------------------------------------------------------------------------------------------
# Statistics (each returns ln Λ with E0[Λ] = 1, for bits uint8 (n_candidates, n_positions))


def _log_product_ratio(weights: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """ln Π_i e_i(x_i) / E0[Π_i e_i(x_i)] for weights (n_positions, 2)."""
    log_w = np.log(np.clip(weights, 1e-300, None))
    per_position = log_w[:, 0] + bits * (log_w[:, 1] - log_w[:, 0])
    log_mean = np.log(weights.mean(axis=1)).sum()
    return per_position.sum(axis=1) - log_mean


def _log_chain_ratio(emission: np.ndarray, bits: np.ndarray, switch_rates: np.ndarray) -> np.ndarray:
    """ln of hidden Markov chains' likelihood of x over its null mean, float64 (n_chains, n_candidates).

    emission: float64 (n_positions, n_states, 2), e[i, s, x] >= 0 (only some states depend on x).
    switch_rates: float64 (n_chains, n_positions), q[c, i] = chance of leaving the state before
    position i (chosen from the observations only); the chain starts in a uniform state, stays with
    probability 1 - q, else jumps to a uniformly chosen other state.
    """
    n_positions, n_states, _ = emission.shape
    n_chains = switch_rates.shape[0]
    n_cands = bits.shape[0]
    if n_cands == 0:
        return np.zeros((n_chains, 0))
    jump = switch_rates / (n_states - 1)  # (n_chains, n_positions)
    keep = 1.0 - switch_rates - jump
    rows = np.arange(n_cands)

    def forward(step_emission: Callable[[int], np.ndarray], width: int) -> np.ndarray:
        alpha = np.full((n_chains, width, n_states), 1.0 / n_states)
        log_scale = np.zeros((n_chains, width))
        for i in range(n_positions):
            total = alpha.sum(axis=2, keepdims=True)
            alpha = keep[:, i, None, None] * alpha + jump[:, i, None, None] * total
            alpha *= step_emission(i)
            scale = alpha.sum(axis=2)
            alpha /= scale[:, :, None]
            log_scale += np.log(scale)
        return log_scale

    null_emission = emission.mean(axis=2)
    log_null = forward(lambda i: null_emission[i][None, :], 1)
    log_candidates = forward(lambda i: emission[i][:, bits[rows, i]].T, n_cands)
    return log_candidates - log_null


def _switch_rates(evidence: _Evidence, base_rates: Sequence[float]) -> np.ndarray:
    """Per-chain, per-position switch rates, float64 (n_chains, n_positions).

    A copy boundary inside a position usually leaves it read as "both", erased or unsure, so
    switching is made likely next to such positions (a function of the observations only).
    """
    unsure = evidence.unsure
    near = unsure | np.concatenate([[False], unsure[:-1]])
    base = np.array(base_rates)[:, None]
    return np.where(near[None, :], np.maximum(base, _SWITCH_NEAR_UNSURE), base)


def _in_row_chunks(function: Callable[[np.ndarray], np.ndarray], bits: np.ndarray, rows: int = 2048) -> np.ndarray:
    """Apply a per-candidate statistic to bounded blocks of rows, to bound memory."""
    if bits.shape[0] == 0:
        return np.zeros(0)
    return np.concatenate([function(bits[start : start + rows]) for start in range(0, bits.shape[0], rows)])


def _round1_log_ratio(evidence: _Evidence, bits: np.ndarray) -> np.ndarray:
    """ln of the round-1 mixture likelihood ratio, float64 (n_candidates,)."""
    parts = [_log_product_ratio(w, bits) for w in evidence.single_weight]
    rates = _switch_rates(evidence, _CHAIN_SWITCH_RATES)
    stacked = np.concatenate([np.stack(parts), _log_chain_ratio(evidence.chain_emission, bits, rates)])
    return logsumexp(stacked, axis=0) - math.log(len(stacked))


def _round2_log_ratio(evidence: _Evidence, symbols: np.ndarray, known: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """ln of the round-2 mixture likelihood ratio given accused codewords `known` (n_known, n_positions)."""
    hard = (symbols == SYMBOL_A) | (symbols == SYMBOL_B)
    both = symbols == SYMBOL_BOTH
    beta, eps = _BOTH_FROM_ONE, _CHAIN_ERROR_RATE
    # Segment mixing: the position came from the candidate, from one accused copy, or from someone else.
    candidate = evidence.chain_emission[:, 0, :]
    other = evidence.chain_emission[:, 1, :]
    states = [candidate, other]
    for row in known:
        match = (symbols == row).astype(np.float64)
        read_as_known = (1.0 - beta) * (match * (1.0 - eps) + (1.0 - match) * eps)
        from_known = np.where(hard, read_as_known, np.where(both, beta, 1.0))
        states.append(np.stack([from_known, from_known], axis=1))
    emission = np.stack(states, axis=1)
    parts = list(_log_chain_ratio(emission, bits, _switch_rates(evidence, _ROUND2_SWITCH_RATES)))
    # Averaging: where "both" is read and every accused copy holds b, another colluder holds 1 - b.
    agreed = np.all(known == known[0], axis=0)
    p_b = np.full(symbols.shape[0], 0.5)
    p_b = np.where(hard, np.where(symbols == SYMBOL_B, 1.0 - eps, eps), p_b)
    p_b = np.where(both & agreed, np.where(known[0] == 1, eps, 1.0 - eps), p_b)
    parts.append(_log_product_ratio(np.stack([1.0 - p_b, p_b], axis=1), bits))
    return logsumexp(np.stack(parts), axis=0) - math.log(len(parts))


def _log_pair_ratio(matches: np.ndarray, positions: int) -> np.ndarray:
    """ln of the averaged-pair likelihood ratio from match counts (any shape), mixture over ε.

    Model: the leak averages the candidate's copy x and a partner's copy x'; a single variant read
    equals x (error ε) and "both" means x differs from x' (error ε). A match is either event; each
    of the `positions` (single-variant plus "both") weighs 2(1 - ε) on a match, 2ε otherwise, so
    the null mean is 1 whatever the partner's codeword.
    """
    parts = [matches * math.log(2 * (1 - eps)) + (positions - matches) * math.log(2 * eps) for eps in _PAIR_ERROR_RATES]
    return logsumexp(np.stack(parts), axis=0) - math.log(len(parts))


def _pair_agreement_needed(evidence: _Evidence, n_candidates: int, log_threshold: float) -> int:
    """Smallest agreement with which a candidate, with the best possible partner, could be accused."""
    if evidence.n_both == 0 or n_candidates < 2:
        return evidence.compared + 1
    positions = evidence.compared + evidence.n_both
    best = _log_pair_ratio(np.arange(evidence.compared + 1) + evidence.n_both, positions)
    log_bound = math.log(n_candidates - 1) - best - math.log(BUDGET_PAIRS)
    reachable = np.flatnonzero(log_bound <= log_threshold)
    return int(reachable[0]) if len(reachable) else evidence.compared + 1


def _best_pair_log_ratio(evidence: _Evidence, bits: np.ndarray) -> np.ndarray:
    """For each candidate row, the largest averaged-pair ln Λ over the other rows as partners, float64 (rows,)."""
    positions = evidence.compared + evidence.n_both
    agree = ((bits == evidence.read_b) & evidence.hard).sum(axis=1)
    both_bits = np.packbits(bits[:, evidence.both], axis=1, bitorder="little")
    # ln Λ grows with the match count, so the best partner is the one differing at most "both" positions.
    most_differ = np.zeros(len(bits), dtype=np.int32)
    for start in range(0, len(bits), 64):
        rows = slice(start, start + 64)
        differ = np.bitwise_count(both_bits[rows, None, :] ^ both_bits[None, :, :]).sum(axis=2, dtype=np.int32)
        own = np.arange(start, min(start + 64, len(bits)))
        differ[own - start, own] = -1  # a candidate is not its own partner
        most_differ[rows] = differ.max(axis=1)
    return _log_pair_ratio(agree + most_differ, positions)


class _PairPool:
    """The best-agreeing candidates (at most _PAIR_MAX) whose agreement reaches `needed`."""

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self.index = np.zeros(0, dtype=np.int64)
        self.agreement = np.zeros(0, dtype=np.int32)
        self.packed: np.ndarray | None = None

    def offer(self, start: int, agreement: np.ndarray, packed: np.ndarray) -> None:
        keep = np.flatnonzero(agreement >= self.needed)
        if not len(keep):
            return
        self.index = np.concatenate([self.index, start + keep])
        self.agreement = np.concatenate([self.agreement, agreement[keep]])
        self.packed = packed[keep] if self.packed is None else np.concatenate([self.packed, packed[keep]])
        if len(self.index) > 2 * _PAIR_MAX:
            self._prune()

    def _prune(self) -> None:
        best = np.sort(np.argsort(-self.agreement, kind="stable")[:_PAIR_MAX])
        self.index, self.agreement, self.packed = self.index[best], self.agreement[best], self.packed[best]

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self.packed is None:
            return self.index, np.zeros((0, 8), dtype=np.uint8)
        self._prune()
        return self.index, self.packed


# --------------------------------------------------------------------------------------------
# Candidates: real tags (keyed codewords) and simulated innocents (random codewords)


def _candidate_chunks(
    key: bytes, tags: Sequence[str], simulate_tags: int, n_positions: int, seed: int | None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first candidate index, packed codewords) in chunks; simulated tags follow the real ones."""
    n_bytes = _word_bytes(n_positions)
    for start in range(0, len(tags), _CHUNK):
        yield start, packed_codewords(key, tags[start : start + _CHUNK], n_positions, n_bytes=n_bytes)
    rng = np.random.default_rng(seed)
    for start in range(0, simulate_tags, _CHUNK):
        count = min(_CHUNK, simulate_tags - start)
        yield len(tags) + start, rng.integers(0, 256, size=(count, n_bytes), dtype=np.uint8)


def _tag_name(index: int, tags: Sequence[str]) -> str:
    return tags[index] if index < len(tags) else f"sim-{index - len(tags)}"


@dataclass(frozen=True)
class _Prescreen:
    """Who gets the expensive statistics: a per-candidate rule fixed before any codeword is seen.

    A candidate is chosen when its agreement reaches `total` or, in some window of two adjacent
    64-position blocks, reaches that window's entry of `windows` (integer thresholds from a
    z-score; they only set how many innocents are scored in full, never the bound). Windows catch
    a leaker who is present in only part of a long title; shorter windows would not help, since
    accusing anyone takes at least ~51 agreeing positions.
    """

    everyone: bool
    total: int
    windows: np.ndarray  # int16 (n_windows,): thresholds for windows of 2 x 64 positions


def _block_counts(same: np.ndarray) -> np.ndarray:
    """Popcount per 64-position block of a packed uint8 array (rows, n_words * 8), uint8 (rows, n_words)."""
    return np.bitwise_count(same.view(np.uint64))


def _windows(blocks: np.ndarray) -> np.ndarray:
    """Sums of two adjacent blocks, int16 (rows, n_blocks - 1); a single block stands alone."""
    blocks = blocks.astype(np.int16)
    return blocks if blocks.shape[-1] == 1 else blocks[..., :-1] + blocks[..., 1:]


def _prescreen_rule(evidence: _Evidence, n_candidates: int) -> _Prescreen:
    mask = evidence.hard_mask[None, :]
    compared = _windows(_block_counts(mask))[0]
    if n_candidates * evidence.n_positions <= _SCORE_EVERYONE_WORK:
        return _Prescreen(everyone=True, total=0, windows=np.zeros_like(compared))
    rate = _PRESCREEN_EXPECTED / n_candidates / 2.0

    def at_least(n: np.ndarray | int, z: float) -> np.ndarray:
        # Agreement a with (2a - n) / sqrt(n) >= z; windows with under 8 positions never choose.
        n = np.asarray(n, dtype=np.float64)
        need = np.ceil((n + z * np.sqrt(n)) / 2.0)
        return np.where(n >= 8, need, 32767).astype(np.int16)

    return _Prescreen(
        everyone=False,
        total=int(at_least(evidence.compared, float(ndtri(1.0 - rate)))),
        windows=at_least(compared, float(ndtri(1.0 - rate / max(len(compared), 1)))),
    )


def _scan(packed: np.ndarray, evidence: _Evidence, rule: _Prescreen) -> tuple[np.ndarray, np.ndarray]:
    """Agreement counts int32 (rows,) and the pre-screen decision bool (rows,) for packed codewords."""
    same = np.bitwise_not(np.bitwise_xor(packed, evidence.hard_bits)) & evidence.hard_mask
    per_word = _block_counts(same)
    agreement = per_word.sum(axis=1, dtype=np.int32)
    if rule.everyone:
        return agreement, np.ones(len(packed), dtype=bool)
    chosen = (agreement >= rule.total) | (_windows(per_word) >= rule.windows).any(axis=1)
    return agreement, chosen


# --------------------------------------------------------------------------------------------
# Accusation


@dataclass(frozen=True)
class CandidateScores:
    """Every candidate's bound; candidate i is tags[i], then simulated tag sim-(i - len(tags))."""

    log_bound: np.ndarray  # float64 (n_candidates,): ln of the bound on P(innocent scores this high), <= 0
    agreement: np.ndarray  # int32 (n_candidates,): agreements with the single-variant positions
    compared: int  # positions with a single variant read
    positions_observed: int  # positions not erased
    threshold: float  # total_false_alarm / n_candidates
    found_in_round2: int  # accused candidates that needed the first accused copies as side information


def score_candidates(
    observations: Observations,
    *,
    key: bytes,
    tags: Sequence[str],
    simulate_tags: int = 0,
    total_false_alarm: float = 1e-9,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CandidateScores:
    """Bound, for every candidate, the chance that an innocent scores as high; progress(done, total) per chunk."""
    symbols = np.asarray(observations.symbols, dtype=np.int8)
    evidence = _evidence(observations)
    n_positions = evidence.n_positions
    n_candidates = len(tags) + simulate_tags
    if n_candidates == 0:
        raise ValueError("no candidate tags to score")
    threshold = total_false_alarm / n_candidates
    log_threshold = math.log(threshold)

    # Pass 1 over all candidates: exact agreement counts, and the pre-screen.
    rule = _prescreen_rule(evidence, n_candidates)
    pairs = _PairPool(_pair_agreement_needed(evidence, n_candidates, log_threshold))
    agreement = np.zeros(n_candidates, dtype=np.int32)
    chosen_index: list[np.ndarray] = []
    chosen_packed: list[np.ndarray] = []
    for start, packed in _candidate_chunks(key, tags, simulate_tags, n_positions, seed):
        agreement[start : start + len(packed)], chosen = _scan(packed, evidence, rule)
        chosen_index.append(start + np.flatnonzero(chosen))
        chosen_packed.append(packed[chosen])
        pairs.offer(start, agreement[start : start + len(packed)], packed)
        if progress is not None:
            progress(start + len(packed), n_candidates)

    index = np.concatenate(chosen_index)
    bits = np.unpackbits(np.concatenate(chosen_packed), axis=1, bitorder="little")[:, :n_positions]

    log_bound = np.minimum(0.0, evidence.log_tail[agreement] - math.log(BUDGET_BINOMIAL))
    if len(index):
        log_ratio1 = _in_row_chunks(lambda b: _round1_log_ratio(evidence, b), bits)
        log_bound[index] = np.minimum(log_bound[index], -log_ratio1 - math.log(BUDGET_ROUND1))

    # Round 2: the first-round accusations (each a per-candidate decision) become side information.
    first_round = np.flatnonzero(log_bound <= log_threshold)
    found_in_round2 = 0
    rest = ~np.isin(index, first_round)
    known_rows = np.flatnonzero(~rest)  # first-round accused whose codewords are at hand
    if len(known_rows) and rest.any():
        best_first = known_rows[np.argsort(log_bound[index[known_rows]], kind="stable")][:_ROUND2_MAX_KNOWN]
        known = bits[best_first]
        log_ratio2 = _in_row_chunks(lambda b: _round2_log_ratio(evidence, symbols, known, b), bits[rest])
        targets = index[rest]
        log_bound[targets] = np.minimum(log_bound[targets], -log_ratio2 - math.log(BUDGET_ROUND2))
        found_in_round2 = int((log_bound[targets] <= log_threshold).sum())

    # Pairs: a candidate is scored with the best partner among the candidates that could be one of
    # an averaged pair; choosing the partner costs a factor N - 1 (union over all possible partners).
    # Any subset of partners only lowers the maximum, so keeping the best-agreeing few is safe.
    pair_index, pair_packed = pairs.result()
    if len(pair_index) >= 2:
        pair_bits = np.unpackbits(pair_packed, axis=1, bitorder="little")[:, :n_positions]
        log_ratio_pair = _best_pair_log_ratio(evidence, pair_bits)
        log_p_pair = math.log(n_candidates - 1) - log_ratio_pair - math.log(BUDGET_PAIRS)
        log_bound[pair_index] = np.minimum(log_bound[pair_index], log_p_pair)

    return CandidateScores(
        log_bound=log_bound,
        agreement=agreement,
        compared=evidence.compared,
        positions_observed=evidence.observed,
        threshold=threshold,
        found_in_round2=found_in_round2,
    )


def accuse(
    observations: Observations,
    *,
    key: bytes,
    tags: Sequence[str],
    simulate_tags: int = 0,
    total_false_alarm: float = 1e-9,
    seed: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verdict:
    """Accuse every candidate whose bound is <= total_false_alarm / N; progress(done, total) per chunk of candidates."""
    scores = score_candidates(
        observations, key=key, tags=tags, simulate_tags=simulate_tags,
        total_false_alarm=total_false_alarm, seed=seed, progress=progress,
    )
    log_bound = scores.log_bound
    log_threshold = math.log(scores.threshold)

    def accusation(i: int) -> Accusation:
        lb = float(log_bound[i])
        return Accusation(
            tag=_tag_name(i, tags),
            score=-lb,
            bound=math.exp(lb),
            log10_bound=lb / math.log(10),
            agreement=int(scores.agreement[i]),
            compared=scores.compared,
        )

    accused_index = np.flatnonzero(log_bound <= log_threshold)
    accused_index = accused_index[np.argsort(log_bound[accused_index], kind="stable")]
    accused = [accusation(int(i)) for i in accused_index]
    others = np.flatnonzero(log_bound > log_threshold)
    runner_up = accusation(int(others[np.argmin(log_bound[others])])) if len(others) else None
    n_candidates = len(log_bound)
    return Verdict(
        accused=accused,
        runner_up=runner_up,
        positions_observed=scores.positions_observed,
        n_candidates=n_candidates,
        threshold=scores.threshold,
        reason=_reason(observations, scores, accused, runner_up, total_false_alarm),
    )


def _reason(
    observations: Observations,
    scores: CandidateScores,
    accused: list[Accusation],
    runner_up: Accusation | None,
    total_false_alarm: float,
) -> str:
    n_candidates = len(scores.log_bound)
    if accused:
        extra = f", {scores.found_in_round2} of them given the first accused copies" if scores.found_in_round2 else ""
        return (
            f"{len(accused)} tag(s) accused{extra}: each bound is at or below {scores.threshold:.3g} "
            f"(= {total_false_alarm:.3g} / {n_candidates} candidates), so the chance of accusing any "
            f"innocent is at most {total_false_alarm:.3g}"
        )
    symbols = np.asarray(observations.symbols)
    if scores.positions_observed == 0:
        return "nobody accused: no position of the leak could be read (all erased), so there is no evidence"
    if scores.compared == 0:
        n_both = int((symbols == SYMBOL_BOTH).sum())
        n_erased = len(symbols) - scores.positions_observed
        return (
            f"nobody accused: no position shows a single variant ({n_both} both, {n_erased} erased), "
            "so the leak carries no evidence against any one tag"
        )
    best = runner_up.log10_bound if runner_up else 0.0
    return (
        f"nobody accused: the best candidate's bound 10^{best:.1f} is above the threshold {scores.threshold:.3g}; "
        f"over {scores.compared} positions with a single variant no codeword agrees with the leak beyond chance"
    )
