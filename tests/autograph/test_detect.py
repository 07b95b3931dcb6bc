"""Per-position detection: z scores against the null, symbols, and the exact codeword of a real copy
read back after a re-encode and after a downscale with crop."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from leaktrace.autograph import detect
from leaktrace.autograph.assemble import write_copy
from leaktrace.autograph.code import codeword
from leaktrace.autograph.reference import load_reference
from leaktrace.autograph.trace import observe

A, B, BOTH, ERASED = detect.SYMBOL_A, detect.SYMBOL_B, detect.SYMBOL_BOTH, detect.SYMBOL_ERASED


def _templates(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((2, 180, 320)).astype(np.float32)
    return np.stack([cv2.GaussianBlur(n, (0, 0), 0.8) for n in noise]) * 3


def _content(seed: int) -> np.ndarray:
    """A smooth picture-like residual that the high-pass and the null must cope with."""
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.standard_normal((180, 320)).astype(np.float32), (0, 0), 6) * 40


def test_present_variant_stands_out_and_the_other_stays_null() -> None:
    templates = _templates(1)
    rng = np.random.default_rng(2)
    residual = 0.3 * templates[0] + _content(3) + rng.standard_normal((180, 320)).astype(np.float32) * 3
    weight = np.ones((180, 320), np.float32)
    za, zb = detect.position_z(residual, weight, templates)
    assert za > 10
    assert abs(zb) < 4


def test_averaged_copies_show_both_variants() -> None:
    templates = _templates(4)
    rng = np.random.default_rng(5)
    residual = 0.15 * (templates[0] + templates[1]) + rng.standard_normal((180, 320)).astype(np.float32) * 3
    z = detect.position_z(residual, np.ones((180, 320), np.float32), templates)
    assert z.min() > 6
    assert detect.decide(z[None])[0] == BOTH


def test_no_mark_gives_null_scores() -> None:
    templates = _templates(6)
    zs = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        residual = _content(1000 + seed) + rng.standard_normal((180, 320)).astype(np.float32) * 3
        zs.append(detect.position_z(residual, np.ones((180, 320), np.float32), templates))
    zs = np.array(zs)
    assert np.abs(zs).max() < detect.Z_PRESENT
    assert abs(zs.mean()) < 0.8 and 0.5 < zs.std() < 1.6
    assert (detect.decide(zs) == ERASED).all()


def test_decide_symbols() -> None:
    z = np.array([[40, 0.5], [-1, 35], [22, 19], [2, 1], [np.nan, np.nan], [60, 7]], np.float32)
    # the last row: a weak second variant next to a strong one is cross-talk, not a second copy
    assert detect.decide(z).tolist() == [A, B, BOTH, ERASED, ERASED, A]


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


@pytest.mark.parametrize("attack", [
    ["-c:v", "libx264", "-crf", "30"],
    ["-vf", "crop=544:306:48:27,scale=448:252", "-c:v", "libx264", "-crf", "30"],
], ids=["crf30", "crop-downscale-crf30"])
def test_reads_the_exact_codeword_of_a_copy(prepared_title, tmp_path: Path, attack: list[str]) -> None:
    copy = tmp_path / "copy.mp4"
    write_copy(prepared_title.outdir, "alice", copy)
    leak = tmp_path / "leak.mp4"
    _ffmpeg("-i", str(copy), *attack, "-an", str(leak))
    ref = load_reference(prepared_title.outdir)
    _, alignment, detection, _ = observe(leak, ref)
    assert alignment.matched, alignment.reason
    expected = codeword(prepared_title.key, "alice", ref.n_positions)
    assert detection.symbols.tolist() == expected.tolist()
    right = detection.z[np.arange(ref.n_positions), expected]
    wrong = detection.z[np.arange(ref.n_positions), 1 - expected]
    # every position above the decision level (this clip's smooth bokeh makes position 4 the weakest,
    # z about 7 after the crop and downscale), most far above it; the wrong variant at chance level
    assert right.min() > detect.Z_PRESENT
    assert np.median(right) > 12
    assert np.abs(wrong).max() < 4


def test_averaged_copies_read_as_both_where_the_codewords_differ(prepared_title, tmp_path: Path) -> None:
    write_copy(prepared_title.outdir, "alice", tmp_path / "alice.mp4")
    write_copy(prepared_title.outdir, "bob", tmp_path / "bob.mp4")
    leak = tmp_path / "average.mp4"
    _ffmpeg("-i", str(tmp_path / "alice.mp4"), "-i", str(tmp_path / "bob.mp4"),
            "-filter_complex", "[0:v][1:v]blend=all_mode=average", "-c:v", "libx264", "-crf", "23", "-an", str(leak))
    ref = load_reference(prepared_title.outdir)
    _, _, detection, _ = observe(leak, ref)
    alice = codeword(prepared_title.key, "alice", ref.n_positions)
    bob = codeword(prepared_title.key, "bob", ref.n_positions)
    assert (alice != bob).any() and (alice == bob).any()   # both cases occur with this key
    expected = np.where(alice == bob, alice, BOTH)
    assert detection.symbols.tolist() == expected.tolist()
