"""A tag's copy: byte-identical per tag, exact variant pixels per codeword, lazy range reads."""

from __future__ import annotations

import random
import shutil
import subprocess

import av
import numpy as np
import pytest

from leaktrace.autograph.assemble import TagCopy, variant_copy, write_copy
from leaktrace.autograph.code import codeword
from leaktrace.autograph.package import PackageError, load_title, parse_fragmented_mp4, split_variants
from leaktrace.autograph.quality import decode_luma


def _tags_with_distinct_codewords(key: bytes, n_positions: int) -> tuple[str, str]:
    """Two tags whose codewords differ and each use both variants (so the tests can fail)."""
    tags = [f"viewer-{i}" for i in range(100)]
    words = {t: codeword(key, t, n_positions) for t in tags}
    mixed = [t for t in tags if 0 < words[t].sum() < n_positions]
    first = mixed[0]
    second = next(t for t in mixed[1:] if not np.array_equal(words[t], words[first]))
    return first, second


def test_copy_is_byte_identical_for_a_tag_and_differs_between_tags(prepared_title, tmp_path):
    alice, bob = _tags_with_distinct_codewords(prepared_title.key, len(prepared_title.manifest["positions"]))
    write_copy(prepared_title.outdir, alice, tmp_path / "alice1.mp4")
    write_copy(prepared_title.outdir, alice, tmp_path / "alice2.mp4")
    write_copy(prepared_title.outdir, bob, tmp_path / "bob.mp4")
    first, again, other = ((tmp_path / n).read_bytes() for n in ("alice1.mp4", "alice2.mp4", "bob.mp4"))
    assert first == again
    assert first != other
    with TagCopy(prepared_title.outdir, alice) as copy:
        assert copy.size == len(first)
        assert b"".join(copy.iter_chunks(chunk_size=65536)) == first


def test_copy_decodes_to_the_variant_pixels_of_its_codeword(prepared_title, tmp_path):
    title = load_title(prepared_title.outdir)
    tag, _ = _tags_with_distinct_codewords(title.key, title.n_positions)
    with variant_copy(title, "A") as a, a.open() as fa:
        luma_a = list(decode_luma(fa))
    with variant_copy(title, "B") as b, b.open() as fb:
        luma_b = list(decode_luma(fb))
    with TagCopy(title, tag) as copy, copy.open() as f:
        luma_copy = list(decode_luma(f))
    word = codeword(title.key, tag, title.n_positions)

    assert len(luma_copy) == len(luma_a) == len(luma_b) == prepared_title.manifest["n_frames"]
    for position in prepared_title.manifest["positions"]:
        chosen, other = (luma_b, luma_a) if word[position["index"]] else (luma_a, luma_b)
        for f in range(position["first_frame"], position["first_frame"] + position["frame_count"]):
            assert np.array_equal(luma_copy[f], chosen[f]), f"frame {f} is not variant {'AB'[word[position['index']]]}"
            assert not np.array_equal(luma_copy[f], other[f]), f"frame {f}: A and B decode to the same pixels"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed")
def test_copy_plays_in_ffmpeg_without_errors(prepared_title, tmp_path):
    out = tmp_path / "copy.mp4"
    write_copy(prepared_title.outdir, "carol", out)
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == prepared_title.manifest["n_frames"]


def test_range_reads_equal_slices_of_the_whole_copy(prepared_title, tmp_path):
    out = tmp_path / "copy.mp4"
    write_copy(prepared_title.outdir, "dave", out)
    whole = out.read_bytes()
    title = load_title(prepared_title.outdir)
    boundaries = [title.init_size]
    with TagCopy(title, "dave") as copy:
        for entry, choice in zip(title.fragments, copy.codeword):
            boundaries.append(boundaries[-1] + entry["b" if choice else "a"]["size"])
        assert boundaries[-1] == copy.size == len(whole)
        rng = random.Random(7)
        ranges = [(0, 0), (0, 1), (0, len(whole)), (len(whole) - 1, 1), (len(whole), 10), (len(whole) - 5, 100)]
        ranges += [(b - 3, 7) for b in boundaries[:-1]]  # across every piece boundary
        ranges += [(rng.randrange(len(whole)), rng.randrange(1, 300_000)) for _ in range(40)]
        for offset, length in ranges:
            assert copy.read(offset, length) == whole[offset:offset + length], (offset, length)
        assert b"".join(copy.iter_chunks(start=1000, end=len(whole) - 1000, chunk_size=4096)) == whole[1000:-1000]
        with pytest.raises(ValueError):
            copy.read(-1, 10)


def test_a_copy_is_a_valid_fragmented_mp4_with_one_fragment_per_position(prepared_title, tmp_path):
    out = tmp_path / "copy.mp4"
    write_copy(prepared_title.outdir, "erin", out)
    layout = parse_fragmented_mp4(out)
    assert [f.sequence_number for f in layout.fragments] == list(range(1, len(prepared_title.manifest["positions"]) + 1))


def test_split_refuses_variants_that_are_not_interchangeable(prepared_title, tmp_path):
    # Two copies of the same title are interchangeable; a copy cut short is not.
    good, short = tmp_path / "good.mp4", tmp_path / "short.mp4"
    write_copy(prepared_title.outdir, "frank", good)
    layout = parse_fragmented_mp4(good)
    short.write_bytes(good.read_bytes()[: layout.fragments[-1].offset])
    n = len(prepared_title.manifest["positions"])
    (tmp_path / "ok").mkdir()
    split_variants(good, good, tmp_path / "ok", n_positions=n)
    (tmp_path / "bad").mkdir()
    with pytest.raises(PackageError, match="fragments"):
        split_variants(good, short, tmp_path / "bad", n_positions=n)
