"""prepare(): formats, frame timing, GOP/fragment alignment, the title folder, errors, strength."""

from __future__ import annotations

import json
import math
import shutil
import stat
import subprocess
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from leaktrace.autograph.assemble import variant_copy, write_copy
from leaktrace.autograph.embed import (
    PrepareError,
    StrengthControl,
    StrengthModel,
    encode_unmarked,
    frames_per_position,
    prepare,
    target_mse,
)
from leaktrace.autograph.package import load_title
from leaktrace.autograph.quality import decode_luma, measure_psnr
from leaktrace.cli import app


def _video_packets(source) -> list[tuple[int, bool]]:
    """(frame index from the pts, keyframe flag) of every video packet, in presentation order.

    Indices count from the first frame: like ffmpeg's own fragmented MP4 output, the muxer starts
    the video at the B-frame delay (a few frames) instead of 0.
    """
    with av.open(source) as container:
        stream = container.streams.video[0]
        fps, time_base = stream.guessed_rate, stream.time_base
        packets = [(packet.pts, packet.is_keyframe) for packet in container.demux(stream) if packet.size > 0]
    first = min(pts for pts, _ in packets)
    packets = [((pts - first) * time_base * fps, key) for pts, key in packets]
    assert all(index.denominator == 1 for index, _ in packets), "frames are off the constant-rate grid"
    return sorted((int(index), key) for index, key in packets)


def test_prepared_title_folder(prepared_title):
    out, manifest = prepared_title.outdir, prepared_title.manifest
    assert sorted(p.name for p in out.iterdir()) == ["A.m4s", "B.m4s", "index.json", "init.mp4", "key.json",
                                                     "manifest.json", "reference"]
    assert stat.S_IMODE((out / "key.json").stat().st_mode) == 0o600
    assert bytes.fromhex(json.loads((out / "key.json").read_text())["key"]) == prepared_title.key
    assert prepared_title.key.hex() not in (out / "manifest.json").read_text()
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (manifest["rendition"]["width"], manifest["rendition"]["height"]) == (640, 360)
    assert manifest["rendition"]["fps"] == [25, 1]
    assert manifest["n_frames"] == 150 and manifest["frames_per_position"] == 25
    assert [(p["first_frame"], p["frame_count"]) for p in manifest["positions"]] == [(i * 25, 25) for i in range(6)]
    assert manifest["audio"]["codec"] == "aac"

    title = load_title(out)
    assert title.n_positions == 6 and title.key == prepared_title.key
    assert prepared_title.key.hex() not in repr(title)
    for variant in ("A", "B"):
        entries = [f[variant.lower()] for f in title.fragments]
        assert entries[0]["offset"] == 0
        assert all(a["offset"] + a["size"] == b["offset"] for a, b in zip(entries, entries[1:]))
        assert entries[-1]["offset"] + entries[-1]["size"] == title.variant_path(variant).stat().st_size


def test_one_closed_gop_per_position_on_a_constant_frame_grid(prepared_title):
    manifest = prepared_title.manifest
    starts = {p["first_frame"] for p in manifest["positions"]}
    for variant in ("A", "B"):
        with variant_copy(prepared_title.outdir, variant) as copy, copy.open() as f:
            packets = _video_packets(f)
        assert [index for index, _ in packets] == list(range(manifest["n_frames"]))
        assert {index for index, key in packets if key} == starts


def test_same_audio_packets_in_both_variants(prepared_title):
    def audio_packets(variant: str) -> list[tuple[int, bytes]]:
        with variant_copy(prepared_title.outdir, variant) as copy, copy.open() as f, av.open(f) as container:
            return [(p.pts, bytes(p)) for p in container.demux(audio=0) if p.size > 0]

    a = audio_packets("A")
    assert len(a) > 200  # 6 s of 48 kHz AAC: about 281 packets
    assert a == audio_packets("B")


def test_variants_carry_the_pattern_only_in_luma(prepared_title):
    with variant_copy(prepared_title.outdir, "A") as a, a.open() as fa, av.open(fa) as ca:
        frame_a = next(ca.decode(video=0)).to_ndarray()
    with variant_copy(prepared_title.outdir, "B") as b, b.open() as fb, av.open(fb) as cb:
        frame_b = next(cb.decode(video=0)).to_ndarray()
    luma_diff = np.abs(frame_a[:360].astype(int) - frame_b[:360].astype(int))
    chroma_diff = np.abs(frame_a[360:].astype(int) - frame_b[360:].astype(int))
    assert luma_diff.mean() > 0.5
    assert chroma_diff.mean() < luma_diff.mean() / 3


