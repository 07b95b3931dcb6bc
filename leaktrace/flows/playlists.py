"""What a playlist streams: the renditions of one job's AutoGraph outputs, each cut into segments.

A prepared title's position grid is its segment grid: segment i of a tag's stream is position i's
fragment from the variant the tag's codeword picks (`flows.downloads.tag_pieces`), after the
init segment. So the init and segments laid end to end are byte for byte the tag's download copy,
and every rendition of a job (one title key, one position grid) picks the same variants: a player
switching renditions stays on one codeword.

The playlist texts (HLS master and media playlists, DASH MPD) are built here by pure functions
from a `Rendition` and the URLs the caller signs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from leaktrace.autograph.package import MANIFEST_FILE
from leaktrace.delivery.tokens import INIT_SEGMENT
from leaktrace.flows.downloads import (
    Content, Piece, TitleLayout, Unavailable, read_json, tag_pieces, title_layout, title_prefix,
)  # fmt: skip
from leaktrace.storage.base import Storage
from leaktrace.store.models import File

HLS_VERSION = 7  # fMP4 segments with EXT-X-MAP need version 6+; 7 for EXT-X-MAP without I-frames-only
BITS_PER_BYTE = 8


@dataclass(frozen=True)
class Segment:
    """One piece of a tag's stream and where it lies in the tag's download copy (bytes)."""

    piece: Piece
    copy_offset: int


@dataclass(frozen=True)
class Rendition:
    """One AutoGraph output as a stream: its picture size, segment durations (s) and bit rate."""

    file_id: str
    width: int
    height: int
    durations_s: tuple[float, ...]  # per position, from the manifest's start_s/end_s
    bandwidth_bps: int  # the copy's bytes x 8 / its duration, rounded up

    @property
    def duration_s(self) -> float:
        return sum(self.durations_s)


def rendition(storage: Storage, file: File, *, tag: str) -> Rendition:
    """The rendition of `file` as `tag`'s stream, from its manifest and fragment index."""
    prefix = title_prefix(file)
    layout = title_layout(storage, prefix)
    manifest = read_json(storage, prefix + MANIFEST_FILE)
    positions = manifest["positions"]
    if len(positions) != len(layout.fragments):
        raise Unavailable(f"the prepared title under {prefix} has {len(positions)} positions but "
                          f"{len(layout.fragments)} fragments")  # fmt: skip
    durations = tuple(float(p["end_s"]) - float(p["start_s"]) for p in positions)
    size = sum(piece.size for piece in tag_pieces(layout, tag))
    return Rendition(
        file_id=file.id, width=int(manifest["rendition"]["width"]), height=int(manifest["rendition"]["height"]),
        durations_s=durations, bandwidth_bps=math.ceil(size * BITS_PER_BYTE / max(sum(durations), 1e-9)),
    )  # fmt: skip


def segments(layout: TitleLayout, tag: str) -> list[Segment]:
    """The init segment then one segment per position, with their offsets in the tag's copy."""
    out, offset = [], 0
    for piece in tag_pieces(layout, tag):
        out.append(Segment(piece, offset))
        offset += piece.size
    return out


def segment(storage: Storage, file: File, *, tag: str, position: int) -> tuple[Content, int, int]:
    """Position `position`'s segment (`INIT_SEGMENT`: the init) of `tag`'s stream of `file`: its
    content, its offset in the tag's copy and the copy's size."""
    all_segments = segments(title_layout(storage, title_prefix(file)), tag)
    index = position - INIT_SEGMENT  # the init is first
    if not 0 <= index < len(all_segments):
        raise Unavailable(f"the title has no position {position}")
    chosen = all_segments[index]
    last = all_segments[-1]
    return Content(storage, [chosen.piece]), chosen.copy_offset, last.copy_offset + last.piece.size


# ---- playlist texts ------------------------------------------------------------------------------


def hls_master(renditions: Sequence[Rendition], *, media_url: Callable[[Rendition], str]) -> str:
    """The HLS master playlist: one `EXT-X-STREAM-INF` per rendition, lowest bit rate first."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for item in sorted(renditions, key=lambda r: (r.bandwidth_bps, r.height)):
        lines.append(f"#EXT-X-STREAM-INF:BANDWIDTH={item.bandwidth_bps},RESOLUTION={item.width}x{item.height}")
        lines.append(media_url(item))
    return "\n".join(lines) + "\n"


def hls_media(item: Rendition, *, init_url: str, segment_urls: Sequence[str]) -> str:
    """The fMP4 media playlist of one rendition: the init as `EXT-X-MAP`, one segment per position.

    `EXT-X-TARGETDURATION` is the longest segment rounded up to whole seconds (RFC 8216 §4.3.3.1).
    """
    lines = [
        "#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{math.ceil(max(item.durations_s, default=0.0))}",
        "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{init_url}"',
    ]  # fmt: skip
    for duration, url in zip(item.durations_s, segment_urls, strict=True):
        lines += [f"#EXTINF:{duration:.6f},", url]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def dash_mpd(renditions: Sequence[Rendition], *, init_url: Callable[[Rendition], str],
             segment_urls: Callable[[Rendition], Sequence[str]]) -> str:  # fmt: skip
    """A static DASH MPD: one `Representation` per rendition, each a `SegmentList` of signed URLs.

    Durations are in milliseconds (`timescale="1000"`), each `SegmentURL` one position.
    """
    total_s = max((r.duration_s for r in renditions), default=0.0)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-on-demand:2011" '
        f'type="static" mediaPresentationDuration="PT{total_s:.3f}S" minBufferTime="PT2S">',
        '  <Period id="0" start="PT0S">',
        '    <AdaptationSet id="0" contentType="video" mimeType="video/mp4" segmentAlignment="true">',
    ]  # fmt: skip
    for item in sorted(renditions, key=lambda r: (r.bandwidth_bps, r.height)):
        out.append(f'      <Representation id={quoteattr(item.file_id)} bandwidth="{item.bandwidth_bps}" '
                   f'width="{item.width}" height="{item.height}">')  # fmt: skip
        out.append('        <SegmentList timescale="1000">')
        out.append(f"          <Initialization sourceURL={quoteattr(init_url(item))}/>")
        out.append("          <SegmentTimeline>")
        start_ms = 0
        for duration in item.durations_s:
            out.append(f'            <S t="{start_ms}" d="{round(duration * 1000)}"/>')
            start_ms += round(duration * 1000)
        out.append("          </SegmentTimeline>")
        out += [f"          <SegmentURL media={quoteattr(url)}/>" for url in segment_urls(item)]
        out += ["        </SegmentList>", "      </Representation>"]
    out += ["    </AdaptationSet>", "  </Period>", "</MPD>"]
    return "\n".join(out) + "\n"
