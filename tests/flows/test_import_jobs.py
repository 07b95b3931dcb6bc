"""Import jobs end to end through the HTTP API, as a MediaHub customer runs them (issue: import jobs).

A clip is uploaded in chunks, a job makes two renditions with thumbnails and a logo, and the
results are checked on the decoded pixels; the same with AutoGraph on, where both renditions must
share the title key and the position grid, so a tag's copy of either reads as the same codeword.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from leaktrace.autograph import code, package
from leaktrace.autograph.assemble import write_copy
from leaktrace.autograph.reference import load_reference
from leaktrace.autograph.trace import observe
from tests.flows.conftest import TESTDATA, Service

PRESET_720P = "525ce63284aed52635e85e02"
PRESET_360P = "525ce63284aed52635e85e04"
LOGO_RGB = (255, 0, 255)  # magenta: far from anything in the clips


def _decoded(path: Path) -> tuple[av.video.stream.VideoStream, list[np.ndarray], float]:
    """The video stream's properties, its RGB frames, and its duration in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        duration = float(container.duration or 0) / av.time_base
        bitrate_kbps = (container.bit_rate or 0) / 1000
    return stream, frames, duration or bitrate_kbps


def _logo_png(path: Path) -> Path:
    image = np.zeros((64, 128, 3), np.uint8)
    image[:] = LOGO_RGB[::-1]  # OpenCV writes BGR
    cv2.imwrite(str(path), image)
    return path


def _is_logo(pixels: np.ndarray) -> bool:
    """Most pixels of the block are the logo's colour (the encoder blurs only its edges)."""
    distance = np.abs(pixels.astype(int) - np.array(LOGO_RGB)).sum(axis=-1)
    return bool(np.mean(distance < 60) > 0.8)


