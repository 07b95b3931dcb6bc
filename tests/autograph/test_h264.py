"""An intra picture re-encoded on its own takes the place of one of U's intra pictures after a scene cut."""

from fractions import Fraction

import av
import numpy as np
import pytest

from leaktrace.autograph import h264
from leaktrace.autograph.encoder import X264_PARAMS, retimed, yuv_frame

WIDTH, HEIGHT, FRAMES, CUT = 128, 96, 24, 12


def _encoder(*, extra: str, **rate: str) -> av.codec.context.CodecContext:
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 25), Fraction(25)
    encoder.options = {**rate, "preset": "veryfast", "forced-idr": "1", "x264-params": X264_PARAMS + extra}
    return encoder


def _two_scenes() -> list[np.ndarray]:
    """A smooth gradient panning, then (at CUT) a textured scene panning: yuv420p frames."""
    rng = np.random.default_rng(5)
    texture = rng.integers(30, 220, (HEIGHT, WIDTH + FRAMES), dtype=np.uint8)
    ramp = np.tile(np.linspace(40, 200, WIDTH + FRAMES).astype(np.uint8), (HEIGHT, 1))
    frames = []
    for index in range(FRAMES):
        yuv = np.full((HEIGHT * 3 // 2, WIDTH), 128, np.uint8)
        yuv[:HEIGHT] = (ramp if index < CUT else texture)[:, index: index + WIDTH]
        frames.append(yuv)
    return frames


def _bits(data: bytes) -> str:
    return "".join(f"{byte:08b}" for byte in data)


def _decode(access_units: list[bytes], like: list[av.Packet]) -> dict[int, np.ndarray]:
    decoder = av.CodecContext.create("h264", "r")
    lumas = {}
    for data, packet in zip(access_units, like, strict=True):
        for frame in decoder.decode(retimed(data, packet)):
            lumas[frame.pts] = frame.to_ndarray(format="yuv420p")
    for frame in decoder.decode(None):
        lumas[frame.pts] = frame.to_ndarray(format="yuv420p")
    return lumas


@pytest.mark.parametrize(("extra", "slices"), [("", 1), (":cabac=0", 1), ("", 3)],
                         ids=["cabac", "cavlc", "cabac-3-slices"])
def test_a_reencoded_picture_decodes_in_the_place_of_an_intra_picture_after_a_cut(extra, slices):
    encoder = _encoder(extra=extra, crf="20")
    packets = [p for index, yuv in enumerate(_two_scenes())
               for p in encoder.encode(yuv_frame(yuv, index, idr=index == 0))] + encoder.encode(None)
    unmarked = [bytes(packet) for packet in packets]
    headers = h264.parameter_set_units(h264.nal_units(unmarked[0]))
    syntax = h264.SliceSyntax.of(headers)
    assert syntax.cabac is (extra == "")
    intra = [p.pts for p, data in zip(packets, unmarked, strict=True) if h264.is_intra_picture(data)]
    assert intra == [0, CUT]                      # the forced IDR, and x264's intra picture at the cut
    assert [p.pts for p in packets if p.is_keyframe] == [0]
    number = next(n for n, p in enumerate(packets) if p.pts == CUT)
    assert h264.nal_type(h264.slice_units(h264.nal_units(unmarked[number]))[0]) == h264.NAL_SLICE

    u = _decode(unmarked, packets)
    picture = u[CUT].copy()
    picture[:HEIGHT] = np.clip(picture[:HEIGHT].astype(int) + np.where(np.arange(WIDTH) < WIDTH // 2, 4, -4), 0, 255)
    one_frame = _encoder(extra=f"{extra}:slices={slices}", qp="17")
    units = h264.nal_units(b"".join(bytes(p) for p in one_frame.encode(yuv_frame(picture, 0, idr=True))
                                    + one_frame.encode(None)))
    assert h264.parameter_set_units(units) == headers and len(h264.slice_units(units)) == slices
    alone = _decode([h264.annex_b(units)], packets[:1])[0]

    like = h264.slice_units(h264.nal_units(unmarked[number]))[0]
    marked = list(unmarked)
    marked[number] = h264.annex_b(h264.as_picture_of(h264.slice_units(units), like=like, syntax=syntax))
    # what makes a decoder read it as U's picture: the NAL header, frame number, order and marking
    rewritten = h264.slice_units(h264.nal_units(marked[number]))[0]
    header, target = h264.IntraSliceHeader.read(rewritten, syntax), h264.IntraSliceHeader.read(like, syntax)
    assert rewritten[0] == like[0] and header.marking_end == target.marking_end
    assert _bits(header.rbsp)[: header.marking_end] == _bits(target.rbsp)[: target.marking_end]
    v = _decode(marked, packets)
    assert sorted(v) == list(range(FRAMES))
    assert all(np.array_equal(v[i], u[i]) for i in range(CUT))         # before the cut: U's pictures
    assert np.array_equal(v[CUT], alone)                                 # the re-encode, decoded as coded
    after = [np.abs(v[i][:HEIGHT].astype(int) - u[i][:HEIGHT]).mean() for i in range(CUT + 1, FRAMES)]
    assert min(after) > 2.0                                              # U's P pictures carry the new picture on


def test_emulation_prevention_round_trip():
    payload = b"\x65\x00\x00\x00\x00\x00\x01\x00\x00\x02\x00\x00\x03\x07\x00\x00"
    unit = h264.from_rbsp(payload)
    assert unit == b"\x65\x00\x00\x03\x00\x00\x03\x00\x01\x00\x00\x03\x02\x00\x00\x03\x03\x07\x00\x00\x03"
    assert h264.rbsp(unit) == payload
    assert h264.from_rbsp(b"\x65\x01\x00\x04") == b"\x65\x01\x00\x04"


def test_only_intra_slices_are_rewritten():
    encoder = _encoder(extra="", crf="20")
    packets = [p for index, yuv in enumerate(_two_scenes()[:CUT])
               for p in encoder.encode(yuv_frame(yuv, index, idr=index == 0))] + encoder.encode(None)
    syntax = h264.SliceSyntax.of(h264.parameter_set_units(h264.nal_units(bytes(packets[0]))))
    idr_slices = h264.slice_units(h264.nal_units(bytes(packets[0])))
    predicted = h264.slice_units(h264.nal_units(bytes(packets[1])))[0]
    assert not h264.is_intra_picture(bytes(packets[1]))
    with pytest.raises(h264.UnsupportedSyntax, match="not an intra slice"):
        h264.as_picture_of(idr_slices, like=predicted, syntax=syntax)
