"""Streaming through HTTP: HLS master and media playlists (and the DASH MPD) of a tag's stream,
their signed URLs, the segments the tag's codeword picks, ffmpeg playing it from a real server,
and the access records streaming leaves.

The titles are real prepared titles stored as import jobs store them (`test_downloads` helpers):
one job with two renditions (144 and 96 lines) sharing one key and one 1 s position grid.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from leaktrace.autograph.code import codeword
from leaktrace.config import Settings
from leaktrace.delivery import tokens
from leaktrace.ids import new_id
from leaktrace.store.models import Job
from tests.api.conftest import PUBLIC_URL
from tests.api.helpers import Account
from tests.api.test_downloads import (  # noqa: F401  (fixtures)
    TESTDATA, TITLE_CLIP, TITLE_HEIGHT, TITLE_KEY, TITLE_SECONDS, copy_bytes, create_autograph_link, delivery_url,
    error_of, local, real_server, records, store_title, title_dir,
)

SMALL_HEIGHT = 96
SMALL_WIDTH = 170  # 1920x800 at 96 lines, even
FFMPEG_TIMEOUT_S = 60
URL = r"https://api\.xvid\.com/v1/playlists/{kind}/[A-Za-z0-9_-]+\.[0-9a-f]{{64}}\.{ext}"


@pytest.fixture(scope="module")
def small_title_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The second rendition of the same job: the same clip, key and positions, 96 lines."""
    from leaktrace.autograph.embed import prepare

    outdir = tmp_path_factory.mktemp("small") / "title"
    prepare(TESTDATA / TITLE_CLIP, outdir, strength="light", position_seconds=1.0, height=SMALL_HEIGHT,
            duration=TITLE_SECONDS, key=TITLE_KEY, workers=1)  # fmt: skip
    return outdir


def manifest(title: Path) -> dict[str, Any]:
    return json.loads((title / "manifest.json").read_text())


def new_job(client: TestClient, account: Account) -> str:
    job_id = new_id()
    with client.app.state.db.write() as session:  # type: ignore[attr-defined]
        session.add(Job(id=job_id, user_id=account.user_id, application_id=account.application_id,
                        pipeline_id=account.pipeline_id, input_name="uploads/in.mp4", input_file_name="in.mp4",
                        outputs=[], submitted_keys=[], input_options={}))  # fmt: skip
    return job_id


@pytest.fixture
def job(client: TestClient, account: Account, title_dir: Path, small_title_dir: Path, tmp_path: Path) -> dict[str, str]:
    """A job with two AutoGraph outputs: {"job": id, "big": file id (144 lines), "small": file id (96)}."""
    job_id = new_job(client, account)
    big = store_title(client, account, title_dir, tmp_path, job_id=job_id)
    small = store_title(client, account, small_title_dir, tmp_path, job_id=job_id, name="small.mp4",
                        video_tracks=[{"width": SMALL_WIDTH, "height": SMALL_HEIGHT}])  # fmt: skip
    return {"job": job_id, "big": big, "small": small}