@pytest.mark.parametrize(("fps", "seconds", "frames"), [
    (Fraction(25, 2), 1.0, 13), (Fraction(25, 2), 2.0, 25), (Fraction(30000, 1001), 2.0, 60),
    (Fraction(30000, 1001), 1.0, 30), (Fraction(24000, 1001), 2.0, 48), (Fraction(25), 2.0, 50),
])
def test_frames_per_position_rounds_to_the_nearest_frame(fps, seconds, frames):
    assert frames_per_position(seconds, fps) == frames


FORMAT_CASES = {
    # name: (clip, options, expected fps, expected size, audio layout)
    "webm-vp8-vorbis": ("bbb_0-30s_720p24.webm", {"height": 144, "duration": 2.0}, Fraction(24), (256, 144), "stereo"),
    "mkv-h264": ("skateboard_puddle_2048x1080p25_7s.mkv", {"height": 144, "duration": 2.0}, Fraction(25), (274, 144), None),
    "12.5fps-aac": ("car_parkinglot_432p12_30s.mp4", {"height": 144, "duration": 3.0}, Fraction(25, 2), (256, 144), "stereo"),
    "29.97fps-mp3": ("box_handheld_480p30_15s.mp4", {"height": 144, "duration": 3.0}, Fraction(30000, 1001), (192, 144), "mono"),
    "1920x818": ("sintel_1920x818p30_10s.mp4", {"duration": 0.5}, Fraction(30), (1920, 818), None),
}


@pytest.mark.parametrize("case", list(FORMAT_CASES))
def test_prepare_handles_input_formats(clip_path, case, tmp_path):
    name, options, fps, size, audio = FORMAT_CASES[case]
    manifest = prepare(clip_path(name), tmp_path / "title", position_seconds=1.0, **options)
    n_frames = int(round(options["duration"] * fps))
    assert Fraction(*manifest["rendition"]["fps"]) == fps
    assert (manifest["rendition"]["width"], manifest["rendition"]["height"]) == size
    assert manifest["n_frames"] == n_frames
    assert (manifest["audio"] or {}).get("layout") == audio

    out = tmp_path / "copy.mp4"
    write_copy(tmp_path / "title", "someone", out)
    packets = _video_packets(str(out))
    assert [index for index, _ in packets] == list(range(n_frames))
    assert {index for index, key in packets if key} == {p["first_frame"] for p in manifest["positions"]}
    with av.open(str(out)) as container:
        assert container.streams.video[0].guessed_rate == fps
        assert bool(container.streams.audio) == (audio is not None)


def test_full_range_hevc_is_converted_to_limited_range(clip_path, tmp_path):
    source = clip_path("overcast_sky_1080p30_2s_hevc.mp4")
    prepare(source, tmp_path / "title", height=180, duration=1.0, position_seconds=1.0)
    with av.open(str(source)) as container:
        frame = next(container.decode(video=0))
        assert frame.color_range == 2  # the clip really is full range
        plane = frame.planes[0]
        full = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
    full_small = cv2.resize(full, (320, 180), interpolation=cv2.INTER_AREA).astype(np.float64)
    with variant_copy(tmp_path / "title", "A") as copy, copy.open() as f:
        marked = next(decode_luma(f)).astype(np.float64)
    assert marked.shape == (180, 320)
    # limited = 16 + full x 219/255; without the conversion the slope would be 1 and the offset 0
    slope, offset = np.polyfit(full_small.ravel(), marked.ravel(), 1)
    assert abs(slope - 219 / 255) < 0.02 and abs(offset - 16) < 3, (slope, offset)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed")
def test_odd_sizes_lose_one_column_and_row(clip_path, tmp_path):
    odd = tmp_path / "odd.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(clip_path("grid_talking_heads_360x288p25_30s.mp4")),
                    "-t", "1", "-vf", "scale=355:201", "-c:v", "ffv1", str(odd)], check=True)
    manifest = prepare(odd, tmp_path / "title", position_seconds=1.0)
    assert (manifest["rendition"]["width"], manifest["rendition"]["height"]) == (354, 200)
    assert manifest["n_frames"] == 25


