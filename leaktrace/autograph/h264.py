"""Just enough H.264 bitstream syntax to put an intra-coded picture in the place of another.

`prepare()` marks a position by re-encoding U's intra pictures with the mark added. The re-encode
is a one-frame libx264 encode, hence an IDR picture; U's intra pictures after a scene cut are not
IDRs (an IDR would end the position's closed GOP). `as_picture_of` rewrites the IDR slices' headers
with the frame number, picture order count and reference marking of the picture they replace; the
coded macroblocks are kept as they are. Only the slice syntax that libx264 writes for 8-bit
progressive video is read (one slice group, frame pictures); anything else is refused.

Bits are counted over the RBSP of a NAL unit (emulation prevention bytes removed), its one-byte
NAL header included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

NAL_SLICE, NAL_IDR_SLICE, NAL_SPS, NAL_PPS = 1, 5, 7, 8
_START_CODE = b"\x00\x00\x00\x01"
_SLICE_TYPE_I = 2
_HEAD_BYTES = 16   # first_mb_in_slice and slice_type are within a slice's first bytes
# profile_idc values whose SPS carries chroma format, bit depths and scaling matrices
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class UnsupportedSyntax(ValueError):
    """A bitstream uses syntax outside what this module reads."""


# ---------------------------------------------------------------------------------------------
# NAL units


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an H.264 Annex B byte stream (start codes removed)."""
    units = []
    for chunk in data.split(b"\x00\x00\x01")[1:]:
        # a NAL unit never ends in a zero byte: trailing zeros belong to the next 4-byte start code
        units.append(chunk.rstrip(b"\x00"))
    return [unit for unit in units if unit]


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def annex_b(units: list[bytes]) -> bytes:
    """NAL units as an Annex B byte stream (4-byte start codes)."""
    return b"".join(_START_CODE + unit for unit in units)


def parameter_set_units(units: list[bytes]) -> list[bytes]:
    """The SPS and PPS among `units`, in order."""
    return [unit for unit in units if nal_type(unit) in (NAL_SPS, NAL_PPS)]


def slice_units(units: list[bytes]) -> list[bytes]:
    """The coded slices (IDR or not) among `units`, in order."""
    return [unit for unit in units if nal_type(unit) in (NAL_SLICE, NAL_IDR_SLICE)]


_EMULATION_PREVENTION = re.compile(b"\x00\x00\x03")
_NEEDS_PREVENTION = re.compile(b"\x00\x00(?=[\x00-\x03])")


def rbsp(unit: bytes) -> bytes:
    """A NAL unit's payload with its emulation prevention bytes removed."""
    return _EMULATION_PREVENTION.sub(b"\x00\x00", unit)


def from_rbsp(payload: bytes) -> bytes:
    """The NAL unit of an RBSP: an emulation prevention byte after every two zeros that precede 0-3 or the end."""
    unit = _NEEDS_PREVENTION.sub(b"\x00\x00\x03", payload)
    return unit + b"\x03" if unit.endswith(b"\x00\x00") else unit