def playlist(client: TestClient, account: Account, path: str = "/v1/playlists/hls.m3u8", **params: str) -> str:
    response = client.get(path, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.text


def media_urls(client: TestClient, account: Account, **params: str) -> list[str]:
    """The media playlist URLs of a master playlist, in its order."""
    return [line for line in playlist(client, account, **params).splitlines() if not line.startswith("#")]


def segment_urls(client: TestClient, media_url: str) -> list[str]:
    """The init URL then the segment URLs of a media playlist."""
    text = client.get(local(media_url)).text
    (init,) = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
    return [init] + [line for line in text.splitlines() if line and not line.startswith("#")]


def expected_bandwidth(title: Path, tag: str, tmp_path: Path) -> int:
    positions = manifest(title)["positions"]
    seconds = sum(p["end_s"] - p["start_s"] for p in positions)
    return math.ceil(len(copy_bytes(title, tag, tmp_path)) * 8 / seconds)


def served_variants(client: TestClient, media_url: str, title: Path) -> list[str]:
    """For each segment of a media playlist: "A" or "B", whichever of the title's fragments it is."""
    index = json.loads((title / "index.json").read_text())
    variants = {v: (title / f"{v}.m4s").read_bytes() for v in ("A", "B")}
    picked = []
    for url, fragment in zip(segment_urls(client, media_url)[1:], index["fragments"], strict=True):
        body = client.get(local(url)).content
        (name,) = [v for v in ("A", "B")
                   if body == variants[v][fragment[v.lower()]["offset"]:][:fragment[v.lower()]["size"]]]  # fmt: skip
        picked.append(name)
    return picked


# ---- playlist structure --------------------------------------------------------------------------


def test_the_master_playlist_names_one_signed_rendition_per_output(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path, small_title_dir: Path, tmp_path: Path
) -> None:
    lines = playlist(client, account, job_id=job["job"], autograph_tag="viewer-7").splitlines()
    media = URL.format(kind="media", ext="m3u8")
    assert lines[:3] == ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    assert lines[3] == f"#EXT-X-STREAM-INF:BANDWIDTH={expected_bandwidth(small_title_dir, 'viewer-7', tmp_path)},RESOLUTION={SMALL_WIDTH}x{SMALL_HEIGHT}"
    assert re.fullmatch(media, lines[4])
    big = manifest(title_dir)["rendition"]
    assert lines[5] == f"#EXT-X-STREAM-INF:BANDWIDTH={expected_bandwidth(title_dir, 'viewer-7', tmp_path)},RESOLUTION={big['width']}x{big['height']}"
    assert re.fullmatch(media, lines[6])
    assert len(lines) == 7
    listed = media_urls(client, account, file_id=f"{job['big']},{job['small']}", autograph_tag="viewer-7")
    assert len(listed) == 2  # the same renditions by file ids


def test_the_media_playlist_is_fmp4_hls_with_one_segment_per_position(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path
) -> None:
    (url,) = media_urls(client, account, file_id=job["big"], autograph_tag="viewer-7")
    response = client.get(local(url))
    assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
    lines = response.text.splitlines()
    positions = manifest(title_dir)["positions"]
    longest = max(p["end_s"] - p["start_s"] for p in positions)
    assert lines[:6] == ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{math.ceil(longest)}",
                         "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD", "#EXT-X-INDEPENDENT-SEGMENTS"]  # fmt: skip
    assert re.fullmatch('#EXT-X-MAP:URI="' + URL.format(kind="segments", ext="mp4") + '"', lines[6])
    body = lines[7:-1]
    assert len(body) == 2 * len(positions) == 2 * round(TITLE_SECONDS)
    for (extinf, segment), position in zip(zip(body[::2], body[1::2]), positions):
        assert extinf == f"#EXTINF:{position['end_s'] - position['start_s']:.6f},"
        assert re.fullmatch(URL.format(kind="segments", ext="m4s"), segment)
    assert lines[-1] == "#EXT-X-ENDLIST"


def test_init_and_segments_are_the_tags_copy_and_follow_its_codeword(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path, tmp_path: Path
) -> None:
    picks = {}
    for tag in ("alice", "bob"):
        (url,) = media_urls(client, account, file_id=job["big"], autograph_tag=tag)
        got = [client.get(local(u)) for u in segment_urls(client, url)]
        assert [r.status_code for r in got] == [200] * len(got)
        assert got[0].headers["content-type"] == "video/mp4"
        assert got[1].headers["content-type"] == "video/iso.segment"
        assert b"".join(r.content for r in got) == copy_bytes(title_dir, tag, tmp_path)
        picks[tag] = served_variants(client, url, title_dir)
        assert picks[tag] == ["B" if bit else "A" for bit in codeword(TITLE_KEY, tag, len(got) - 1)]
    assert picks["alice"] != picks["bob"]