def test_prepare_refuses_bad_input_and_options(clip_path, tmp_path):
    clip = clip_path("caminandes_360p24_10s.mp4")
    not_video = tmp_path / "notes.txt"
    not_video.write_text("not a video")
    with pytest.raises(PrepareError, match="cannot read input"):
        prepare(not_video, tmp_path / "a")
    with pytest.raises(PrepareError, match="does not exist"):
        prepare(tmp_path / "missing.mp4", tmp_path / "a")
    with pytest.raises(PrepareError, match="unknown strength"):
        prepare(clip, tmp_path / "a", strength="extreme")
    with pytest.raises(PrepareError, match="position_seconds"):
        prepare(clip, tmp_path / "a", position_seconds=0.5)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me")
    with pytest.raises(PrepareError, match="not empty"):
        prepare(clip, busy, duration=1.0)
    with pytest.raises(PrepareError, match="not a prepared title"):
        prepare(clip, busy, duration=1.0, force=True)
    assert (busy / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "a").exists()


def test_a_prepare_that_fails_midway_leaves_an_empty_folder(clip_path, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel_after_two_positions(done: int, planned: int) -> None:
        if done >= 48:
            raise Cancelled

    outdir = tmp_path / "title"
    with pytest.raises(Cancelled):
        prepare(clip_path("caminandes_360p24_10s.mp4"), outdir, duration=4.0, progress=cancel_after_two_positions)
    assert outdir.is_dir() and list(outdir.iterdir()) == []
    # and the folder takes a new title without --force
    manifest = prepare(clip_path("caminandes_360p24_10s.mp4"), outdir, duration=2.0)
    assert manifest["n_frames"] == 48 and (outdir / "manifest.json").is_file()


def test_cli_prepare_and_copy(clip_path, tmp_path):
    clip = clip_path("caminandes_360p24_10s.mp4")
    runner = CliRunner()
    outdir = tmp_path / "title"
    args = ["autograph", "prepare", str(clip), str(outdir), "--position-seconds", "1", "--duration", "2",
            "--height", "144", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 positions" in result.output
    assert "luma PSNR against the unmarked encode: A " in result.output and "held above" not in result.output

    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--force" in again.output
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0

    bad = runner.invoke(app, ["autograph", "prepare", str(clip), str(tmp_path / "x"), "--strength", "max"])
    assert bad.exit_code != 0 and "unknown strength" in bad.output
    unreadable = runner.invoke(app, ["autograph", "prepare", str(tmp_path / "none.mp4"), str(tmp_path / "y")])
    assert unreadable.exit_code != 0 and "does not exist" in unreadable.output

    copy = runner.invoke(app, ["autograph", "copy", str(outdir), "--tag", "alice", "-o", str(tmp_path / "alice.mp4")])
    assert copy.exit_code == 0, copy.output
    with av.open(str(tmp_path / "alice.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 48
    missing = runner.invoke(app, ["autograph", "copy", str(tmp_path / "nothing"), "--tag", "a", "-o", str(tmp_path / "n.mp4")])
    assert missing.exit_code != 0 and "not a prepared title" in missing.output


def test_cli_prepare_says_when_the_content_holds_the_mark_below_its_strength(clip_path, tmp_path):
    # sintel's opening is smooth and dark: at `strong` the mask's limit holds the mark near 46 dB
    args = ["autograph", "prepare", str(clip_path("sintel_1920x818p30_10s.mp4")), str(tmp_path / "title"),
            "--strength", "strong", "--position-seconds", "1", "--duration", "2", "--height", "144", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(target 40 dB)" in result.output and "held above the target" in result.output


@pytest.mark.parametrize(("clip", "strength", "seconds"), [
    ("tears_of_steel_360p24_10s.mp4", "light", None),   # film grain: 40.6 dB with two separate encodes
    ("tears_of_steel_360p24_10s.mp4", "medium", None),
    ("caminandes_360p24_10s.mp4", "strong", None),      # animation: smooth, and a fade to black
    ("box_handheld_480p30_15s.mp4", "medium", None),    # handheld: 42.5 dB with two separate encodes
    ("car_parkinglot_432p12_30s.mp4", "light", 6.0),
])
def test_strength_hits_its_psnr_within_one_db(clip_path, clip, strength, seconds, tmp_path_factory):
    source = clip_path(clip)
    base = tmp_path_factory.getbasetemp() / "psnr"
    base.mkdir(exist_ok=True)
    outdir = base / f"{clip}-{strength}"
    manifest = prepare(source, outdir, strength=strength, duration=seconds, key=bytes(32))
    assert manifest["pattern"]["target_reached"] is True
    quality = measure_psnr(source, outdir, unmarked_path=base / f"{clip}-{seconds}-unmarked.mp4")
    target = {"light": 48.0, "medium": 44.0, "strong": 40.0}[strength]
    for variant in ("A", "B"):
        assert abs(quality[variant].psnr_db - target) <= 1.0, (variant, quality[variant])
        # what prepare() measured while encoding is what an independent decode measures
        assert manifest["pattern"]["measured_psnr_db"][variant] == pytest.approx(quality[variant].psnr_db, abs=1e-6)


def _video_packets_bytes(path) -> dict[int, bytes]:
    """Every video packet's bytes by pts."""
    with av.open(str(path)) as container:
        return {packet.pts: bytes(packet) for packet in container.demux(video=0) if packet.size > 0}


def _decoded(path) -> dict[int, tuple[int, np.ndarray]]:
    """Picture type and luma (as int) of every decoded picture by pts."""
    with av.open(str(path)) as container:
        return {frame.pts: (int(frame.pict_type), _luma(frame)) for frame in container.decode(video=0)}


def _luma(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray()[: frame.height].astype(int)


SINTEL_CUT = 72   # the first scene cut of sintel_1920x818p30_10s.mp4 (2.4 s), inside its second position


@pytest.fixture(scope="module")
def cut_title(clip_path, tmp_path_factory):
    """4 s of sintel at 480x270 (two 2 s positions, a scene cut in the second), with U and A as files."""
    folder = tmp_path_factory.mktemp("cut")
    source = clip_path("sintel_1920x818p30_10s.mp4")
    manifest = prepare(source, folder / "title", height=270, duration=4.0, key=bytes(range(32)))
    paths = {"U": encode_unmarked(source, folder / "unmarked.mp4", manifest)}
    for variant in ("A", "B"):
        with variant_copy(folder / "title", variant) as copy, copy.open() as f:
            paths[variant] = folder / f"{variant}.mp4"
            paths[variant].write_bytes(f.read())
    return manifest, paths


def test_variants_are_the_unmarked_encode_with_other_intra_pictures(cut_title):
    manifest, paths = cut_title
    u, a, b = (_video_packets_bytes(paths[name]) for name in ("U", "A", "B"))
    assert sorted(a) == sorted(b) == sorted(u) and len(u) == manifest["n_frames"]
    types = {pts: kind for pts, (kind, _) in _decoded(paths["U"]).items()}
    intra = sorted(pts for pts, kind in types.items() if kind == av.video.frame.PictureType.I)
    frame = sorted(u)
    # an intra picture per position start, and x264's own at the scene cuts
    assert [frame.index(pts) for pts in intra] == [0, 60, SINTEL_CUT, 95]
    assert manifest["pattern"]["intra_pictures"] == len(intra)
    for pts in u:
        if pts in intra:   # every intra picture carries its variant's mark
            assert len({u[pts], a[pts], b[pts]}) == 3
        else:              # every other picture is the unmarked encode's, byte for byte
            assert a[pts] == u[pts] and b[pts] == u[pts]


def test_the_mark_is_renewed_after_a_scene_cut(cut_title):
    _, paths = cut_title
    u, a = _decoded(paths["U"]), _decoded(paths["A"])
    frames = sorted(u)
    assert len(a) == len(u)
    mark = [float(np.sqrt(np.mean((a[pa][1] - u[pu][1]) ** 2))) for pa, pu in zip(sorted(a), frames, strict=True)]
    # the new scene is coded afresh: marked at its first picture, its mark is about as strong as at
    # the position's IDR (measured 1.86-2.32 over the next ten frames against 2.32); with only the
    # IDRs marked it keeps next to none of it
    assert np.mean(mark[SINTEL_CUT: SINTEL_CUT + 10]) > 0.8 * mark[60]


def _audio_from_first_video_frame(path, seconds: float) -> tuple[np.ndarray, int]:
    """Mono audio samples whose index 0 is presented with the first video frame."""
    with av.open(str(path)) as container:
        first_video = next(container.decode(video=0)).time
    with av.open(str(path)) as container:
        chunks, first_audio = [], None
        for frame in container.decode(audio=0):
            first_audio = frame.time if first_audio is None else first_audio
            chunks.append(frame.to_ndarray().reshape(-1, frame.samples).mean(axis=0))
        rate = frame.sample_rate
    samples = np.concatenate(chunks)
    offset = int(round((first_video - first_audio) * rate))
    return samples[offset:offset + int(seconds * rate)], rate


def test_audio_stays_in_sync_with_the_video(clip_path, tmp_path):
    source = clip_path("bbb_0-30s_720p24.webm")
    prepare(source, tmp_path / "title", height=144, duration=4.0, position_seconds=1.0)
    write_copy(tmp_path / "title", "viewer", tmp_path / "copy.mp4")
    original, rate = _audio_from_first_video_frame(source, 3.0)
    copied, _ = _audio_from_first_video_frame(tmp_path / "copy.mp4", 3.0)
    excerpt = original[rate: rate + rate // 2]  # 0.5 s of music, 1 s after the first frame
    lags = np.arange(-rate // 10, rate // 10)
    scores = [float(np.dot(excerpt, copied[rate + lag: rate + lag + len(excerpt)])) for lag in lags]
    lag_ms = 1000 * lags[int(np.argmax(scores))] / rate
    assert abs(lag_ms) <= 2.0, f"audio is {lag_ms:.1f} ms late"


def test_undecodable_packets_are_made_up_by_repeating_the_last_frame(clip_path, tmp_path):
    # box_handheld's first packet does not decode: 456 packets, 455 frames
    manifest = prepare(clip_path("box_handheld_480p30_15s.mp4"), tmp_path / "title", height=96)
    assert (manifest["n_frames"], manifest["source"]["decoded_frames"], manifest["padded_frames"]) == (456, 455, 1)
    with variant_copy(tmp_path / "title", "A") as copy, copy.open() as f:
        lumas = list(decode_luma(f))
    assert len(lumas) == 456
    assert np.abs(lumas[-1].astype(int) - lumas[-2].astype(int)).mean() < 1.0


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed")
@pytest.mark.parametrize(("codec", "container"), [("libvpx-vp9", "webm"), ("libx265", "mkv")])
def test_prepare_reads_vp9_and_hevc(clip_path, codec, container, tmp_path):
    source = tmp_path / f"source.{container}"
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(clip_path("grid_talking_heads_360x288p25_30s.mp4")),
                           "-t", "1", "-c:v", codec, *(["-deadline", "realtime", "-cpu-used", "8"] if "vpx" in codec else
                                                       ["-preset", "ultrafast"]), "-an", str(source)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode {codec}: {proc.stderr.decode()[-200:]}")
    manifest = prepare(source, tmp_path / "title", position_seconds=1.0)
    assert manifest["source"]["video_codec"] == {"libvpx-vp9": "vp9", "libx265": "hevc"}[codec]
    assert (manifest["rendition"]["width"], manifest["rendition"]["height"], manifest["n_frames"]) == (360, 288, 25)


def test_a_marked_picture_that_does_not_fit_the_unmarked_headers_is_refused():
    from leaktrace.autograph import h264
    from leaktrace.autograph.encoder import x264_encoder, yuv_frame
    from leaktrace.autograph.intra import IntraMarker
    from leaktrace.autograph.plan import Rendition

    rendition = Rendition(64, 48, Fraction(25), 25, False)
    encoder = x264_encoder(rendition, crf=20, preset="veryfast")
    yuv = np.random.default_rng(3).integers(16, 235, (72, 64), dtype=np.uint8)
    idr = b"".join(bytes(p) for p in encoder.encode(yuv_frame(yuv, 0)) + encoder.encode(None))
    headers = h264.parameter_set_units(h264.nal_units(idr))
    assert [unit[0] & 0x1F for unit in headers] == [7, 8]
    nothing = (np.zeros((48, 64), np.uint8), np.zeros((48, 64), np.uint8))
    marker = IntraMarker(rendition, qp=19, preset="veryfast", parameter_sets=headers)
    assert h264.is_intra_picture(idr)
    marked = marker.mark(idr, yuv, nothing)
    assert [u[0] & 0x1F for u in h264.nal_units(marked)].count(5) >= 1
    # another preset changes the PPS: its slices would not decode under U's headers
    other = IntraMarker(rendition, qp=19, preset="slow", parameter_sets=headers)
    with pytest.raises(PrepareError, match="parameter sets"):
        other.mark(idr, yuv, nothing)


def _control(n_positions: int = 10) -> StrengthControl:
    positions = [{"index": i, "first_frame": 50 * i, "frame_count": 50} for i in range(n_positions)]
    return StrengthControl(StrengthModel(floor_mse=0.5, gain=0.6), target_mse=target_mse("medium"),
                           positions=positions)


def test_strength_control_remarks_a_position_that_lands_off_and_keeps_to_its_bounds():
    control = _control()
    target = target_mse("medium")
    first = control.rms_for(0)
    assert control.wanted[0] == pytest.approx(target)
    assert control.retry_rms(0, [(first, target * 1.05)]) is None            # 0.2 dB: done
    # half the predicted power arrived: one measurement rescales the model to this position
    rescaled = control.retry_rms(0, [(first, target / 2)])
    assert StrengthModel(0.25, 0.3).mse(rescaled) == pytest.approx(target, rel=1e-6)
    # a drifting mark (MSE grows fast with the RMS): two measurements fit a + b x rms^2
    tried = [(first, 4 * target), (0.8 * first, 2.5 * target)]
    slope = (4 - 2.5) * target / (first**2 - (0.8 * first) ** 2)
    fitted = control.retry_rms(0, tried)
    assert 4 * target - slope * first**2 + slope * fitted**2 == pytest.approx(target, rel=1e-6)
    # the bounds hold, and a bound already tried ends the search
    low, high = control.bounds
    assert control.retry_rms(0, [(first, 50 * target)]) == low
    assert control.retry_rms(0, [(first, 50 * target), (low, 20 * target)]) is None
    assert control.retry_rms(0, [(high, target / 50)]) is None


def test_strength_control_makes_up_for_a_position_in_the_next_ones():
    control = _control()
    target = target_mse("medium")
    for index in range(4):
        rms = control.rms_for(index)
        assert control.wanted[index] == pytest.approx(target)
        control.record(index, tried=[(rms, target)], kept=(rms, target))
    rms = control.rms_for(4)
    # half the power on the fifth position leaves the title 0.46 dB light: not marked again (the
    # first position would have been), and the next position aims higher to make up for it
    assert control.retry_rms(4, [(rms, target / 2)]) is None
    fresh = _control()
    assert fresh.retry_rms(0, [(fresh.rms_for(0), target / 2)]) is not None
    control.record(4, tried=[(rms, target / 2)], kept=(rms, target / 2))
    control.rms_for(5)
    assert control.wanted[5] == pytest.approx(1.5 * target)
    assert sorted(control.chosen) == [0, 1, 2, 3, 4]


def test_strength_control_lowers_a_position_whose_worst_frame_goes_over_the_peak():
    control = _control()
    target = target_mse("medium")
    first = control.rms_for(0)
    assert control.peak_mse == pytest.approx(4 * target)
    assert control.rms_ceiling([(first, 3 * target)]) == math.inf
    # a frame at 9x the target MSE: the mark must shrink by sqrt(0.9 x 4 / 9); the lowest ceiling counts
    assert control.rms_ceiling([(first, 9 * target)]) == pytest.approx(first * math.sqrt(0.9 * 4 / 9))
    ceiling = control.rms_ceiling([(first, 9 * target), (first, 100 * target)])
    assert ceiling == pytest.approx(first * math.sqrt(0.9 * 4 / 100)) and ceiling < control.bounds[0]
    # on target but over the peak: not done, and the retry goes to the ceiling, below the 0.5x bound
    assert control.retry_rms(0, [(first, target)], ceiling=ceiling) == pytest.approx(ceiling)
    assert control.retry_rms(0, [(first, target), (ceiling, 0.9 * target)], ceiling=ceiling) is None
    # a mark within the peak beats a closer one over it; over it, the least over comes first
    assert control.rank(0, mse=0.7 * target, peak_mse=3 * target) < control.rank(0, mse=target, peak_mse=5 * target)
    assert control.rank(0, mse=0.5 * target, peak_mse=5 * target) < control.rank(0, mse=target, peak_mse=6 * target)
