"""The prepared-title folder: manifest, key, init segment, A/B fragments and their index.

`prepare()` encodes each variant as one fragmented MP4 (`ftyp` + `moov`, then one `moof`/`mdat`
pair per position). `split_variants()` cuts both files at their top-level boxes, checks that the
two are interchangeable fragment by fragment, and writes `init.mp4`, `A.m4s`, `B.m4s` and
`index.json` (format in docs/autograph-format.md). `load_title()` reads a folder back for the copy
and trace steps.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.json"
KEY_FILE = "key.json"
INIT_FILE = "init.mp4"
INDEX_FILE = "index.json"
VARIANT_FILES = {"A": "A.m4s", "B": "B.m4s"}


Manifest = dict[str, Any]
"""The JSON object of manifest.json (fields listed in docs/autograph-format.md and `embed.prepare`)."""


class PackageError(Exception):
    """A variant file does not have the fragment structure the copy step relies on."""


@dataclass(frozen=True)
class Box:
    """One ISO-BMFF box: its four-character type, absolute offset and total size in bytes."""

    type: str
    offset: int
    size: int
    header_size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Fragment:
    """One `moof`+`mdat` pair: byte range in its file, `mfhd` sequence number, per-track `tfdt`."""

    offset: int
    size: int
    sequence_number: int
    decode_times: tuple[int, ...]


@dataclass(frozen=True)
class FragmentedMp4:
    """The layout of a fragmented MP4 file: its init segment and its fragments, in order."""

    init_size: int
    fragments: list[Fragment]


def iter_boxes(f: BinaryIO, start: int, end: int) -> Iterator[Box]:
    """Yield the boxes laid end to end in bytes [start, end) of a seekable binary file."""
    offset = start
    while offset + 8 <= end:
        f.seek(offset)
        size, box_type = struct.unpack(">I4s", f.read(8))
        header_size = 8
        if size == 1:
            size = struct.unpack(">Q", f.read(8))[0]
            header_size = 16
        elif size == 0:
            size = end - offset
        if size < header_size or offset + size > end:
            raise PackageError(f"malformed box {box_type!r} at byte {offset}")
        yield Box(box_type.decode("latin-1"), offset, size, header_size)
        offset += size
    if offset != end:
        raise PackageError(f"{end - offset} trailing bytes after the last box")


def _read_fragment(f: BinaryIO, moof: Box, mdat: Box) -> Fragment:
    sequence_number = -1
    decode_times: list[int] = []
    for child in iter_boxes(f, moof.offset + moof.header_size, moof.end):
        f.seek(child.offset + child.header_size)
        if child.type == "mfhd":
            sequence_number = struct.unpack(">4xI", f.read(8))[0]
        elif child.type == "traf":
            for traf_child in iter_boxes(f, child.offset + child.header_size, child.end):
                if traf_child.type != "tfdt":
                    continue
                f.seek(traf_child.offset + traf_child.header_size)
                version = f.read(4)[0]
                decode_times.append(struct.unpack(">Q" if version == 1 else ">I", f.read(8 if version == 1 else 4))[0])
    return Fragment(moof.offset, mdat.end - moof.offset, sequence_number, tuple(decode_times))


def parse_fragmented_mp4(path: Path) -> FragmentedMp4:
    """Read the top-level layout of a fragmented MP4: `ftyp` `moov` then (`moof` `mdat`)*."""
    with open(path, "rb") as f:
        boxes = list(iter_boxes(f, 0, os.fstat(f.fileno()).st_size))
        types = [box.type for box in boxes]
        if types[:2] != ["ftyp", "moov"]:
            raise PackageError(f"{path.name}: expected ftyp, moov at the start, found {types[:2]}")
        fragments: list[Fragment] = []
        rest = [box for box in boxes[2:] if box.type not in ("mfra", "free", "skip")]
        if len(rest) % 2:
            raise PackageError(f"{path.name}: fragments are not moof/mdat pairs")
        for moof, mdat in zip(rest[0::2], rest[1::2]):
            if (moof.type, mdat.type) != ("moof", "mdat"):
                raise PackageError(f"{path.name}: expected moof, mdat at byte {moof.offset}, found {moof.type}, {mdat.type}")
            fragments.append(_read_fragment(f, moof, mdat))
    return FragmentedMp4(init_size=boxes[1].end, fragments=fragments)


def split_variants(a_path: Path, b_path: Path, outdir: Path, *, n_positions: int) -> dict[str, Any]:
    """Write init.mp4, A.m4s, B.m4s and index.json from the two variant files; return the index.

    Fails with PackageError unless both files have byte-identical init segments, exactly one
    fragment per position, and the same sequence number and decode times in fragment i of A and B.
    """
    layout = {"A": parse_fragmented_mp4(a_path), "B": parse_fragmented_mp4(b_path)}
    with open(a_path, "rb") as fa, open(b_path, "rb") as fb:
        init_a, init_b = fa.read(layout["A"].init_size), fb.read(layout["B"].init_size)
    if init_a != init_b:
        raise PackageError("the init segments of A and B differ; the variants are not interchangeable")
    for name, parsed in layout.items():
        if len(parsed.fragments) != n_positions:
            raise PackageError(f"variant {name} has {len(parsed.fragments)} fragments for {n_positions} positions")
    for i, (frag_a, frag_b) in enumerate(zip(layout["A"].fragments, layout["B"].fragments)):
        if (frag_a.sequence_number, frag_a.decode_times) != (frag_b.sequence_number, frag_b.decode_times):
            raise PackageError(
                f"fragment {i}: A has sequence {frag_a.sequence_number} decode times {frag_a.decode_times}, "
                f"B has sequence {frag_b.sequence_number} decode times {frag_b.decode_times}"
            )

    (outdir / INIT_FILE).write_bytes(init_a)
    entries: list[dict[str, Any]] = [
        {"position": i, "sequence_number": frag.sequence_number, "decode_times": list(frag.decode_times)}
        for i, frag in enumerate(layout["A"].fragments)
    ]
    for name, source in (("A", a_path), ("B", b_path)):
        written = 0
        with open(source, "rb") as src, open(outdir / VARIANT_FILES[name], "wb") as dst:
            for i, frag in enumerate(layout[name].fragments):
                src.seek(frag.offset)
                dst.write(src.read(frag.size))
                entries[i][name.lower()] = {"offset": written, "size": frag.size}
                written += frag.size
    index = {"format_version": FORMAT_VERSION, "init_size": len(init_a), "fragments": entries}
    (outdir / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


def write_key(outdir: Path, key: bytes) -> None:
    """Write key.json readable by the owner only (mode 0600 from creation, never wider)."""
    path = outdir / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"format_version": FORMAT_VERSION, "key": key.hex()}, f)
        f.write("\n")


@dataclass(frozen=True)
class PreparedTitle:
    """A prepared-title folder loaded for the copy and trace steps."""

    outdir: Path
    manifest: Manifest
    key: bytes
    init_size: int
    fragments: list[dict[str, Any]]

    @property
    def n_positions(self) -> int:
        return len(self.fragments)

    def variant_path(self, variant: str) -> Path:
        return self.outdir / VARIANT_FILES[variant]

    @property
    def init_path(self) -> Path:
        return self.outdir / INIT_FILE

    def __repr__(self) -> str:  # keep the key out of logs and tracebacks
        return f"PreparedTitle(outdir={str(self.outdir)!r}, positions={self.n_positions})"


def load_title(outdir: str | os.PathLike[str]) -> PreparedTitle:
    """Load manifest, key and fragment index of a prepared-title folder."""
    outdir = Path(outdir)
    try:
        manifest = json.loads((outdir / MANIFEST_FILE).read_text())
        key = bytes.fromhex(json.loads((outdir / KEY_FILE).read_text())["key"])
        index = json.loads((outdir / INDEX_FILE).read_text())
    except FileNotFoundError as exc:
        raise PackageError(f"{outdir} is not a prepared title: {Path(exc.filename).name} is missing") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PackageError(f"{outdir}: unsupported format version {manifest.get('format_version')}")
    return PreparedTitle(outdir, manifest, key, index["init_size"], index["fragments"])