def test_both_renditions_pick_the_same_variants(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path, small_title_dir: Path
) -> None:
    """One key and one position grid per job: a player switching renditions stays on one codeword."""
    small, big = media_urls(client, account, job_id=job["job"], autograph_tag="carol")
    picked = served_variants(client, big, title_dir)
    assert picked == served_variants(client, small, small_title_dir)
    assert picked == ["B" if bit else "A" for bit in codeword(TITLE_KEY, "carol", len(picked))]
    assert len(set(picked)) == 2


def test_the_dash_mpd_lists_the_same_signed_segments(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path, tmp_path: Path
) -> None:
    text = playlist(client, account, "/v1/playlists/dash.mpd", job_id=job["job"], autograph_tag="dana")
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    root = ET.fromstring(text)
    assert root.get("type") == "static"
    representations = root.findall(".//d:Representation", ns)
    assert [(r.get("id"), r.get("height")) for r in representations] == [(job["small"], "96"), (job["big"], "144")]
    big = representations[1]
    urls = [big.find(".//d:Initialization", ns).get("sourceURL")]  # type: ignore[union-attr]
    urls += [s.get("media") for s in big.findall(".//d:SegmentURL", ns)]  # type: ignore[misc]
    assert len(urls) == 1 + len(manifest(title_dir)["positions"])
    assert b"".join(client.get(local(u)).content for u in urls) == copy_bytes(title_dir, "dana", tmp_path)  # type: ignore[arg-type]


# ---- refusals ------------------------------------------------------------------------------------


def test_tampered_expired_and_misused_urls_are_refused(
    client: TestClient, account: Account, job: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (media,) = media_urls(client, account, file_id=job["big"], autograph_tag="erin")
    init, first = segment_urls(client, media)[:2]
    payload, signature = local(first)[: -len(".m4s")].rsplit("/", 1)[1].split(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert error_of(client.get(f"/v1/playlists/segments/{payload}.{flipped}.m4s")) == (
        403, "0x0230003", "Invalid streaming link: the delivery link's signature does not match")  # fmt: skip
    # A segment token is no media playlist, and a media playlist token is no segment nor download.
    assert error_of(client.get(local(first).replace("/segments/", "/media/")[: -len(".m4s")] + ".m3u8"))[:2] == (403, "0x0230003")
    media_token = local(media).rsplit("/", 1)[1][: -len(".m3u8")]
    assert error_of(client.get(f"/v1/playlists/segments/{media_token}.m4s"))[:2] == (403, "0x0230003")
    assert error_of(client.get(f"/v1/files/downloads/deliver/{media_token}"))[:2] == (403, "0x0230003")
    assert client.get(local(init)).status_code == 200
    monkeypatch.setattr(time, "time", lambda: 4_000_000_000)
    assert error_of(client.get(local(first))) == (403, "0x0230003", "Invalid streaming link: the delivery link has expired")
    assert error_of(client.get(local(media)))[:2] == (403, "0x0230003")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"autograph_tag": "x"}, "name the renditions: file_id (comma-separated) or job_id"),
        ({"file_id": "{big}"}, "autograph_tag is required: an AutoGraph file is only delivered as a tag's copy"),
        ({"file_id": "{big}", "job_id": "{job}", "autograph_tag": "x"}, "name either file_id or job_id, not both"),
        ({"file_id": "{big},{other}", "autograph_tag": "x"}, "the files of one playlist must be outputs of the same job"),
        ({"file_id": "{big}", "autograph_tag": "x", "expiry_time": "1000000000"}, "expiry_time has passed"),
    ],
)  # fmt: skip
def test_bad_parameters(client: TestClient, account: Account, job: dict[str, str], title_dir: Path, tmp_path: Path,
                        params: dict[str, str], message: str) -> None:  # fmt: skip
    other = store_title(client, account, title_dir, tmp_path, job_id=new_job(client, account))
    filled = {k: v.format(other=other, **job) for k, v in params.items()}
    assert error_of(client.get("/v1/playlists/hls.m3u8", params=filled, headers=account.headers)) == (400, "0x0230001", f"Invalid Input: {message}")