@pytest.fixture(scope="module")
def plain_job(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("plain")
    service.upload(TESTDATA / "squirrel_720p25_10s.mp4", "uploads/e2e/squirrel.mp4", chunks=3)
    service.upload(_logo_png(tmp / "logo.png"), "images/logo.png")
    job = service.submit({
        "input": {"input_name": "uploads/e2e/squirrel.mp4"},
        "outputs": [
            {"preset": {"id": PRESET_720P}, "output_name": "{input_name}_{resolution}",
             "thumbnails": [{"thumbnail_preset": "thumbnails_small", "thumbnail_names": "thumb_{resolution}"}],
             "logos": [{"logo_image": "images/logo.png", "logo_preset": "logo_30_bottom_right"}]},
            {"preset": {"id": PRESET_720P}, "output_name": "half",
             "settings": {"video": {"width": "50%", "height": "50%", "bitrate": "25%"}}},
        ],
    })  # fmt: skip
    seen: list[int] = []
    done = service.wait(job["id"], seen=seen)
    done["_progress_seen"] = seen
    return done


def test_a_job_runs_to_success_with_rising_progress(plain_job: dict) -> None:
    assert plain_job["status"] == "SUCCESS", plain_job
    assert plain_job["percentage_completed"] == 100
    assert plain_job["finished_at"] >= plain_job["created_at"]
    assert [output["percentage_completed"] for output in plain_job["outputs"]] == [100, 100]
    seen = plain_job["_progress_seen"]
    assert seen == sorted(seen), "progress never goes back"
    assert any(0 < pct < 100 for pct in seen), f"progress rose in steps while running: {seen}"


def test_outputs_decode_at_the_requested_sizes_with_the_logo_in_its_corner(service: Service, plain_job: dict) -> None:
    full, half = (service.blob(output["file"]["id"]) for output in plain_job["outputs"])
    stream, frames, _ = _decoded(full)
    assert (stream.codec_context.width, stream.codec_context.height) == (1280, 720)
    assert stream.codec_context.name == "h264"
    assert len(frames) == pytest.approx(250, abs=3)
    frame = frames[len(frames) // 2]
    corner = frame[720 - 60:720 - 30, 1280 - 120:1280 - 60]
    assert _is_logo(corner), "the logo sits in the bottom right corner"
    for other in (frame[30:60, 60:120], frame[30:60, 1280 - 120:1280 - 60], frame[720 - 60:720 - 30, 60:120]):
        assert not _is_logo(other), "and in no other corner"

    stream, frames, _ = _decoded(half)
    assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
    assert not any(_is_logo(f[360 - 30:360 - 15, 640 - 60:640 - 30]) for f in frames[:5]), "no logo was asked for"


def test_bitrates_follow_the_settings_within_tolerance(service: Service, plain_job: dict) -> None:
    source = service.client.get(f"/v1/files/{plain_job['input']['file']['id']}", headers=service.headers).json()["file"]
    source_kbps = source["video_tracks"][0]["video_bitrate"]
    half = service.client.get(f"/v1/files/{plain_job['outputs'][1]['file']['id']}", headers=service.headers).json()["file"]
    assert half["video_tracks"][0]["video_bitrate"] == pytest.approx(0.25 * source_kbps, rel=0.35)
    full = service.client.get(f"/v1/files/{plain_job['outputs'][0]['file']['id']}", headers=service.headers).json()["file"]
    assert full["video_tracks"][0]["video_bitrate"] <= 3500 * 1.15, "the preset's max_bitrate holds"


def test_thumbnails_exist_and_are_zipped(service: Service, plain_job: dict) -> None:
    output = plain_job["outputs"][0]
    archive = service.client.get(f"/v1/files/{output['thumbnail_zip']['file']['id']}", headers=service.headers).json()["file"]
    assert (archive["type"], archive["mime_type"]) == ("archive", "application/zip")
    folder = service.client.get(f"/v1/files/{output['thumbnails'][0]['file']['id']}", headers=service.headers).json()["file"]
    assert folder["type"] == "folder" and folder["elements"]
    with zipfile.ZipFile(service.blob(archive["id"])) as bundle:
        names = bundle.namelist()
        assert sorted(names) == sorted(element["name"] for element in folder["elements"])
        assert all(name.startswith("thumb_720p") and name.endswith(".jpg") for name in names), names
        image = cv2.imdecode(np.frombuffer(bundle.read(names[0]), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 0


def test_files_carry_media_metadata_and_the_list_call_real_clients_make_finds_them(service: Service, plain_job: dict) -> None:
    source = service.client.get(f"/v1/files/{plain_job['input']['file']['id']}", headers=service.headers).json()["file"]
    assert source["video_tracks"][0]["width"] == 1280 and source["duration"] == pytest.approx(10_000, abs=200)
    assert source["md5_checksum"] and source["size"] == (TESTDATA / "squirrel_720p25_10s.mp4").stat().st_size
    response = service.client.get(
        "/v1/jobs/?status=SUCCESS&expand=file&sort=created_at&direction=-1", headers=service.headers
    )
    listed = {job["id"]: job for job in response.json()["jobs"]}[plain_job["id"]]
    file = listed["outputs"][0]["file"]
    assert file["name"] == "squirrel_720p.mp4" and file["mime_type"] == "video/mp4" and file["size"] > 0
    files = service.client.get(f"/v1/files/?job.id={plain_job['id']}&type=archive", headers=service.headers).json()
    assert [f["id"] for f in files["files"]] == [plain_job["outputs"][0]["thumbnail_zip"]["file"]["id"]]


# ---- AutoGraph --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def autograph_job(service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict:
    service.upload(TESTDATA / "car_parkinglot_432p12_30s.mp4", "uploads/e2e/car.mp4", chunks=2)
    service.upload(_logo_png(tmp_path_factory.mktemp("autograph") / "logo.png"), "images/ag-logo.png")
    job = service.submit({
        "input": {"input_name": "uploads/e2e/car.mp4"},
        "autograph": {"watermark_strength": "medium"},
        "outputs": [
            {"preset": {"id": PRESET_360P}, "output_name": "car_{resolution}",
             "thumbnails": [{"thumbnail_preset": "thumbnails_small"}],
             "logos": [{"logo_image": "images/ag-logo.png", "logo_preset": "logo_30_bottom_right"}]},
            {"preset": {"id": PRESET_360P}, "output_name": "car_small", "settings": {"video": {"height": "50%"}}},
        ],
    })  # fmt: skip
    return service.wait(job["id"])


def _title(service: Service, file_id: str, into: Path) -> package.PreparedTitle:
    """The prepared title stored for an AutoGraph output file, copied out of storage."""
    return package.load_title(service.tree(file_id, into / file_id))


def test_autograph_outputs_share_the_title_key_and_the_position_grid(
    service: Service, autograph_job: dict, tmp_path: Path
) -> None:
    assert autograph_job["status"] == "SUCCESS", autograph_job
    listed = service.client.get("/v1/jobs/?status=SUCCESS&expand=file&autograph=true", headers=service.headers).json()
    assert autograph_job["id"] in [job["id"] for job in listed["jobs"]]
    titles = [_title(service, output["file"]["id"], tmp_path) for output in autograph_job["outputs"]]
    files = [service.client.get(f"/v1/files/{o['file']['id']}", headers=service.headers).json()["file"]
             for o in autograph_job["outputs"]]  # fmt: skip
    assert all(file["autograph"] is True for file in files)
    assert [file["video_tracks"][0]["height"] for file in files] == [360, 216]
    assert titles[0].key == titles[1].key
    grid = [[(p["start_s"], p["end_s"]) for p in t.manifest["positions"]] for t in titles]
    assert grid[0] == grid[1] and len(grid[0]) >= 15  # 2 s positions over the 30 s clip


@pytest.mark.slow
def test_a_tags_copies_of_both_renditions_read_as_its_codeword(service: Service, autograph_job: dict, tmp_path: Path) -> None:
    tag = "viewer-42"
    for output in autograph_job["outputs"]:
        title = _title(service, output["file"]["id"], tmp_path)
        copy = tmp_path / f"{output['output_name']}.mp4"
        write_copy(title, tag, copy)
        detection = observe(copy, load_reference(title.outdir))[2]
        assert detection is not None
        read = np.isin(detection.symbols, (code.SYMBOL_A, code.SYMBOL_B))
        expected = code.codeword(title.key, tag, title.n_positions)
        assert read.sum() >= 12, "most of the 15 or 16 positions are read"
        assert np.array_equal(detection.symbols[read], expected[read]), "every read position carries the tag's bit"


def test_an_autograph_rendition_carries_its_logo_and_has_thumbnails(service: Service, autograph_job: dict,
                                                                    tmp_path: Path) -> None:
    output = autograph_job["outputs"][0]
    copy = tmp_path / "copy.mp4"
    write_copy(_title(service, output["file"]["id"], tmp_path), "viewer-7", copy)
    stream, frames, _ = _decoded(copy)
    assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
    frame = frames[len(frames) // 2]
    assert _is_logo(frame[360 - 25:360 - 12, 640 - 60:640 - 30]), "the logo, burnt in before marking"
    assert not _is_logo(frame[12:25, 30:60])
    archive = service.client.get(f"/v1/files/{output['thumbnail_zip']['file']['id']}", headers=service.headers).json()
    assert archive["file"]["type"] == "archive"
    with zipfile.ZipFile(service.blob(archive["file"]["id"])) as bundle:
        assert len(bundle.namelist()) == 6  # thumbnails_small


def test_a_mediahub_client_lists_the_job_and_reads_a_tagged_copy_in_4_mib_ranges(
    service: Service, autograph_job: dict, tmp_path: Path
) -> None:
    """The calls real MediaHub clients make, in their order, against the imported title."""
    client, account = service.client, service.account
    token = client.post("/v1/oauth2/token/", data={
        "grant_type": "client_credential", "client_id": account.client_id, "client_secret": account.client_secret,
        "scope": "mediahub,autograph"}).json()["access_token"]  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    jobs = client.get("/v1/jobs/?status=SUCCESS&expand=file&autograph=true&sort=created_at&direction=-1", headers=headers)
    listed = {job["id"]: job for job in jobs.json()["jobs"]}[autograph_job["id"]]
    file = listed["outputs"][0]["file"]
    response = client.get(f"/v1/files/downloads/?file_id={file['id']}&autograph_tag=viewer-42&redirect=true",
                          headers=headers, follow_redirects=False)  # fmt: skip
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    head = client.head(location)
    assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
    size = int(head.headers["content-length"])
    chunk = 4 * 1024 * 1024
    parts = []
    for start in range(0, size, chunk):
        part = client.get(location, headers={"Range": f"bytes={start}-{min(start + chunk, size) - 1}"})
        assert part.status_code == 206
        parts.append(part.content)
    expected = tmp_path / "expected.mp4"
    write_copy(_title(service, file["id"], tmp_path), "viewer-42", expected)
    assert b"".join(parts) == expected.read_bytes()