class _Bits:
    """Reads fixed-length and Exp-Golomb fields, MSB first."""

    def __init__(self, data: bytes, position: int = 0):
        self.data, self.position = data, position

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            if self.position >= 8 * len(self.data):
                raise UnsupportedSyntax("the bitstream ends inside a header")
            value = (value << 1) | (self.data[self.position >> 3] >> (7 - (self.position & 7))) & 1
            self.position += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise UnsupportedSyntax("an Exp-Golomb code is longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


# ---------------------------------------------------------------------------------------------
# Parameter sets and slice headers


@dataclass(frozen=True)
class SliceSyntax:
    """The SPS and PPS fields that decide how an intra slice header is laid out."""

    frame_num_bits: int
    poc_type: int
    poc_lsb_bits: int
    delta_poc_always_zero: bool
    bottom_field_poc_present: bool
    redundant_pic_cnt_present: bool
    deblocking_control_present: bool
    cabac: bool

    @classmethod
    def of(cls, parameter_sets: list[bytes]) -> SliceSyntax:
        """Read the fields from one SPS and one PPS (NAL units)."""
        sps = [rbsp(u) for u in parameter_sets if nal_type(u) == NAL_SPS]
        pps = [rbsp(u) for u in parameter_sets if nal_type(u) == NAL_PPS]
        if len(sps) != 1 or len(pps) != 1:
            raise UnsupportedSyntax("expected exactly one SPS and one PPS")
        bits = _Bits(sps[0], 8)
        profile = bits.u(8)
        bits.u(16)          # constraint flags, level
        bits.ue()           # seq_parameter_set_id
        if profile in _HIGH_PROFILES:
            if bits.ue() == 3:                                  # chroma_format_idc 4:4:4
                raise UnsupportedSyntax("4:4:4 streams are not supported")
            bits.ue(), bits.ue(), bits.u(1)                     # bit depths, transform bypass
            if bits.u(1):                                       # seq_scaling_matrix_present_flag
                for index in range(8):
                    if bits.u(1):
                        _skip_scaling_list(bits, 16 if index < 6 else 64)
        frame_num_bits = bits.ue() + 4
        poc_type, poc_lsb_bits, always_zero = bits.ue(), 0, False
        if poc_type == 0:
            poc_lsb_bits = bits.ue() + 4
        elif poc_type == 1:
            always_zero = bool(bits.u(1))
            bits.se(), bits.se()
            for _ in range(bits.ue()):
                bits.se()
        bits.ue(), bits.u(1), bits.ue(), bits.ue()              # refs, gaps, width, height
        if not bits.u(1):                                       # frame_mbs_only_flag
            raise UnsupportedSyntax("interlaced streams are not supported")

        bits = _Bits(pps[0], 8)
        bits.ue(), bits.ue()                                    # pic and seq parameter set ids
        cabac, bottom_present = bool(bits.u(1)), bool(bits.u(1))
        if bits.ue() != 0:
            raise UnsupportedSyntax("slice groups are not supported")
        bits.ue(), bits.ue(), bits.u(3), bits.se(), bits.se(), bits.se()
        deblocking, _, redundant = bool(bits.u(1)), bits.u(1), bool(bits.u(1))
        return cls(frame_num_bits, poc_type, poc_lsb_bits, always_zero, bottom_present, redundant, deblocking, cabac)


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = following = 8
    for _ in range(size):
        if following:
            following = (last + bits.se() + 256) % 256
        last = following or last


@dataclass(frozen=True)
class IntraSliceHeader:
    """Where the parts of an intra slice's header end, in bits from the start of its RBSP."""

    rbsp: bytes
    first_mb_end: int   # after first_mb_in_slice: what identifies the picture starts here
    marking_end: int    # after dec_ref_pic_marking: what identifies the picture ends here
    header_end: int     # after the deblocking fields: the slice data (CABAC: after alignment) follows

    @classmethod
    def read(cls, unit: bytes, syntax: SliceSyntax) -> IntraSliceHeader:
        if not _is_intra_slice(unit):
            raise UnsupportedSyntax("not an intra slice")
        payload = rbsp(unit)
        bits = _Bits(payload, 8)
        bits.ue()                                               # first_mb_in_slice
        first_mb_end = bits.position
        bits.ue(), bits.ue()                                    # slice_type, pic_parameter_set_id
        bits.u(syntax.frame_num_bits)
        idr = nal_type(unit) == NAL_IDR_SLICE
        if idr:
            bits.ue()                                           # idr_pic_id
        if syntax.poc_type == 0:
            bits.u(syntax.poc_lsb_bits)
            if syntax.bottom_field_poc_present:
                bits.se()
        elif syntax.poc_type == 1 and not syntax.delta_poc_always_zero:
            bits.se()
            if syntax.bottom_field_poc_present:
                bits.se()
        if syntax.redundant_pic_cnt_present:
            bits.ue()
        if unit[0] & 0x60:                                      # nal_ref_idc: dec_ref_pic_marking
            if idr:
                bits.u(2)
            elif bits.u(1):                                     # adaptive_ref_pic_marking_mode_flag
                while (operation := bits.ue()) != 0:
                    for _ in range({1: 1, 2: 1, 3: 2, 4: 1, 6: 1}.get(operation, 0)):
                        bits.ue()
        marking_end = bits.position
        bits.se()                                               # slice_qp_delta
        if syntax.deblocking_control_present and bits.ue() != 1:
            bits.se(), bits.se()
        return cls(payload, first_mb_end, marking_end, bits.position)


def is_intra_picture(access_unit: bytes) -> bool:
    """True when every slice of an access unit (Annex B) is an intra slice."""
    slices = slice_units(nal_units(access_unit))
    return bool(slices) and all(_is_intra_slice(unit) for unit in slices)


def _is_intra_slice(unit: bytes) -> bool:
    bits = _Bits(rbsp(unit[:_HEAD_BYTES]), 8)
    bits.ue()                                                   # first_mb_in_slice
    return bits.ue() % 5 == _SLICE_TYPE_I


def as_picture_of(slices: list[bytes], like: bytes, syntax: SliceSyntax) -> list[bytes]:
    """Intra `slices` rewritten to stand for the picture of the intra slice `like`.

    Each slice keeps its first macroblock, macroblock data, QP and deblocking fields, and takes
    `like`'s NAL header, frame number, picture order count and reference marking, so a decoder
    reads it as that picture.
    """
    target = IntraSliceHeader.read(like, syntax)
    like_bits = _bit_array(target.rbsp)
    out = []
    for unit in slices:
        header = IntraSliceHeader.read(unit, syntax)
        bits = _bit_array(header.rbsp)
        head = np.concatenate([like_bits[:8], bits[8: header.first_mb_end],
                               like_bits[target.first_mb_end: target.marking_end],
                               bits[header.marking_end: header.header_end]])
        if syntax.cabac:
            # cabac_alignment_one_bits, then the byte-aligned slice data as it is
            head = np.concatenate([head, np.ones(-len(head) % 8, np.uint8)])
            payload = np.packbits(head).tobytes() + header.rbsp[-(-header.header_end // 8):]
        else:
            stop = len(bits) - 1 - int(np.flatnonzero(bits[::-1])[0])      # rbsp_stop_one_bit
            body = np.concatenate([head, bits[header.header_end: stop], [1]]).astype(np.uint8)
            payload = np.packbits(body).tobytes()
        out.append(from_rbsp(payload))
    return out


def _bit_array(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, np.uint8))