def test_signed_links_and_ip_restriction(client: TestClient, account: Account, job: dict[str, str]) -> None:
    link = create_autograph_link(job["big"], "frank", account.client_id, account.client_secret, 600,
                                 path="/v1/playlists/hls.m3u8", multi_use="false")  # fmt: skip
    assert client.get(link).status_code == 200
    assert error_of(client.get(link))[:2] == (403, "0x0230004")  # single-use: used up
    assert client.get("/v1/playlists/hls.m3u8", params={"job_id": job["job"], "autograph_tag": "x"}).status_code == 401
    here = TestClient(client.app, client=("127.0.0.2", 50000))
    elsewhere = TestClient(client.app, client=("127.0.0.9", 50000))
    (media,) = media_urls(here, account, file_id=job["big"], autograph_tag="frank", ip="127.0.0.2")
    first = segment_urls(here, media)[1]
    assert here.get(local(first)).status_code == 200
    assert error_of(elsewhere.get(local(first)))[:2] == (403, "0x0230005")
    assert error_of(elsewhere.get(local(media)))[:2] == (403, "0x0230005")


# ---- access records ------------------------------------------------------------------------------


def test_streaming_records_are_streaming_only_until_a_download(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path, tmp_path: Path
) -> None:
    viewer = TestClient(client.app, client=("127.0.0.3", 50000), headers={"User-Agent": "hls-player/2"})
    (media,) = media_urls(viewer, account, file_id=job["big"], autograph_tag="gina")
    urls = segment_urls(viewer, media)
    for url in urls + urls[:3]:  # the first segments twice: each byte counts once
        assert viewer.get(local(url)).status_code == 200
    (row,) = records(client, job["big"])
    size = len(copy_bytes(title_dir, "gina", tmp_path))
    assert (row.tag, row.ip_address, row.user_agent, row.streaming_only) == ("gina", "127.0.0.3", "hls-player/2", True)
    assert (row.percentage_obtained, row.sent_spans, row.highest_resolution) == (100.0, [[0, size]], TITLE_HEIGHT)
    assert viewer.get(delivery_url(viewer, account, job["big"], autograph_tag="gina"), headers={"Range": "bytes=0-9"}).status_code == 206
    (row,) = records(client, job["big"])
    assert row.streaming_only is False


# ---- a real player -------------------------------------------------------------------------------


def test_ffmpeg_plays_the_signed_playlist_from_a_real_server(
    client: TestClient, account: Account, job: dict[str, str], title_dir: Path, tmp_path: Path,
    real_server: str, settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(settings, "public_url", f"http://{real_server}")
    master = client.get("/v1/playlists/hls.m3u8", params={"file_id": job["big"], "autograph_tag": "hana"}, headers=account.headers)
    assert master.status_code == 200
    source = f"http://{real_server}/v1/playlists/hls.m3u8?file_id={job['big']}&autograph_tag=hana&access_token={quote(account.token)}"
    out = tmp_path / "played.mp4"
    run = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-user_agent", "ffmpeg-test", "-i", source, "-c", "copy", str(out)],
                         capture_output=True, text=True, timeout=FFMPEG_TIMEOUT_S)  # fmt: skip
    assert run.returncode == 0, run.stderr
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(copy_bytes(title_dir, "hana", tmp_path))
    assert frames(out) == frames(copy) == manifest(title_dir)["n_frames"]
    deadline = time.monotonic() + 10
    while not (rows := [r for r in records(client, job["big"]) if r.user_agent == "ffmpeg-test"]) or rows[0].percentage_obtained < 100:
        assert time.monotonic() < deadline, "ffmpeg's segments were not all recorded"
        time.sleep(0.1)
    assert (rows[0].tag, rows[0].streaming_only, rows[0].percentage_obtained) == ("hana", True, 100.0)


def frames(path: Path) -> int:
    """Decoded video frames of a file (ffprobe counts them by decoding)."""
    run = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True)  # fmt: skip
    return int(run.stdout.strip())
